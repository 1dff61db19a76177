"""A SQLite database driven from asyncio: writes inline on the event loop, reads on a thread.

Writes run on the event loop's own thread, one transaction per call. A commit here costs
about 125 µs of wall time (WAL, ``synchronous=FULL``, one fsync) and 55 µs of CPU, while
handing each transaction to a writer thread cost more than that in futures and in the GIL
hand-backs of every sqlite3 call (the loop thread holds the GIL under load, and a thread
that wants it back waits up to a switch interval, 5 ms). Group commit comes for free: while
one batch is written, nothing else runs, and what arrived meanwhile forms the next batch.
Reads (pulls over many rows) run on one reader thread, so they never stall the loop, and
so do WAL checkpoints (copying committed pages into the database file, with an fsync of
its own): the writer never checkpoints itself, a checkpointer connection does it on its
own thread once a second while there are writes.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from sandcat.log import get_logger
from sandcat.migrations import MIGRATIONS_DIR, migration_files

T = TypeVar("T")
log = get_logger(__name__)


#: SQLite's own default page cache is 2 MB per connection. A group message writes one inbox
#: row per member, each on that member's own B-tree page; with the default cache most of
#: those pages were read back from the WAL or the file (a hash lookup in the WAL index and a
#: pread each) on every commit (docs/performance.md).
DEFAULT_CACHE_MIB = 64


def _connect(path: str, synchronous: str, cache_mib: int = DEFAULT_CACHE_MIB) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    conn.execute("PRAGMA temp_store=MEMORY")
    conn.execute(f"PRAGMA cache_size=-{cache_mib * 1024}")  # negative: KiB, not pages
    return conn


def apply_migrations(path: str, migrations_dir: Path = MIGRATIONS_DIR / "sqlite") -> list[str]:
    """Apply the numbered ``*.sql`` files not yet recorded; returns the names applied.

    A new database file is created readable by its owner only (it holds password hashes
    and every message); SQLite gives its WAL and shared-memory files the same mode."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    conn = _connect(path, "FULL")
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version TEXT PRIMARY KEY, applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        applied: list[str] = []
        for file in migration_files(migrations_dir):
            if file.name in done:
                continue
            name = file.name.replace("'", "")
            script = file.read_text(encoding="utf-8")
            try:
                conn.executescript(
                    f"BEGIN;\n{script}\n;INSERT INTO schema_migrations (version) "
                    f"VALUES ('{name}');\nCOMMIT;"
                )
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            applied.append(file.name)
        return applied
    finally:
        conn.close()


class DataDirBusy(RuntimeError):
    """Another process serves this data folder."""


def lock_data_dir(data_dir: Path) -> int:
    """Hold ``data_dir/sandcat.lock`` for this process (released when the returned descriptor
    is closed, or the process ends): the embedded server caches what it alone writes
    (counters, message ids, friendships, token generations), so a second server on the same
    folder would hand out seqs twice; it is refused at start instead."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "sandcat.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise DataDirBusy(
            f"another sandcat process (pid {holder}) serves {data_dir}: stop it first, "
            "or give this one its own embedded.data_dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


#: Seconds between checkpoints while the database is written to.
CHECKPOINT_SECONDS = 1.0


class SqliteDatabase:
    """Owns the connections; ``write`` runs a function in a transaction on the loop's
    thread, ``read`` runs one on the reader thread."""

    def __init__(
        self, path: str, *, synchronous: str = "FULL", cache_mib: int = DEFAULT_CACHE_MIB
    ) -> None:
        self.path = path
        self._synchronous = synchronous
        self._cache_mib = cache_mib
        self._reader_pool = ThreadPoolExecutor(1, thread_name_prefix="sqlite-r")
        self._checkpoint_pool = ThreadPoolExecutor(1, thread_name_prefix="sqlite-ckpt")
        self._writer: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._checkpointer: sqlite3.Connection | None = None
        self._checkpoints: asyncio.Task[None] | None = None
        self._writes = 0

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        self._writer = _connect(self.path, self._synchronous, self._cache_mib)
        self._writer.execute("PRAGMA wal_autocheckpoint=0")
        self._reader = await loop.run_in_executor(
            self._reader_pool, _connect, self.path, self._synchronous, self._cache_mib
        )
        self._checkpointer = await loop.run_in_executor(
            self._checkpoint_pool, _connect, self.path, self._synchronous
        )
        self._checkpoints = loop.create_task(self._checkpoint_loop(), name="sqlite-checkpoint")

    async def _checkpoint_loop(self) -> None:
        loop = asyncio.get_running_loop()
        conn = self._checkpointer
        assert conn is not None
        seen = 0
        while True:
            await asyncio.sleep(CHECKPOINT_SECONDS)
            if self._writes == seen:
                continue
            seen = self._writes
            try:
                await loop.run_in_executor(
                    self._checkpoint_pool, conn.execute, "PRAGMA wal_checkpoint(PASSIVE)"
                )
            except sqlite3.Error as exc:  # busy or locked now: the next round catches up
                log.warning("sqlite_checkpoint_failed", error=repr(exc))

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            await asyncio.gather(self._checkpoints, return_exceptions=True)
        if self._writer is not None:
            self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._writer.close()
        if self._reader is not None:
            await loop.run_in_executor(self._reader_pool, self._reader.close)
        if self._checkpointer is not None:
            await loop.run_in_executor(self._checkpoint_pool, self._checkpointer.close)
        self._reader_pool.shutdown(wait=True)
        self._checkpoint_pool.shutdown(wait=True)

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` in one transaction on the writer connection, on this thread: the
        function must not await (it cannot), so no two transactions ever interleave."""
        conn = self._writer
        assert conn is not None, "database not open"
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        self._writes += 1
        return result

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._reader
        assert conn is not None, "database not open"
        return await asyncio.get_running_loop().run_in_executor(self._reader_pool, fn, conn)
