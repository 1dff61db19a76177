"""The embedded message path: one writer task batches submissions into SQLite transactions.

Seqs are allocated inside the same transaction that stores the inbox copies, so a seq is
never visible (pushed, acked, returned by ``GET /message/seq``) before it is stored: the
exposure rule holds by construction. Deliveries happen after the commit, in order.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from sandcat.adapters.embedded.sqlite import SqliteDatabase
from sandcat.domain import Ack, Stored, Submission
from sandcat.log import get_logger
from sandcat.protocol.msg import Msg
from sandcat.services.batching import BatchingWorker

log = get_logger(__name__)

IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000
OnStored = Callable[[Submission, Stored], None]

_INBOX_INSERT = (
    "INSERT INTO inbox (owner_id, box, seq, other_seq, send_id, receiver_id, local_id, server_id, "
    "create_time, send_time, msg_type, content_type, content, is_read, group_id, related_msg_id) "
    "VALUES "
)
_INBOX_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)"
_HISTORY_INSERT = (
    "INSERT OR IGNORE INTO history (send_id, receiver_id, local_id, server_id, send_time, "
    "msg_type, content_type, content, platform, group_id) VALUES "
)
_HISTORY_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_IDEMPOTENCY_INSERT = (
    "INSERT OR REPLACE INTO idempotency "
    "(send_id, local_id, server_id, send_time, send_seq, created_at) VALUES "
)
_IDEMPOTENCY_ROW = "(?, ?, ?, ?, ?, ?)"
_SEQUENCE_UPSERT = "INSERT INTO sequence (user_id, rec_max_seq, send_max_seq) VALUES "
_SEQUENCE_ROW = "(?, ?, ?)"
_SEQUENCE_CONFLICT = (
    " ON CONFLICT(user_id) DO UPDATE SET rec_max_seq = excluded.rec_max_seq, "
    "send_max_seq = excluded.send_max_seq"
)
#: A (send_id, local_id) list joined to the primary key (CROSS JOIN keeps that order).
_IDEMPOTENCY_LOOKUP = (
    "SELECT i.send_id, i.local_id, i.server_id, i.send_time, i.send_seq FROM (VALUES {keys}) "
    "AS k CROSS JOIN idempotency AS i ON i.send_id = k.column1 AND i.local_id = k.column2 "
    "WHERE i.created_at > ?"
)
#: Most rows in one statement (a power of two); SQLite's bound-parameter limit also caps it.
_MAX_CHUNK_ROWS = 256


def _chunks(conn: sqlite3.Connection, count: int, width: int) -> list[tuple[int, int]]:
    """Split ``count`` rows into ``(start, size)`` chunks whose sizes are powers of two.

    Every sqlite3 call releases the GIL and must win it back from the event loop thread,
    which under load holds it for up to a switch interval: a batch therefore goes in a few
    multi-row statements, not one call per row. Power-of-two sizes keep the statement cache
    small (a handful of distinct SQL texts per table).
    """
    limit = min(_MAX_CHUNK_ROWS, conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // width)
    size = 1 << (limit.bit_length() - 1)
    chunks: list[tuple[int, int]] = []
    start = 0
    while start < count:
        while size > count - start:
            size >>= 1
        chunks.append((start, size))
        start += size
    return chunks


def _insert_many(
    conn: sqlite3.Connection,
    head: str,
    row: str,
    rows: Sequence[tuple[Any, ...]],
    tail: str = "",
) -> None:
    if not rows:
        return
    for start, size in _chunks(conn, len(rows), len(rows[0])):
        conn.execute(
            head + ", ".join([row] * size) + tail,
            [value for values in rows[start : start + size] for value in values],
        )


def _idempotent_acks(
    conn: sqlite3.Connection, keys: Sequence[tuple[str, str]], since_ms: int
) -> dict[tuple[str, str], Ack]:
    """The remembered acks of ``keys`` created after ``since_ms``, in as few queries as fit."""
    found: dict[tuple[str, str], Ack] = {}
    for start, size in _chunks(conn, len(keys), 2):
        sql = _IDEMPOTENCY_LOOKUP.format(keys=", ".join(["(?, ?)"] * size))
        params: list[Any] = [part for key in keys[start : start + size] for part in key]
        params.append(since_ms)
        for send_id, local_id, server_id, send_time, send_seq in conn.execute(sql, params):
            found[(send_id, local_id)] = Ack(server_id, send_time, send_seq)
    return found


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
        _insert_many(
            conn,
            _SEQUENCE_UPSERT,
            _SEQUENCE_ROW,
            [(uid, rec, snd) for uid, (rec, snd) in self.dirty.items()],
            _SEQUENCE_CONFLICT,
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
    acks: dict[tuple[str, str], Ack],
    rows: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]],
) -> Stored:
    """Allocate the seqs of one submission and add its rows to ``rows``.

    ``acks`` holds the remembered acks of the batch's idempotency keys, and gains this
    submission's, so a resend later in the same batch is a duplicate too.
    """
    msg = sub.msg
    if sub.idem_key is not None:
        remembered = acks.get(sub.idem_key)
        if remembered is not None:
            return Stored(remembered, duplicate=True)
    inbox_rows, history_rows, idempotency_rows = rows
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
        acks[sub.idem_key] = ack
        idempotency_rows.append(
            (sub.idem_key[0], sub.idem_key[1], ack.server_id, ack.send_time, ack.send_seq, now_ms)
        )
    return Stored(ack, duplicate=False, receiver_seqs=receiver_seqs)


class SqliteMessageLog(BatchingWorker):
    """Implements ``MessageLog``: FIFO submissions, batched into one transaction each."""

    def __init__(self, db: SqliteDatabase, *, max_batch: int = 1024) -> None:
        super().__init__(max_batch=max_batch, name="sqlite-writer")
        self._db = db
        self._counters = _Counters()
        self._listeners: list[OnStored] = []

    def add_listener(self, listener: OnStored) -> None:
        self._listeners.append(listener)

    async def process(self, batch: list[tuple[Submission, asyncio.Future[Stored]]]) -> None:
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
        keys = list(dict.fromkeys(sub.idem_key for sub in subs if sub.idem_key is not None))
        acks = _idempotent_acks(conn, keys, now_ms - IDEMPOTENCY_TTL_MS)
        rows: tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]] = (
            [],
            [],
            [],
        )
        results = [_write_one(conn, self._counters, sub, now_ms, acks, rows) for sub in subs]
        inbox_rows, history_rows, idempotency_rows = rows
        _insert_many(conn, _INBOX_INSERT, _INBOX_ROW, inbox_rows)
        _insert_many(conn, _HISTORY_INSERT, _HISTORY_ROW, history_rows)
        _insert_many(conn, _IDEMPOTENCY_INSERT, _IDEMPOTENCY_ROW, idempotency_rows)
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
