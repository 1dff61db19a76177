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

import orjson

from sandcat.adapters.embedded.conversations import (
    CONVERSATION_CONFLICT,
    CONVERSATION_ROW,
    CONVERSATION_UPSERT,
    SENDER_READ,
    SENDER_READ_TAIL,
    SENDER_ROW,
    conversation_rows,
)
from sandcat.adapters.embedded.sqlite import SqliteDatabase
from sandcat.domain import Ack, Stored, Submission, idempotency_key, idempotency_parts
from sandcat.ids import SYSTEM_CLOCK
from sandcat.log import get_logger
from sandcat.metrics import COUNTS
from sandcat.ports import Clock, PullCursor
from sandcat.protocol.msg import Msg
from sandcat.util.batching import BatchingWorker

log = get_logger(__name__)

IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000
OnStored = Callable[[Submission, Stored], None]

_MESSAGE_INSERT = (
    "INSERT INTO messages (id, send_id, receiver_id, local_id, server_id, create_time, "
    "send_time, msg_type, content_type, content, group_id, related_msg_id, platform, send_seq, "
    "in_history, idempotent) VALUES "
)
_MESSAGE_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INBOX_INSERT = "INSERT INTO inbox (owner_id, box, seq, message_id) VALUES "
_INBOX_ROW = "(?, ?, ?, ?)"
_SEQUENCE_UPSERT = "INSERT INTO sequence (user_id, rec_max_seq, send_max_seq) VALUES "
_SEQUENCE_ROW = "(?, ?, ?)"
_SEQUENCE_CONFLICT = (
    " ON CONFLICT(user_id) DO UPDATE SET rec_max_seq = excluded.rec_max_seq, "
    "send_max_seq = excluded.send_max_seq"
)
#: The messages that answer resends of a (send_id, local_id, receiver_id) list, through the
#: partial index ``messages_idempotency`` (CROSS JOIN keeps the key list as the outer loop).
_IDEMPOTENCY_LOOKUP = (
    "SELECT m.send_id, m.receiver_id, m.local_id, m.server_id, m.send_time, m.send_seq "
    "FROM (VALUES {keys}) AS k CROSS JOIN messages AS m ON m.send_id = k.column1 "
    "AND m.local_id = k.column2 AND m.receiver_id = k.column3 "
    "WHERE m.idempotent = 1 AND m.send_time > ?"
)
#: Most rows in one statement (a power of two); SQLite's bound-parameter limit also caps it.
_MAX_CHUNK_ROWS = 256
#: Most inbox rows one writer transaction holds (a message weighs its receivers + 1): a
#: batch of one-to-one messages stops at ``max_batch`` long before this, and a burst to a
#: large group goes in batches of a few dozen messages (one per 32,768 members), so the
#: loop waits for its storage and its pushes a fraction of a second at a time.
MAX_BATCH_ROWS = 32_768


def _rows(submission: Submission) -> int:
    return len(submission.receivers) + 1


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
    for start, size in _chunks(conn, len(keys), 3):
        sql = _IDEMPOTENCY_LOOKUP.format(keys=", ".join(["(?, ?, ?)"] * size))
        params: list[Any] = []
        for key in keys[start : start + size]:
            send_id, receiver_id, local_id = idempotency_parts(key)
            params += (send_id, local_id, receiver_id)
        params.append(since_ms)
        for send_id, receiver_id, local_id, server_id, send_time, send_seq in conn.execute(
            sql, params
        ):
            key = idempotency_key(send_id, receiver_id, local_id)
            found[key] = Ack(server_id, send_time, send_seq)
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


class _Rows:
    """The rows of one batch: each message once, then its owners' thin inbox entries."""

    __slots__ = ("inbox", "messages", "next_id")

    def __init__(self, next_id: int) -> None:
        self.next_id = next_id
        self.messages: list[tuple[Any, ...]] = []
        self.inbox: list[tuple[str, int, int, int]] = []


def _write_one(
    conn: sqlite3.Connection,
    counters: _Counters,
    sub: Submission,
    acks: dict[tuple[str, str], Ack],
    rows: _Rows,
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
    message_id = rows.next_id
    inbox = rows.inbox
    send_seq = 0
    if sub.outbox:
        sender = counters.get(conn, msg.send_id)
        sender[1] += 1
        send_seq = sender[1]
        if sub.store:
            inbox.append((msg.send_id, 1, send_seq, message_id))
    receiver_seqs: list[tuple[str, int]] = []
    for receiver in sub.receivers:
        counter = counters.get(conn, receiver)
        counter[0] += 1
        seq = counter[0]
        receiver_seqs.append((receiver, seq))
        if sub.store:
            inbox.append((receiver, 0, seq, message_id))
    if sub.store or sub.history:
        rows.next_id += 1
        rows.messages.append(
            (
                message_id,
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
                msg.platform,
                send_seq,
                sub.history,
                sub.idem_key is not None and sub.store,
            )
        )
    ack = Ack(msg.server_id, msg.send_time, send_seq)
    if sub.idem_key is not None:
        acks[sub.idem_key] = ack
    return Stored(ack, duplicate=False, receiver_seqs=receiver_seqs)


class SqliteMessageLog:
    """Implements ``MessageLog``: FIFO submissions, batched into one transaction each."""

    def __init__(
        self,
        db: SqliteDatabase,
        *,
        max_batch: int = 1024,
        commit_window_seconds: float = 0.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """``clock``: the age of idempotency keys (a resend within 24 h gets its ack);
        ``commit_window_seconds``: the group-commit window (``BatchingWorker``)."""
        self._worker: BatchingWorker[Submission, Stored] = BatchingWorker(
            self._process,
            max_batch=max_batch,
            name="sqlite-writer",
            gather_seconds=commit_window_seconds,
            weight=_rows,
            max_weight=MAX_BATCH_ROWS,
        )
        self._db = db
        self._clock = clock
        self._counters = _Counters()
        self._next_id: int | None = None  # the next ``messages.id``: this is the only writer
        self._listeners: list[OnStored] = []

    def add_listener(self, listener: OnStored) -> None:
        self._listeners.append(listener)

    def start(self) -> None:
        self._worker.start()

    async def stop(self) -> None:
        """Stop once what was accepted has landed."""
        await self._worker.stop()

    def submit(self, submission: Submission) -> asyncio.Future[Stored]:
        """Queue in call order; the future resolves once the submission is durable."""
        return self._worker.submit(submission)

    async def _process(self, batch: list[tuple[Submission, asyncio.Future[Stored]]]) -> None:
        """Store ``batch`` in one transaction on this thread, then let the loop run before the
        next one: the acks and pushes of this batch go out, and the loop never stalls for
        more than one bounded batch (``max_batch`` messages, about 6 ms per 100) at a time."""
        await self._store(batch)
        await asyncio.sleep(0)

    async def _store(self, batch: list[tuple[Submission, asyncio.Future[Stored]]]) -> None:
        subs = [sub for sub, _ in batch]
        started = time.perf_counter()
        try:
            results: Sequence[Stored | BaseException] = await self._db.write(
                lambda conn: self._write_batch(conn, subs)
            )
        except Exception:
            self._counters.rollback()
            self._next_id = None
            log.exception("batch_store_failed", size=len(subs))
            if len(batch) == 1:
                results = [RuntimeError("message could not be stored")]
            else:
                for item in batch:  # isolate the bad submission; the others still land
                    await self._store([item])
                return
        else:
            self._counters.commit()
            COUNTS.store_batch_seconds.observe(time.perf_counter() - started)
            COUNTS.store_batch_size.observe(len(subs))
        for (sub, future), result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                if not future.done():
                    future.set_exception(result)
                continue
            if not future.done():
                future.set_result(result)
            if not result.duplicate:
                COUNTS.messages_stored += 1
                for listener in self._listeners:
                    listener(sub, result)

    def _write_batch(self, conn: sqlite3.Connection, subs: list[Submission]) -> list[Stored]:
        now_ms = self._clock.now_ms()
        keys = list(dict.fromkeys(sub.idem_key for sub in subs if sub.idem_key is not None))
        acks = _idempotent_acks(conn, keys, now_ms - IDEMPOTENCY_TTL_MS) if keys else {}
        if self._next_id is None:
            self._next_id = conn.execute(
                "SELECT COALESCE(MAX(id), 0) + 1 FROM messages"
            ).fetchone()[0]
        rows = _Rows(self._next_id)
        results = [_write_one(conn, self._counters, sub, acks, rows) for sub in subs]
        _insert_many(conn, _MESSAGE_INSERT, _MESSAGE_ROW, rows.messages)
        _insert_many(conn, _INBOX_INSERT, _INBOX_ROW, rows.inbox)
        conversations, reads = conversation_rows(
            [
                sub.msg
                for sub, result in zip(subs, results, strict=True)
                if sub.history and not result.duplicate
            ]
        )
        _insert_many(
            conn, CONVERSATION_UPSERT, CONVERSATION_ROW, conversations, CONVERSATION_CONFLICT
        )
        _insert_many(conn, SENDER_READ, SENDER_ROW, reads, SENDER_READ_TAIL)
        self._counters.flush(conn)
        self._next_id = rows.next_id
        return results


def _row_to_msg(row: tuple[Any, ...]) -> Msg:
    (
        box,
        seq,
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
        send_seq,
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
        # A sent copy carries its own send_seq; a received one the sender's (one-to-one).
        send_seq=seq if box else (0 if group_id else send_seq),
    )


class SqliteInbox:
    """Implements ``InboxStore`` over the table the message log writes."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def pull(
        self,
        user_id: str,
        start: int,
        end: int,
        send_start: int,
        send_end: int,
        limit: int,
        after: PullCursor | None = None,
    ) -> list[Msg]:
        def run(conn: sqlite3.Connection) -> list[Msg]:
            sql = (
                "SELECT i.box, i.seq, m.send_id, m.receiver_id, m.local_id, m.server_id, "
                "m.create_time, m.send_time, m.msg_type, m.content_type, m.content, i.is_read, "
                "m.group_id, m.related_msg_id, m.send_seq FROM inbox AS i "
                "JOIN messages AS m ON m.id = i.message_id WHERE i.owner_id = ?1 AND "
                "((i.box = 0 AND i.seq > ?2 AND i.seq <= ?3) "
                "OR (i.box = 1 AND i.seq > ?4 AND i.seq <= ?5)) "
            )
            params: tuple[Any, ...] = (user_id, start, end, send_start, send_end)
            if after is not None:
                sql += "AND (m.send_time, i.seq, i.box) > (?6, ?7, ?8) "
                params += after
            sql += "ORDER BY m.send_time, i.seq, i.box"
            if limit > 0:
                sql += f" LIMIT ?{len(params) + 1}"
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

    async def origins(self, user_id: str, seqs: Sequence[int]) -> set[tuple[str, str]]:
        def run(conn: sqlite3.Connection) -> set[tuple[str, str]]:
            rows = conn.execute(
                "SELECT DISTINCT m.send_id, m.group_id FROM inbox AS i "
                "JOIN messages AS m ON m.id = i.message_id WHERE i.owner_id = ? AND i.box = 0 "
                "AND i.seq IN (SELECT value FROM json_each(?))",
                (user_id, orjson.dumps(list(seqs)).decode()),
            )
            return {(send_id, group_id) for send_id, group_id in rows}

        return await self._db.read(run)

    async def exposed(self, user_id: str) -> tuple[int, int]:
        # Seqs are allocated inside the transaction that stores them: committed = exposed.
        def run(conn: sqlite3.Connection) -> tuple[int, int]:
            row = conn.execute(
                "SELECT rec_max_seq, send_max_seq FROM sequence WHERE user_id = ?", (user_id,)
            ).fetchone()
            return (int(row[0]), int(row[1])) if row else (0, 0)

        return await self._db.read(run)
