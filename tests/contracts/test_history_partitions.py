"""History in PostgreSQL with fake time: the default partition catches everything, monthly
partitions are created ahead and archived past retention, and inserts never fail.
Also the schema migrations and the idempotency keys kept beside the history."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import asyncpg
import pytest

from sandcat.adapters.postgres.history import PostgresHistory
from sandcat.adapters.postgres.idempotency import PostgresIdempotency
from sandcat.adapters.postgres.migrate import apply_pg_migrations
from sandcat.adapters.postgres.partitions import archive_partitions, ensure_partitions
from sandcat.domain import Ack
from sandcat.migrations import MIGRATIONS_DIR
from sandcat.protocol.msg import Msg
from tests.client import until
from tests.clock import FakeClock
from tests.contracts.conftest import OpenPg, with_database
from tests.services import Services


def ms(year: int, month: int, day: int = 1) -> int:
    return int(dt.datetime(year, month, day, tzinfo=dt.UTC).timestamp() * 1000)


def message(n: int, t: int) -> Msg:
    return Msg(
        send_id="alice",
        receiver_id="bob",
        local_id=f"l{n}",
        server_id=f"s{n}",
        send_time=t,
        msg_type=0,
        content_type=1,
        content=bytes([n % 256]),
        platform=1,
    )


@pytest.fixture
async def pool(open_pg: OpenPg) -> AsyncIterator[asyncpg.Pool]:
    async with open_pg() as p:
        yield p


async def where(pool: asyncpg.Pool) -> dict[str, list[str]]:
    """server_id of each row, by the partition that holds it."""
    rows = await pool.fetch(
        "SELECT tableoid::regclass::text AS part, server_id FROM messages ORDER BY server_id"
    )
    out: dict[str, list[str]] = {}
    for row in rows:
        out.setdefault(row["part"], []).append(row["server_id"])
    return out


async def partitions(pool: asyncpg.Pool) -> list[str]:
    rows = await pool.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'messages'::regclass ORDER BY 1"
    )
    return [row[0] for row in rows]


async def test_migrations_apply_once(real_services: Services, pool: asyncpg.Pool) -> None:
    dsn = with_database(real_services.pg_dsn, await pool.fetchval("SELECT current_database()"))
    assert await apply_pg_migrations(dsn) == []
    versions = await pool.fetch("SELECT version FROM schema_migrations")
    assert [row[0] for row in versions] == sorted(
        path.name for path in (MIGRATIONS_DIR / "postgres").glob("*.sql")
    )


async def test_the_default_partition_catches_every_time(pool: asyncpg.Pool) -> None:
    history = PostgresHistory(pool=pool)
    await history.append([message(1, 0), message(2, ms(2024, 5, 3)), message(3, ms(2099, 1))])
    assert await partitions(pool) == ["messages_default"]
    assert await where(pool) == {"messages_default": ["s1", "s2", "s3"]}


async def test_append_is_idempotent_and_batched(pool: asyncpg.Pool) -> None:
    history = PostgresHistory(pool=pool)
    batch = [message(n, ms(2024, 5, 3) + n) for n in range(50)]
    await history.append(batch)
    await history.append([*batch[:10], message(99, ms(2024, 5, 4))])
    await history.append([])
    assert await pool.fetchval("SELECT count(*) FROM messages") == 51
    row = await pool.fetchrow("SELECT * FROM messages WHERE server_id = 's7'")
    assert dict(row) == {
        "send_id": "alice",
        "receiver_id": "bob",
        "local_id": "l7",
        "server_id": "s7",
        "send_time": ms(2024, 5, 3) + 7,
        "msg_type": 0,
        "content_type": 1,
        "content": b"\x07",
        "platform": 1,
        "group_id": "",
    }


async def test_ensure_creates_months_ahead_and_moves_rows_out_of_default(
    pool: asyncpg.Pool,
) -> None:
    history = PostgresHistory(pool=pool)
    await history.append(
        [message(1, ms(2024, 5, 20)), message(2, ms(2024, 7, 31)), message(3, ms(2024, 8, 1))]
    )
    created = await ensure_partitions(pool, ms(2024, 5, 15), 2)
    assert created == ["messages_202405", "messages_202406", "messages_202407"]
    assert await ensure_partitions(pool, ms(2024, 5, 31), 2) == []
    assert await where(pool) == {
        "messages_202405": ["s1"],
        "messages_202407": ["s2"],
        "messages_default": ["s3"],
    }
    await history.append([message(4, ms(2024, 6, 1)), message(5, ms(2024, 7, 1) - 1)])
    assert (await where(pool))["messages_202406"] == ["s4", "s5"]
    assert await ensure_partitions(pool, ms(2024, 6, 2), 2) == ["messages_202408"]
    assert (await where(pool))["messages_202408"] == ["s3"]


@pytest.mark.parametrize("mode", ["drop", "move"])
async def test_archive_detaches_months_past_retention(pool: asyncpg.Pool, mode: str) -> None:
    history = PostgresHistory(pool=pool)
    await ensure_partitions(pool, ms(2023, 1, 10), 4)  # 2023-01 .. 2023-05
    await history.append([message(m, ms(2023, m, 2)) for m in range(1, 6)])
    handled = await archive_partitions(pool, ms(2024, 3, 15), 12, mode)
    # keep 2023-03 (twelve months before 2024-03) and later
    assert handled == ["messages_202301", "messages_202302"]
    assert await partitions(pool) == [
        "messages_202303",
        "messages_202304",
        "messages_202305",
        "messages_default",
    ]
    assert [r[0] for r in await pool.fetch("SELECT server_id FROM messages ORDER BY 1")] == [
        "s3",
        "s4",
        "s5",
    ]
    archived = await pool.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'archive' ORDER BY 1"
    )
    if mode == "move":
        assert [r[0] for r in archived] == ["messages_202301", "messages_202302"]
        assert await pool.fetchval("SELECT server_id FROM archive.messages_202302") == "s2"
    else:
        assert archived == []
        assert await pool.fetchval("SELECT to_regclass('public.messages_202301')") is None
    assert await archive_partitions(pool, ms(2024, 3, 15), 12, mode) == []
    await history.append([message(9, ms(2023, 1, 5))])  # an archived month: still accepted
    assert (await where(pool))["messages_default"] == ["s9"]


async def test_archive_refuses_bad_settings(pool: asyncpg.Pool) -> None:
    with pytest.raises(ValueError, match="drop or move"):
        await archive_partitions(pool, ms(2024, 1), 12, "delete")
    with pytest.raises(ValueError, match="at least one month"):
        await archive_partitions(pool, ms(2024, 1), 0, "drop")


async def test_idempotency_keys_last_24_hours(pool: asyncpg.Pool) -> None:
    clock = FakeClock(ms(2024, 5, 1))
    store = PostgresIdempotency(pool=pool, clock=clock)
    assert await store.get_ack("alice", "l1") is None
    await store.put_ack("alice", "l1", Ack("srv1", 123, 7))
    assert await store.get_ack("alice", "l1") == Ack("srv1", 123, 7)
    assert await store.get_ack("bob", "l1") is None
    clock.ms += 24 * 3600 * 1000 - 1
    assert await store.get_ack("alice", "l1") == Ack("srv1", 123, 7)
    await store.put_ack("alice", "l2", Ack("srv2", 456, 8))
    clock.ms += 1
    assert await store.get_ack("alice", "l1") is None
    assert await store.purge() == 1
    assert await store.get_ack("alice", "l2") == Ack("srv2", 456, 8)


async def test_idempotency_keys_in_batches(pool: asyncpg.Pool) -> None:
    """One statement looks up (or stores) every key of a batch; the batch forms agree with
    the single-key ones."""
    clock = FakeClock(ms(2024, 5, 1))
    store = PostgresIdempotency(pool=pool, clock=clock)
    assert await store.get_acks([]) == {}
    await store.put_acks([])
    await store.put_ack("alice", "old", Ack("srv0", 1, 1))
    clock.ms += 24 * 3600 * 1000  # "old" has expired
    await store.put_acks(
        [
            ("alice", "l1", Ack("srv1", 10, 2)),
            ("bob", "l1", Ack("srv2", 11, 1)),
            ("alice", "l2", Ack("srv3", 12, 3)),
            ("alice", "l2", Ack("srv4", 13, 4)),  # a key given twice keeps the last ack
        ]
    )
    keys = [("alice", "l1"), ("bob", "l1"), ("alice", "l2"), ("alice", "old"), ("carol", "l1")]
    assert await store.get_acks(keys) == {
        ("alice", "l1"): Ack("srv1", 10, 2),
        ("bob", "l1"): Ack("srv2", 11, 1),
        ("alice", "l2"): Ack("srv4", 13, 4),
    }
    assert await store.get_ack("alice", "l2") == Ack("srv4", 13, 4)
    # storing again refreshes the key (and its 24 hours)
    await store.put_acks([("alice", "old", Ack("srv5", 14, 5))])
    assert await store.get_acks([("alice", "old")]) == {("alice", "old"): Ack("srv5", 14, 5)}


async def test_a_live_key_is_claimed_once(pool: asyncpg.Pool) -> None:
    """The msg-server claims a record's key before storing it: the key keeps the first
    record it was claimed or put for, so a resend accepted twice (its first gateway died
    before inserting the key) is recognised; an expired key is taken over."""
    clock = FakeClock(ms(2024, 5, 1))
    store = PostgresIdempotency(pool=pool, clock=clock)
    assert await store.claim([]) == {}
    owners = await store.claim(
        [("alice", "l1", Ack("s1", 10, 1)), ("alice", "l1", Ack("s2", 11, 2))]
    )
    assert owners == {("alice", "l1"): "s1"}  # within a batch, the first record wins
    # The resend's gateway inserts its own ack afterwards: the claim stands.
    await store.put_acks([("alice", "l1", Ack("s2", 11, 2))])
    assert await store.get_acks([("alice", "l1")]) == {("alice", "l1"): Ack("s1", 10, 1)}
    assert await store.claim([("alice", "l1", Ack("s2", 11, 2))]) == {("alice", "l1"): "s1"}
    # A gateway that put its key first owns it; the consumer's replay agrees.
    await store.put_acks([("bob", "l1", Ack("s3", 12, 1))])
    assert await store.claim([("bob", "l1", Ack("s3", 12, 1))]) == {("bob", "l1"): "s3"}
    clock.ms += 24 * 3600 * 1000  # both expired: a new message may reuse the id
    assert await store.claim([("alice", "l1", Ack("s4", 13, 3))]) == {("alice", "l1"): "s4"}


async def test_put_and_claim_of_the_same_keys_at_once_do_not_deadlock(
    pool: asyncpg.Pool,
) -> None:
    """A gateway's ``put_acks`` and the msg-server's ``claim`` insert the same keys at the
    same time, each batch in its own order: both take their row locks in key order, so
    neither waits for PostgreSQL's deadlock detector (1 s, then one of them fails)."""
    store = PostgresIdempotency(pool=pool, clock=FakeClock(ms(2024, 5, 1)))
    for round_ in range(10):
        keys = [(f"u{i:03d}", f"r{round_}") for i in range(200)]
        acks = [(*key, Ack(f"s{i}", 10, i)) for i, key in enumerate(keys)]
        _, owners = await asyncio.gather(store.put_acks(acks), store.claim(acks[::-1]))
        assert owners == {key: f"s{i}" for i, key in enumerate(keys)}


async def test_a_claim_sees_a_key_put_after_its_snapshot(pool: asyncpg.Pool) -> None:
    """The claim is one statement, and its snapshot predates a put of the same key that
    commits while the claim waits for that row: the claim still returns the key's owner
    (the put's server_id), read again once the statement is done."""
    store = PostgresIdempotency(pool=pool, clock=FakeClock(ms(2024, 5, 1)))
    async with pool.acquire() as other:
        put = other.transaction()
        await put.start()
        await other.execute(
            "INSERT INTO idempotency (send_id, local_id, server_id, send_time, send_seq, "
            "created_at) VALUES ('carol', 'l1', 'first', 1, 1, $1)",
            ms(2024, 5, 1),
        )
        claim = asyncio.ensure_future(
            store.claim([("carol", "l1", Ack("second", 2, 2)), ("carol", "l2", Ack("s", 3, 3))])
        )

        async def claim_waits() -> bool:
            waiting = await pool.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' "
                "AND query LIKE 'WITH put AS%'"
            )
            return bool(waiting)

        await until(claim_waits, what="the claim waiting for the uncommitted put")
        await put.commit()
    assert await claim == {("carol", "l1"): "first", ("carol", "l2"): "s"}


async def _rows_read_by_scans(pool: asyncpg.Pool) -> int:
    """Rows of ``idempotency`` read by sequential scans so far (the pool's one connection
    reports its pending counters first)."""
    await pool.execute("SELECT pg_stat_force_next_flush()")
    value = await pool.fetchval(
        "SELECT seq_tup_read FROM pg_stat_user_tables WHERE relname = 'idempotency'"
    )
    return int(value)


async def test_key_lookups_stay_on_the_primary_key_while_the_table_grows(
    pool: asyncpg.Pool,
) -> None:
    """The lookups' statements are prepared and run while the table is empty (PostgreSQL
    caches a generic plan after five runs); 20,000 keys later, with no ANALYZE between,
    a lookup still reads its keys through the primary key, not every row."""
    clock = FakeClock(ms(2024, 5, 1))
    store = PostgresIdempotency(pool=pool, clock=clock)
    probe = [(f"user{i}", f"l{i}") for i in range(5)]
    for _ in range(10):
        assert await store.get_acks(probe) == {}
    await store.put_acks([(f"user{i % 200}", f"l{i}", Ack(f"s{i}", i, i)) for i in range(20_000)])
    before = await _rows_read_by_scans(pool)
    for _ in range(5):
        found = await store.get_acks([("user1", "l1"), ("user7", "l7"), ("nobody", "l1")])
        assert found == {("user1", "l1"): Ack("s1", 1, 1), ("user7", "l7"): Ack("s7", 7, 7)}
    assert await _rows_read_by_scans(pool) - before < 20_000
