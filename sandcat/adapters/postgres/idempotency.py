"""(send_id, local_id) -> the original ack, kept 24 h (docs/security.md)."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from sandcat.adapters.postgres.errors import pg_errors
from sandcat.domain import Ack
from sandcat.ids import SystemClock
from sandcat.ports import Clock

IDEMPOTENCY_TTL_MS = 24 * 3600 * 1000


def _by_key(columns: str, condition: str = "") -> str:
    """The rows of the keys in ``$1``/``$2`` (every key column travels as one array), one
    primary-key lookup per key. A LATERAL subquery with LIMIT 1 is never flattened into a
    join: as a join, the generic plan PostgreSQL caches for a prepared statement was a
    hash join over a sequential scan whenever the table was small when it was planned (a
    fresh deployment, the first minutes of a day's keys), and it stayed that plan until the
    next ANALYZE while the table grew, each lookup reading every row (docs/performance.md)."""
    return (
        "SELECT i.* FROM unnest($1::VARCHAR[], $2::VARCHAR[]) AS k(send_id, local_id) "
        f"CROSS JOIN LATERAL (SELECT {columns} FROM idempotency i WHERE i.send_id = k.send_id "
        f"AND i.local_id = k.local_id{condition} LIMIT 1) AS i"
    )


_GET_MANY = _by_key(
    "i.send_id, i.local_id, i.server_id, i.send_time, i.send_seq", " AND i.created_at > $3"
)
#: A live key is never replaced (the msg-server may have claimed it for the record it
#: stored: ``claim``); an expired one is. Rows go in key order: a gateway's ``put_acks`` and
#: the msg-server's ``claim`` insert overlapping keys at the same time, and two multi-row
#: inserts taking their row locks in different orders deadlock (PostgreSQL breaks the cycle
#: after ``deadlock_timeout``, 1 s, by failing one of them; docs/performance.md).
_PUT_MANY = (
    "INSERT INTO idempotency (send_id, local_id, server_id, send_time, send_seq, created_at) "
    "SELECT k.*, $6::BIGINT FROM unnest($1::VARCHAR[], $2::VARCHAR[], $3::VARCHAR[], "
    "$4::BIGINT[], $5::BIGINT[]) AS k(send_id, local_id, server_id, send_time, send_seq) "
    "ORDER BY k.send_id, k.local_id "
    "ON CONFLICT (send_id, local_id) DO UPDATE SET server_id = excluded.server_id, "
    "send_time = excluded.send_time, send_seq = excluded.send_seq, "
    "created_at = excluded.created_at WHERE idempotency.created_at <= $7"
)
_OWNERS = _by_key("i.send_id, i.local_id, i.server_id")
#: The claim in one round trip: ``_PUT_MANY``, then each key's owner, the put's own rows from
#: RETURNING and the others (live keys it left alone) as the statement's snapshot shows them.
#: A key another transaction inserted after that snapshot was taken is in neither: ``claim``
#: reads those again with ``_OWNERS`` (rare: a put of the same key at the same instant).
_CLAIM = (
    "WITH put AS (" + _PUT_MANY + " RETURNING send_id, local_id, server_id) "
    "SELECT send_id, local_id, server_id FROM put UNION ALL "
    "SELECT o.send_id, o.local_id, o.server_id FROM (" + _OWNERS + ") AS o "
    "WHERE NOT EXISTS (SELECT 1 FROM put p WHERE p.send_id = o.send_id "
    "AND p.local_id = o.local_id)"
)


def _columns(keys: Sequence[tuple[str, str]]) -> tuple[list[str], list[str]]:
    return [send_id for send_id, _ in keys], [local_id for _, local_id in keys]


class PostgresIdempotency:
    """Implements ``IdempotencyStore`` (one key or a batch per statement); ``purge`` drops
    keys past the TTL."""

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
    async def get_acks(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Ack]:
        if not keys:
            return {}
        rows = await self._pool.fetch(
            _GET_MANY, *_columns(keys), self._clock.now_ms() - self._ttl_ms
        )
        return {(row[0], row[1]): Ack(row[2], row[3], row[4]) for row in rows}

    @pg_errors
    async def put_acks(self, items: Sequence[tuple[str, str, Ack]]) -> None:
        if not items:
            return
        # One row per key (ON CONFLICT cannot touch a row twice in one statement).
        latest = {(send_id, local_id): ack for send_id, local_id, ack in items}
        await self._pool.execute(_PUT_MANY, *self._put_args(latest))

    def _put_args(self, acks_by_key: dict[tuple[str, str], Ack]) -> tuple[object, ...]:
        """``_PUT_MANY``'s parameters: the key and ack columns, now, the expiry bound."""
        now = self._clock.now_ms()
        acks = list(acks_by_key.values())
        return (
            *_columns(list(acks_by_key)),
            [ack.server_id for ack in acks],
            [ack.send_time for ack in acks],
            [ack.send_seq for ack in acks],
            now,
            now - self._ttl_ms,
        )

    @pg_errors
    async def claim(self, items: Sequence[tuple[str, str, Ack]]) -> dict[tuple[str, str], str]:
        """The msg-server's side: put each key (the first of a key in ``items`` wins) unless
        a live one is there, then return the ``server_id`` each key belongs to. A record
        whose key belongs to another ``server_id`` is a resend accepted twice (its first
        gateway died between the broker's ack and its own insert): it is not stored again."""
        if not items:
            return {}
        first: dict[tuple[str, str], Ack] = {}
        for send_id, local_id, ack in items:
            first.setdefault((send_id, local_id), ack)
        rows = await self._pool.fetch(_CLAIM, *self._put_args(first))
        owners = {(row[0], row[1]): row[2] for row in rows}
        unseen = [key for key in first if key not in owners]
        if unseen:
            rows = await self._pool.fetch(_OWNERS, *_columns(unseen))
            owners.update({(row[0], row[1]): row[2] for row in rows})
        return owners

    @pg_errors
    async def purge(self) -> int:
        """Delete the keys older than the TTL; returns how many."""
        status: str = await self._pool.execute(
            "DELETE FROM idempotency WHERE created_at <= $1", self._clock.now_ms() - self._ttl_ms
        )
        return int(status.rsplit(" ", 1)[-1])
