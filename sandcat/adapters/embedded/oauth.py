"""GitHub login in SQLite: the sign-ins in progress and the provider links."""

from __future__ import annotations

import sqlite3

from sandcat.adapters.embedded.sqlite import SqliteDatabase
from sandcat.ids import SYSTEM_CLOCK
from sandcat.ports import Clock


class SqliteOAuthStore:
    """Implements ``OAuthStates`` and ``OAuthLinks``. A take is one write transaction
    (``DELETE ... RETURNING``), so a state is used once however many callbacks race."""

    def __init__(self, db: SqliteDatabase, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._db = db
        self._clock = clock

    async def put_state(self, state: str, value: str, ttl_seconds: int) -> None:
        now = int(self._clock.now())

        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM oauth_states WHERE expires_at <= ?", (now,))
            conn.execute(
                "INSERT INTO oauth_states (state, value, expires_at) VALUES (?, ?, ?)",
                (state, value, now + ttl_seconds),
            )

        await self._db.write(run)

    async def take_state(self, state: str) -> str | None:
        now = int(self._clock.now())

        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "DELETE FROM oauth_states WHERE state = ? RETURNING value, expires_at", (state,)
            ).fetchone()
            return str(row[0]) if row and row[1] > now else None

        return await self._db.write(run)

    async def linked_user(self, provider: str, subject: str) -> str | None:
        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT user_id FROM oauth_links WHERE provider = ? AND subject = ?",
                (provider, subject),
            ).fetchone()
            return str(row[0]) if row else None

        return await self._db.read(run)

    async def link(self, provider: str, subject: str, user_id: str, now_ms: int) -> str:
        def run(conn: sqlite3.Connection) -> str:
            row = conn.execute(
                "INSERT INTO oauth_links (provider, subject, user_id, create_time) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (provider, subject) DO UPDATE SET "
                "provider = provider RETURNING user_id",
                (provider, subject, user_id, now_ms),
            ).fetchone()
            return str(row[0])

        return await self._db.write(run)
