"""Conversations of the embedded mode: the rows the message writer upserts in its batch
transaction (``conversation_rows``), and ``SqliteConversationStore`` for the routes."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

import orjson

from sandcat.adapters.conversation_sql import PEER, SINCE, conversation_of, view_sql
from sandcat.adapters.embedded.sqlite import SqliteDatabase
from sandcat.domain import conversation_id
from sandcat.ports import Conversation
from sandcat.protocol.msg import Msg

#: ``(id, n, last_server_id, last_sender, last_content_type, last_content, last_time,
#: lo_read_n, hi_read_n)``: one row per conversation of a batch, its count added to the
#: stored one. In a one-to-one conversation, sending reads it up to one's own message: a
#: side's read mark is the batch's count at its newest message (0: it sent none), added
#: to the stored count on conflict.
CONVERSATION_UPSERT = (
    "INSERT INTO conversations (id, n, last_server_id, last_sender, last_content_type, "
    "last_content, last_time, lo_read_n, hi_read_n) VALUES "
)
CONVERSATION_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
CONVERSATION_CONFLICT = (
    " ON CONFLICT(id) DO UPDATE SET n = n + excluded.n, "
    "last_server_id = excluded.last_server_id, last_sender = excluded.last_sender, "
    "last_content_type = excluded.last_content_type, last_content = excluded.last_content, "
    "last_time = excluded.last_time, "
    "lo_read_n = CASE excluded.lo_read_n WHEN 0 THEN lo_read_n ELSE n + excluded.lo_read_n END, "
    "hi_read_n = CASE excluded.hi_read_n WHEN 0 THEN hi_read_n ELSE n + excluded.hi_read_n END"
)
#: ``(sender, group, messages of the batch after the sender's last, its time)``: sending
#: marks the sender's group conversation read up to their own message (run after the
#: conversation upsert, so ``c.n`` counts the batch).
SENDER_READ = (
    "INSERT INTO conversation_states (user_id, conversation_id, read_n, update_time) "
    "SELECT v.column1, v.column2, c.n - v.column3, v.column4 FROM (VALUES "
)
SENDER_ROW = "(?, ?, ?, ?)"
SENDER_READ_TAIL = (
    ") AS v JOIN conversations AS c ON c.id = v.column2 WHERE TRUE "
    "ON CONFLICT(user_id, conversation_id) DO UPDATE SET "
    "read_n = MAX(read_n, excluded.read_n), update_time = excluded.update_time"
)


def conversation_rows(
    chats: Sequence[Msg],
) -> tuple[list[tuple[Any, ...]], list[tuple[str, str, int, int]]]:
    """The conversation upserts and group senders' reads of a batch's stored chat messages,
    in order: one row per conversation and one per (sender, group), however many messages
    or receivers there are. A one-to-one sender's read rides in the conversation's row."""
    counts: dict[str, list[Any]] = {}  # conversation -> [messages, newest, lo at, hi at]
    senders: dict[tuple[str, str], tuple[int, int]] = {}  # -> (count at it, its time)
    for msg in chats:
        group = msg.group_id
        key = group or conversation_id(msg.send_id, msg.receiver_id, is_group=False)
        entry = counts.get(key)
        if entry is None:
            entry = counts[key] = [0, msg, 0, 0]
        entry[0] += 1
        entry[1] = msg
        if group:
            senders[(msg.send_id, key)] = (entry[0], msg.send_time)
        else:
            entry[2 if msg.send_id < msg.receiver_id else 3] = entry[0]
    conversations = [
        (key, n, m.server_id, m.send_id, m.content_type, m.content, m.send_time, lo, hi)
        for key, (n, m, lo, hi) in counts.items()
    ]
    reads = [
        (sender, key, counts[key][0] - at, time) for (sender, key), (at, time) in senders.items()
    ]
    return conversations, reads


_SINCE = view_sql(SINCE, placeholder="?", greatest="MAX", byte_order="")
_PEER = view_sql(PEER, placeholder="?", greatest="MAX", byte_order="")
#: Hiding stores the conversation's count now (``hidden_n``), unhiding clears it.
_FLAGS = (
    "INSERT INTO conversation_states (user_id, conversation_id, pinned, muted, hidden_n, "
    "update_time) VALUES (?1, ?2, COALESCE(?3, 0), COALESCE(?4, 0), "
    "CASE WHEN ?5 THEN COALESCE((SELECT n FROM conversations WHERE id = ?2), 0) END, ?6) "
    "ON CONFLICT(user_id, conversation_id) DO UPDATE SET pinned = COALESCE(?3, pinned), "
    "muted = COALESCE(?4, muted), "
    "hidden_n = CASE WHEN ?5 IS NULL THEN hidden_n ELSE excluded.hidden_n END, update_time = ?6"
)
_READ = (
    "INSERT INTO conversation_states (user_id, conversation_id, read_n, update_time) "
    "SELECT ?1, c.id, MIN(c.n, COALESCE(?3, c.n)), ?4 FROM conversations AS c "
    "WHERE c.id IN (SELECT value FROM json_each(?2)) "
    "ON CONFLICT(user_id, conversation_id) DO UPDATE SET "
    "read_n = MAX(read_n, excluded.read_n), update_time = excluded.update_time"
)


class SqliteConversationStore:
    """Implements ``ConversationStore`` over the tables the message writer keeps."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def conversations(self, user_id: str, since_ms: int) -> list[Conversation]:
        def run(conn: sqlite3.Connection) -> list[Conversation]:
            return [conversation_of(row) for row in conn.execute(_SINCE, (user_id, since_ms))]

        return await self._db.read(run)

    async def conversation(self, user_id: str, peer_id: str) -> Conversation | None:
        def run(conn: sqlite3.Connection) -> Conversation | None:
            row = conn.execute(_PEER, (user_id, peer_id)).fetchone()
            return None if row is None else conversation_of(row)

        return await self._db.read(run)

    async def set_flags(
        self,
        user_id: str,
        conversation_id: str,
        *,
        pinned: bool | None,
        muted: bool | None,
        hidden: bool | None,
        now_ms: int,
    ) -> None:
        params = (user_id, conversation_id, pinned, muted, hidden, now_ms)
        await self._db.write(lambda conn: conn.execute(_FLAGS, params))

    async def mark_read(
        self, user_id: str, conversation_ids: Sequence[str], upto: int | None, now_ms: int
    ) -> None:
        params = (user_id, orjson.dumps(list(conversation_ids)).decode(), upto, now_ms)
        await self._db.write(lambda conn: conn.execute(_READ, params))
