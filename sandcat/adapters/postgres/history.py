"""Chat history in the monthly-partitioned ``messages`` table."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from sandcat.adapters.postgres.errors import pg_errors
from sandcat.protocol.msg import Msg

#: One statement per batch: each column travels as one array.
_APPEND = (
    "INSERT INTO messages (send_id, receiver_id, local_id, server_id, send_time, msg_type, "
    "content_type, content, platform, group_id) "
    "SELECT * FROM unnest($1::VARCHAR[], $2::VARCHAR[], $3::VARCHAR[], $4::VARCHAR[], "
    "$5::BIGINT[], $6::INT[], $7::INT[], $8::BYTEA[], $9::INT[], $10::VARCHAR[]) "
    "ON CONFLICT DO NOTHING"
)


class PostgresHistory:
    """Implements ``HistoryStore``: batched, idempotent on (send_id, server_id, send_time)."""

    def __init__(self, *, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @pg_errors
    async def append(self, messages: Sequence[Msg]) -> None:
        if not messages:
            return
        await self._pool.execute(
            _APPEND,
            [m.send_id for m in messages],
            [m.receiver_id for m in messages],
            [m.local_id for m in messages],
            [m.server_id for m in messages],
            [m.send_time for m in messages],
            [m.msg_type for m in messages],
            [m.content_type for m in messages],
            [m.content for m in messages],
            [m.platform for m in messages],
            [m.group_id for m in messages],
        )
