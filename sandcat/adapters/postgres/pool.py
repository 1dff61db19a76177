"""The asyncpg connection pool of the distributed mode (``db.postgres`` section)."""

from __future__ import annotations

from urllib.parse import quote

import asyncpg

from sandcat.config import PostgresConfig


def pg_dsn(config: PostgresConfig) -> str:
    """A ``postgresql://`` URL for the configured server and database."""
    auth = quote(config.user, safe="")
    if config.password:
        auth += ":" + quote(config.password, safe="")
    return f"postgresql://{auth}@{config.host}:{config.port}/{quote(config.database, safe='')}"


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Return a connection to the pool as it is.

    asyncpg's default reset sends ``RESET ALL``, ``CLOSE ALL``, ``UNLISTEN *`` and an
    advisory-unlock query on every release: one more round trip per statement, which was
    a third of the distributed gateway's PostgreSQL traffic. No pooled connection here
    changes session state (no ``SET``, ``LISTEN``, cursors or advisory locks: the
    migration lock is taken on a connection of its own), and asyncpg still rolls back a
    transaction left open before this runs.
    """


async def open_pool(dsn: str, *, max_size: int = 10) -> asyncpg.Pool:
    """A pool of at most ``max_size`` connections (``db.postgres.max_connections``)."""
    return await asyncpg.create_pool(dsn, min_size=1, max_size=max_size, reset=_keep_session)
