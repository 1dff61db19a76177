"""(send_id, local_id) -> the original ack, kept 24 h (decisions §2.11)."""

from __future__ import annotations

import asyncpg

from sandcat.adapters.postgres.errors import pg_errors
from sandcat.domain import Ack
from sandcat.ids import Clock, SystemClock

IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000


class PostgresIdempotency:
    """Implements ``IdempotencyStore``; ``purge`` drops keys past the TTL."""

    def __init__(
        self, *, pool: asyncpg.Pool, clock: Clock | None = None, ttl_ms: int = IDEMPOTENCY_TTL_MS
    ) -> None:
        self._pool = pool
        self._clock = clock or SystemClock()
        self._ttl_ms = ttl_ms

    @pg_errors
    async def get_ack(self, send_id: str, local_id: str) -> Ack | None:
        row = await self._pool.fetchrow(
            "SELECT server_id, send_time, send_seq FROM idempotency "
            "WHERE send_id = $1 AND local_id = $2 AND created_at > $3",
            send_id,
            local_id,
            self._clock.now_ms() - self._ttl_ms,
        )
        return Ack(row[0], row[1], row[2]) if row else None

    @pg_errors
    async def put_ack(self, send_id: str, local_id: str, ack: Ack) -> None:
        await self._pool.execute(
            "INSERT INTO idempotency (send_id, local_id, server_id, send_time, send_seq, "
            "created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (send_id, local_id) DO "
            "UPDATE SET server_id = excluded.server_id, send_time = excluded.send_time, "
            "send_seq = excluded.send_seq, created_at = excluded.created_at",
            send_id,
            local_id,
            ack.server_id,
            ack.send_time,
            ack.send_seq,
            self._clock.now_ms(),
        )

    @pg_errors
    async def purge(self) -> int:
        """Delete the keys older than the TTL; returns how many."""
        status: str = await self._pool.execute(
            "DELETE FROM idempotency WHERE created_at <= $1", self._clock.now_ms() - self._ttl_ms
        )
        return int(status.rsplit(" ", 1)[-1])
