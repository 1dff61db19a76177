"""GitHub login's provider links in PostgreSQL: the same semantics as ``SqliteOAuthStore``."""

from __future__ import annotations

import asyncpg

from sandcat.adapters.postgres.errors import pg_errors


class PostgresOAuthLinks:
    """Implements ``OAuthLinks``."""

    def __init__(self, *, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @pg_errors
    async def linked_user(self, provider: str, subject: str) -> str | None:
        user_id = await self._pool.fetchval(
            "SELECT user_id FROM oauth_links WHERE provider = $1 AND subject = $2",
            provider,
            subject,
        )
        return None if user_id is None else str(user_id)

    @pg_errors
    async def link(self, provider: str, subject: str, user_id: str, now_ms: int) -> str:
        # The no-op update makes RETURNING give the row that won a race.
        linked = await self._pool.fetchval(
            "INSERT INTO oauth_links (provider, subject, user_id, create_time) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (provider, subject) DO UPDATE SET "
            "provider = EXCLUDED.provider RETURNING user_id",
            provider,
            subject,
            user_id,
            now_ms,
        )
        return str(linked)
