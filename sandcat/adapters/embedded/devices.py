"""Devices (refresh-token families) and friendship read marks in SQLite."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from sandcat.adapters.device_sql import (
    device_values,
    devices_sql,
    evict_sql,
    insert_sql,
    remove_others_sql,
    use_refresh_sql,
)
from sandcat.adapters.embedded.sqlite import SqliteDatabase
from sandcat.ports import Device

_INSERT = insert_sql("?")
_EVICT = evict_sql("?")
_DEVICES = devices_sql("?")
_REMOVE_OTHERS = remove_others_sql("?")
_USE_REFRESH = use_refresh_sql("?")


class SqliteDeviceStore:
    """Implements ``DeviceStore``. The process that owns the file is its only writer, so it
    caches the owner of each device it saw: every HTTP request and WebSocket connect asks
    whether the token's device still exists, and a removal drops the entry in the step that
    commits it."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self._owners: dict[str, str] = {}
        #: Raised by every removal: a read that overlapped one does not fill the cache.
        self._removals = 0

    async def add_device(self, device: Device, refresh_id: str, keep: int) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            conn.execute(_INSERT, (*device_values(device), refresh_id))
            rows = conn.execute(_EVICT, (device.user_id, keep, device.id)).fetchall()
            return [str(row[0]) for row in rows]

        evicted = await self._db.write(run)
        self._forget(evicted)
        self._owners[device.id] = device.user_id
        return evicted

    async def devices(self, user_id: str) -> list[Device]:
        def run(conn: sqlite3.Connection) -> list[Device]:
            rows = conn.execute(_DEVICES, (user_id,)).fetchall()
            return [Device(*row) for row in rows]

        return await self._db.read(run)

    async def is_active(self, user_id: str, device_id: str) -> bool:
        """Whether the device exists (was not logged out) and is the user's: the device half
        of ``SqliteUserStore.session_state``."""
        owner = self._owners.get(device_id)
        if owner is not None:
            return owner == user_id
        removals = self._removals

        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute("SELECT user_id FROM devices WHERE id = ?", (device_id,)).fetchone()
            return str(row[0]) if row else None

        owner = await self._db.read(run)
        if owner is not None and removals == self._removals:
            self._owners[device_id] = owner
        return owner == user_id

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
        values = (user_id, device_id, spent_id, new_id, address, now_ms, grace_ms)

        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(_USE_REFRESH, (*values, now_ms - grace_ms)).fetchone()
            return str(row[0]) if row else None

        return await self._db.write(run)

    async def remove(
        self, user_id: str, device_ids: Sequence[str] | None = None, *, keep: str = ""
    ) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            if device_ids is None:
                rows = conn.execute(_REMOVE_OTHERS, (user_id, keep)).fetchall()
            else:
                marks = ", ".join("?" * len(device_ids))
                rows = conn.execute(
                    f"DELETE FROM devices WHERE user_id = ? AND id IN ({marks}) RETURNING id",
                    (user_id, *device_ids),
                ).fetchall()
            return [str(row[0]) for row in rows]

        removed = await self._db.write(run)
        self._forget(removed)
        return removed

    def _forget(self, device_ids: Sequence[str]) -> None:
        self._removals += 1
        for device_id in device_ids:
            self._owners.pop(device_id, None)


class SqliteFriendshipReads:
    """Implements ``FriendshipReads``."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def mark_read(self, fs_id: str, user_id: str, read_until: int) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO friendship_reads (fs_id, user_id, read_until) VALUES (?, ?, ?) "
                "ON CONFLICT(fs_id) DO UPDATE SET user_id = excluded.user_id, "
                "read_until = max(read_until, excluded.read_until)",
                (fs_id, user_id, read_until),
            )

        await self._db.write(run)
