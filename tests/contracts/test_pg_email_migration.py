"""``sandcat/migrations/postgres/0004_email_case_insensitive.sql`` on a database made before it:
case variants already stored keep the oldest account's address, and from then on the
unique index refuses a variant."""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg
import pytest

from sandcat.adapters.postgres.migrate import apply_pg_migrations
from sandcat.ids import nanoid
from sandcat.migrations import MIGRATIONS_DIR
from tests.contracts.conftest import with_database
from tests.services import Services

INSERT = (
    "INSERT INTO users (id, name, account, password, salt, avatar, email, create_time, "
    "update_time) VALUES ($1, 'n', $1, '', '', 'a.png', $2, $3, $3)"
)


async def test_email_uniqueness_ignores_case_from_0004_on(
    real_services: Services, tmp_path: Path
) -> None:
    before = tmp_path / "before"
    before.mkdir()
    for script in sorted((MIGRATIONS_DIR / "postgres").glob("*.sql")):
        if script.name < "0004":
            shutil.copy(script, before / script.name)
    name = f"t_email_{nanoid(10).lower().replace('-', 'x').replace('_', 'y')}"
    admin = await asyncpg.connect(real_services.pg_dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        dsn = with_database(real_services.pg_dsn, name)
        await apply_pg_migrations(dsn, before)
        conn = await asyncpg.connect(dsn)
        try:
            await conn.executemany(
                INSERT,
                [
                    ("first", "bob@example.com", 1),
                    ("squatter", "BOB@EXAMPLE.COM", 2),
                    ("other", "carol@example.com", 3),
                ],
            )
            applied = await apply_pg_migrations(dsn)
            assert "0004_email_case_insensitive.sql" in applied
            emails = dict(await conn.fetch("SELECT id, email FROM users"))
            assert emails == {
                "first": "bob@example.com",
                "squatter": None,
                "other": "carol@example.com",
            }
            with pytest.raises(asyncpg.UniqueViolationError) as refused:
                await conn.execute(INSERT, "late", "Carol@Example.com", 4)
            assert refused.value.constraint_name == "users_email"
        finally:
            await conn.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()
