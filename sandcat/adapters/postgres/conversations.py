"""Conversations in PostgreSQL: the twin of the embedded store. The rows are kept up to
date by ``PostgresHistory.append``, in the statement that stores the batch's messages."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from sandcat.adapters.conversation_sql import PEER, SINCE, conversation_of, view_sql
from sandcat.adapters.postgres.errors import pg_errors
from sandcat.ports import Conversation

_SINCE = view_sql(SINCE, placeholder="$", greatest="GREATEST", byte_order=' COLLATE "C"')
_PEER = view_sql(PEER, placeholder="$", greatest="GREATEST", byte_order=' COLLATE "C"')
#: Hiding stores the conversation's count now (``hidden_n``), unhiding clears it.
_FLAGS = (
    "INSERT INTO conversation_states AS s (user_id, conversation_id, pinned, muted, hidden_n, "
    "update_time) VALUES ($1, $2, COALESCE($3::BOOLEAN, FALSE), COALESCE($4::BOOLEAN, FALSE), "
    "CASE WHEN $5::BOOLEAN THEN COALESCE((SELECT n FROM conversations WHERE id = $2::VARCHAR), 0) "
    "END, $6) ON CONFLICT (user_id, conversation_id) DO UPDATE SET "
    "pinned = COALESCE($3, s.pinned), muted = COALESCE($4, s.muted), "
    "hidden_n = CASE WHEN $5 IS NULL THEN s.hidden_n ELSE excluded.hidden_n END, "
    "update_time = $6"
)
_READ = (
    "INSERT INTO conversation_states AS s (user_id, conversation_id, read_n, update_time) "
    "SELECT $1, c.id, LEAST(c.n, COALESCE($3::BIGINT, c.n)), $4 FROM conversations AS c "
    "WHERE c.id = ANY($2::VARCHAR[]) ORDER BY c.id "
    "ON CONFLICT (user_id, conversation_id) DO UPDATE SET "
    "read_n = GREATEST(s.read_n, excluded.read_n), update_time = excluded.update_time"
)


class PostgresConversationStore:
    """Implements ``ConversationStore``."""

    def __init__(self, *, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @pg_errors
    async def conversations(self, user_id: str, since_ms: int) -> list[Conversation]:
        return [conversation_of(row) for row in await self._pool.fetch(_SINCE, user_id, since_ms)]

    @pg_errors
    async def conversation(self, user_id: str, peer_id: str) -> Conversation | None:
        row = await self._pool.fetchrow(_PEER, user_id, peer_id)
        return None if row is None else conversation_of(row)

    @pg_errors
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
        await self._pool.execute(_FLAGS, user_id, conversation_id, pinned, muted, hidden, now_ms)

    @pg_errors
    async def mark_read(
        self, user_id: str, conversation_ids: Sequence[str], upto: int | None, now_ms: int
    ) -> None:
        await self._pool.execute(_READ, user_id, list(conversation_ids), upto, now_ms)
