"""The embedded message path: one writer task batches submissions into SQLite transactions.

Seqs are allocated inside the same transaction that stores the inbox copies, so a seq is
never visible (pushed, acked, returned by ``GET /message/seq``) before it is stored: the
exposure rule holds by construction. Deliveries happen after the commit, in order.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from sandcat.adapters.embedded.sqlite import SqliteDatabase
from sandcat.domain import Ack, Stored, Submission
from sandcat.log import get_logger
from sandcat.protocol.msg import Msg

log = get_logger(__name__)

IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000
OnStored = Callable[[Submission, Stored], None]

_INBOX_INSERT = (
    "INSERT INTO inbox (owner_id, box, seq, other_seq, send_id, receiver_id, local_id, server_id, "
    "create_time, send_time, msg_type, content_type, content, is_read, group_id, related_msg_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)"
)
_HISTORY_INSERT = (
    "INSERT OR IGNORE INTO history (send_id, receiver_id, local_id, server_id, send_time, "
    "msg_type, content_type, content, platform, group_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


class _Counters:
    """Per-user (receive, send) counters cached in the writer thread, persisted per batch."""

    __slots__ = ("cache", "dirty")

    def __init__(self) -> None:
        self.cache: dict[str, list[int]] = {}
        self.dirty: dict[str, list[int]] = {}

    def get(self, conn: sqlite3.Connection, user_id: str) -> list[int]:
        entry = self.dirty.get(user_id)
        if entry is not None:
            return entry
        cached = self.cache.get(user_id)
        if cached is None:
            row = conn.execute(
                "SELECT rec_max_seq, send_max_seq FROM sequence WHERE user_id = ?", (user_id,)
            ).fetchone()
            cached = [row[0], row[1]] if row else [0, 0]
            self.cache[user_id] = cached
        entry = list(cached)
        self.dirty[user_id] = entry
        return entry

    def flush(self, conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT INTO sequence (user_id, rec_max_seq, send_max_seq) VALUES (?, ?, ?) "
            "ON CONFLICT(user_id) DO UPDATE SET rec_max_seq = excluded.rec_max_seq, "
            "send_max_seq = excluded.send_max_seq",
            [(uid, rec, snd) for uid, (rec, snd) in self.dirty.items()],
        )

    def commit(self) -> None:
        self.cache.update(self.dirty)
        self.dirty.clear()
        if len(self.cache) > 200_000:
            self.cache.clear()

    def rollback(self) -> None:
        self.dirty.clear()


def _write_one(
    conn: sqlite3.Connection,
    counters: _Counters,
    sub: Submission,
    now_ms: int,
    inbox_rows: list[tuple[Any, ...]],
    history_rows: list[tuple[Any, ...]],
) -> Stored:
    msg = sub.msg
    if sub.idem_key is not None:
        row = conn.execute(
            "SELECT server_id, send_time, send_seq FROM idempotency "
            "WHERE send_id = ? AND local_id = ? AND created_at > ?",
            (sub.idem_key[0], sub.idem_key[1], now_ms - IDEMPOTENCY_TTL_MS),
        ).fetchone()
        if row is not None:
            return Stored(Ack(row[0], row[1], row[2]), duplicate=True)
    send_seq = 0
    if sub.outbox:
        sender = counters.get(conn, msg.send_id)
        sender[1] += 1
        send_seq = sender[1]
        if sub.store:
            inbox_rows.append(
                (
                    msg.send_id,
                    1,
                    send_seq,
                    0,
                    msg.send_id,
                    msg.receiver_id,
                    msg.local_id,
                    msg.server_id,
                    msg.create_time,
                    msg.send_time,
                    msg.msg_type,
                    msg.content_type,
                    msg.content,
                    msg.group_id,
                    msg.related_msg_id,
                )
            )
    receiver_seqs: list[tuple[str, int]] = []
    other_seq = 0 if msg.group_id else send_seq
    for receiver in sub.receivers:
        counter = counters.get(conn, receiver)
        counter[0] += 1
        seq = counter[0]
        receiver_seqs.append((receiver, seq))
        if sub.store:
            inbox_rows.append(
                (
                    receiver,
                    0,
                    seq,
                    other_seq,
                    msg.send_id,
                    msg.receiver_id,
                    msg.local_id,
                    msg.server_id,
                    msg.create_time,
                    msg.send_time,
                    msg.msg_type,
                    msg.content_type,
                    msg.content,
                    msg.group_id,
                    msg.related_msg_id,
                )
            )
    if sub.history:
        history_rows.append(
            (
                msg.send_id,
                msg.receiver_id,
                msg.local_id,
                msg.server_id,
                msg.send_time,
                msg.msg_type,
                msg.content_type,
                msg.content,
                msg.platform,
                msg.group_id,
            )
        )
    ack = Ack(msg.server_id, msg.send_time, send_seq)
    if sub.idem_key is not None:
        conn.execute(
            "INSERT OR REPLACE INTO idempotency "
            "(send_id, local_id, server_id, send_time, send_seq, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (sub.idem_key[0], sub.idem_key[1], ack.server_id, ack.send_time, ack.send_seq, now_ms),
        )
    return Stored(ack, duplicate=False, receiver_seqs=receiver_seqs)


class SqliteMessageLog:
    """Implements ``MessageLog``: FIFO submissions, batched into one transaction each."""

    def __init__(self, db: SqliteDatabase, *, max_batch: int = 1024) -> None:
        self._db = db
        self._max_batch = max_batch
        self._queue: deque[tuple[Submission, asyncio.Future[Stored]]] = deque()
        self._wakeup = asyncio.Event()
        self._counters = _Counters()
        self._listeners: list[OnStored] = []
        self._task: asyncio.Task[None] | None = None

    def add_listener(self, listener: OnStored) -> None:
        self._listeners.append(listener)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sqlite-writer")

    async def stop(self) -> None:
        if self._task is not None:
            if self._queue:  # let what was accepted land before stopping
                await asyncio.gather(*(fut for _, fut in list(self._queue)), return_exceptions=True)
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def submit(self, submission: Submission) -> asyncio.Future[Stored]:
        """Queue a submission; the future resolves once it is durable (FIFO order)."""
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._queue.append((submission, future))
        self._wakeup.set()
        return future

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch = [
                    self._queue.popleft() for _ in range(min(self._max_batch, len(self._queue)))
                ]
                await self._store(batch)

    async def _store(self, batch: list[tuple[Submission, asyncio.Future[Stored]]]) -> None:
        subs = [sub for sub, _ in batch]
        try:
            results: Sequence[Stored | BaseException] = await self._db.write(
                lambda conn: self._write_batch(conn, subs)
            )
        except Exception:
            self._counters.rollback()
            log.exception("batch_store_failed", size=len(subs))
            if len(batch) == 1:
                results = [RuntimeError("message could not be stored")]
            else:
                for item in batch:  # isolate the bad submission; the others still land
                    await self._store([item])
                return
        else:
            self._counters.commit()
        for (sub, future), result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                if not future.done():
                    future.set_exception(result)
                continue
            if not future.done():
                future.set_result(result)
            if not result.duplicate:
                for listener in self._listeners:
                    listener(sub, result)

    def _write_batch(self, conn: sqlite3.Connection, subs: list[Submission]) -> list[Stored]:
        now_ms = int(time.time() * 1000)
        inbox_rows: list[tuple[Any, ...]] = []
        history_rows: list[tuple[Any, ...]] = []
        results = [
            _write_one(conn, self._counters, sub, now_ms, inbox_rows, history_rows) for sub in subs
        ]
        conn.executemany(_INBOX_INSERT, inbox_rows)
        if history_rows:
            conn.executemany(_HISTORY_INSERT, history_rows)
        self._counters.flush(conn)
        return results


def _row_to_msg(row: tuple[Any, ...]) -> Msg:
    (
        box,
        seq,
        other_seq,
        send_id,
        receiver_id,
        local_id,
        server_id,
        create_time,
        send_time,
        msg_type,
        content_type,
        content,
        is_read,
        group_id,
        related,
    ) = row
    return Msg(
        send_id=send_id,
        receiver_id=receiver_id,
        local_id=local_id,
        server_id=server_id,
        create_time=create_time,
        send_time=send_time,
        seq=0 if box else seq,
        msg_type=msg_type,
        content_type=content_type,
        content=bytes(content),
        is_read=bool(is_read),
        group_id=group_id,
        related_msg_id=related,
        send_seq=seq if box else other_seq,
    )


class SqliteInbox:
    """Implements ``InboxStore`` over the table the message log writes."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def pull(
        self, user_id: str, start: int, end: int, send_start: int, send_end: int, limit: int
    ) -> list[Msg]:
        def run(conn: sqlite3.Connection) -> list[Msg]:
            sql = (
                "SELECT box, seq, other_seq, send_id, receiver_id, local_id, server_id, "
                "create_time, send_time, msg_type, content_type, content, is_read, group_id, "
                "related_msg_id FROM inbox WHERE owner_id = ?1 AND "
                "((box = 0 AND seq > ?2 AND seq <= ?3) OR (box = 1 AND seq > ?4 AND seq <= ?5)) "
                "ORDER BY send_time, seq"
            )
            params: tuple[Any, ...] = (user_id, start, end, send_start, send_end)
            if limit > 0:
                sql += " LIMIT ?6"
                params += (limit,)
            return [_row_to_msg(row) for row in conn.execute(sql, params)]

        return await self._db.read(run)

    async def delete_received(self, user_id: str, seqs: Sequence[int]) -> int:
        rows = [(user_id, seq) for seq in seqs]

        def run(conn: sqlite3.Connection) -> int:
            cur = conn.executemany(
                "DELETE FROM inbox WHERE owner_id = ? AND box = 0 AND seq = ?", rows
            )
            return cur.rowcount

        return await self._db.write(run)

    async def mark_read(self, user_id: str, seqs: Sequence[int]) -> int:
        rows = [(user_id, seq) for seq in seqs]

        def run(conn: sqlite3.Connection) -> int:
            cur = conn.executemany(
                "UPDATE inbox SET is_read = 1 WHERE owner_id = ? AND box = 0 AND seq = ?", rows
            )
            return cur.rowcount

        return await self._db.write(run)

    async def exposed(self, user_id: str) -> tuple[int, int]:
        # Seqs are allocated inside the transaction that stores them: committed = exposed.
        def run(conn: sqlite3.Connection) -> tuple[int, int]:
            row = conn.execute(
                "SELECT rec_max_seq, send_max_seq FROM sequence WHERE user_id = ?", (user_id,)
            ).fetchone()
            return (int(row[0]), int(row[1])) if row else (0, 0)

        return await self._db.read(run)

    async def purge_idempotency(self, older_than_ms: int) -> int:
        def run(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "DELETE FROM idempotency WHERE created_at < ?", (older_than_ms,)
            ).rowcount

        return await self._db.write(run)
