"""Devices (refresh-token families) and friendship read marks in PostgreSQL: the twins of
``sandcat.adapters.embedded.devices``. Nothing is cached: a removal on one api process is
seen by the next request on every other."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from sandcat.adapters.device_sql import (
    device_values,
    devices_sql,
    evict_sql,
    insert_sql,
    remove_others_sql,
    use_refresh_sql,
)
from sandcat.adapters.postgres.errors import pg_errors
from sandcat.ports import Device

_INSERT = insert_sql("$")
_EVICT = evict_sql("$")
_DEVICES = devices_sql("$")
_REMOVE_OTHERS = remove_others_sql("$")
_USE_REFRESH = use_refresh_sql("$")


class PostgresDeviceStore:
    """Implements ``DeviceStore``."""

    def __init__(self, *, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @pg_errors
    async def add_device(self, device: Device, refresh_id: str, keep: int) -> list[str]:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(_INSERT, *device_values(device), refresh_id)
            rows = await conn.fetch(_EVICT, device.user_id, keep, device.id)
        return [row[0] for row in rows]

    @pg_errors
    async def devices(self, user_id: str) -> list[Device]:
        rows = await self._pool.fetch(_DEVICES, user_id)
        return [Device(*row) for row in rows]

    @pg_errors
    async def use_refresh(
        self,
        user_id: str,
        device_id: str,
        spent_id: str,
        new_id: str,
        address: str,
        now_ms: int,
        grace_ms: int,
    ) -> str | None:
        current = await self._pool.fetchval(
            _USE_REFRESH,
            user_id,
            device_id,
            spent_id,
            new_id,
            address,
            now_ms,
            grace_ms,
            now_ms - grace_ms,
        )
        return str(current) if current is not None else None

    @pg_errors
    async def remove(
        self, user_id: str, device_ids: Sequence[str] | None = None, *, keep: str = ""
    ) -> list[str]:
        if device_ids is None:
            rows = await self._pool.fetch(_REMOVE_OTHERS, user_id, keep)
        else:
            rows = await self._pool.fetch(
                "DELETE FROM devices WHERE user_id = $1 AND id = ANY($2::text[]) RETURNING id",
                user_id,
                list(device_ids),
            )
        return [row[0] for row in rows]


class PostgresFriendshipReads:
    """Implements ``FriendshipReads``."""

    def __init__(self, *, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @pg_errors
    async def mark_read(self, fs_id: str, user_id: str, read_until: int) -> None:
        await self._pool.execute(
            "INSERT INTO friendship_reads (fs_id, user_id, read_until) VALUES ($1, $2, $3) "
            "ON CONFLICT (fs_id) DO UPDATE SET user_id = excluded.user_id, "
            "read_until = GREATEST(friendship_reads.read_until, excluded.read_until)",
            fs_id,
            user_id,
            read_until,
        )
