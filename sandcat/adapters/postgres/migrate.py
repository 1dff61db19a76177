"""The numbered ``sandcat/migrations/postgres/*.sql`` files, each applied once in its own
transaction."""

from __future__ import annotations

from pathlib import Path

import asyncpg

from sandcat.migrations import MIGRATIONS_DIR, migration_files

#: Serialises concurrent ``sandcat migrate`` runs (any constant shared by all of them).
_LOCK_KEY = 0x5A_4E_DC_A7


def _read_migrations(migrations_dir: Path) -> list[tuple[str, str]]:
    return [
        (file.name, file.read_text(encoding="utf-8")) for file in migration_files(migrations_dir)
    ]


async def apply_pg_migrations(
    dsn: str, migrations_dir: Path = MIGRATIONS_DIR / "postgres"
) -> list[str]:
    """Apply the files not yet recorded in ``schema_migrations``; returns the names applied."""
    migrations = _read_migrations(migrations_dir)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version VARCHAR PRIMARY KEY, "
            "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in await conn.fetch("SELECT version FROM schema_migrations")}
        applied: list[str] = []
        for name, script in migrations:
            if name in done:
                continue
            async with conn.transaction():
                await conn.execute(script)
                await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", name)
            applied.append(name)
        return applied
    finally:
        await conn.close()
