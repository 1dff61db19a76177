"""``sandcat/migrations/postgres/0009_conversation_hidden_n.sql`` on a database made before
it: a conversation hidden before the upgrade stays hidden at its count then (0 without a
message), one not hidden gets NULL, and the ``hidden`` column is gone."""

from __future__ import annotations

from sandcat.adapters.postgres.migrate import apply_pg_migrations
from tests.contracts.conftest import OpenPgBefore


async def test_hidden_becomes_the_count_at_the_upgrade(open_pg_before: OpenPgBefore) -> None:
    async with open_pg_before("0009") as (dsn, conn):
        await conn.execute(
            "INSERT INTO conversations VALUES ('a:b', 3, 's3', 'a', 1, 'hi', 30), "
            "('g', 1, 's4', 'a', 1, 'hi', 40)"
        )
        await conn.execute(
            "INSERT INTO conversation_states (user_id, conversation_id, read_n, hidden, "
            "update_time) VALUES ('b', 'a:b', 1, TRUE, 50), ('a', 'a:b', 3, FALSE, 50), "
            "('b', 'g', 0, FALSE, 50), ('c', 'c:d', 0, TRUE, 50)"
        )
        assert "0009_conversation_hidden_n.sql" in await apply_pg_migrations(dsn)
        rows = await conn.fetch(
            "SELECT user_id, conversation_id, read_n, hidden_n FROM conversation_states "
            "ORDER BY user_id, conversation_id"
        )
        assert [tuple(row) for row in rows] == [
            ("a", "a:b", 3, None),
            ("b", "a:b", 1, 3),
            ("b", "g", 0, None),
            ("c", "c:d", 0, 0),
        ]
        columns = await conn.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_name = 'conversation_states'"
        )
        assert "hidden" not in {row[0] for row in columns}
