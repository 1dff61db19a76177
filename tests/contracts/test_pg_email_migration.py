"""``sandcat/migrations/postgres/0004_email_case_insensitive.sql`` on a database made before it:
case variants already stored keep the oldest account's address, and from then on the
unique index refuses a variant."""

from __future__ import annotations

import asyncpg
import pytest

from sandcat.adapters.postgres.migrate import apply_pg_migrations
from tests.contracts.conftest import OpenPgBefore

INSERT = (
    "INSERT INTO users (id, name, account, password, salt, avatar, email, create_time, "
    "update_time) VALUES ($1, 'n', $1, '', '', 'a.png', $2, $3, $3)"
)


async def test_email_uniqueness_ignores_case_from_0004_on(open_pg_before: OpenPgBefore) -> None:
    async with open_pg_before("0004") as (dsn, conn):
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
