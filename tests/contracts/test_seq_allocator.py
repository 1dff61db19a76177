"""``SeqAllocator`` on real Redis with ``SegmentStore`` marks on real PostgreSQL.

The sequences must be contiguous, come from one Lua call per allocation, never exceed the
durable mark, survive the loss of Redis, and expose only what is stored (decisions §2.12, §4).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import secrets
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sandcat.adapters.postgres.segments import PostgresSegmentStore
from sandcat.adapters.redis.client import connect
from sandcat.adapters.redis.seqs import RedisSeqAllocator
from sandcat.config import RedisConfig
from sandcat.errors import DbError

#: The table of ``sandcat/migrations/postgres/0001_init.sql``, for a database made before
#: it existed.
_SEQUENCE_TABLE = (
    "CREATE TABLE IF NOT EXISTS sequence (user_id VARCHAR PRIMARY KEY, "
    "rec_max_seq BIGINT NOT NULL DEFAULT 0, send_max_seq BIGINT NOT NULL DEFAULT 0)"
)


class SpySegments:
    """The real store, recording each raise; ``fail_after`` raises make it unavailable."""

    def __init__(self, real: PostgresSegmentStore, *, fail_after: int | None = None) -> None:
        self.real = real
        self.raises: list[tuple[str, str, int]] = []
        self.fail_after = fail_after

    async def raise_mark(self, user_id: str, kind: str, step: int) -> int:
        if self.fail_after is not None and len(self.raises) >= self.fail_after:
            raise DbError("the database is unavailable")
        mark = await self.real.raise_mark(user_id, kind, step)
        self.raises.append((user_id, kind, mark))
        return mark

    async def marks(self, user_id: str) -> tuple[int, int]:
        return await self.real.marks(user_id)


@pytest.fixture
async def segments(pg_pool: asyncpg.Pool) -> AsyncIterator[SpySegments]:
    await pg_pool.execute(_SEQUENCE_TABLE)
    yield SpySegments(PostgresSegmentStore(pool=pg_pool))


@pytest.fixture
async def pooled_client(redis_client: Redis) -> AsyncIterator[Redis]:
    """The production client (a bounded, blocking pool) on the test's emptied database,
    for more concurrent calls than connections."""
    kwargs = redis_client.connection_pool.connection_kwargs
    config = RedisConfig(host=kwargs["host"], port=kwargs["port"], db=kwargs.get("db", 0))
    client = connect(config=config, max_connections=8)
    yield client
    await client.aclose()


def _count_evalsha(client: Redis) -> list[int]:
    """Count this client's script calls (the scripts call ``client.evalsha``): the server's
    own statistics also count whatever else shares the Redis server, such as the e2e
    cluster of the same test session."""
    calls: list[int] = []
    real = client.evalsha

    async def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return await real(*args, **kwargs)

    client.evalsha = counted  # type: ignore[method-assign]
    return calls


# --- PostgresSegmentStore ---------------------------------------------------------------


async def test_marks_rise_by_the_step_per_kind(segments: SpySegments) -> None:
    store = segments.real
    assert await store.marks("u1") == (0, 0)
    assert await store.raise_mark("u1", "rec", 100) == 100
    assert await store.raise_mark("u1", "rec", 100) == 200
    assert await store.raise_mark("u1", "send", 7) == 7
    assert await store.marks("u1") == (200, 7)
    assert await store.marks("u2") == (0, 0)
    with pytest.raises(ValueError, match="unknown segment kind"):
        await store.raise_mark("u1", "other", 1)


async def test_concurrent_raises_never_lose_one(segments: SpySegments) -> None:
    marks = await asyncio.gather(*(segments.real.raise_mark("u1", "rec", 10) for _ in range(20)))
    assert sorted(marks) == list(range(10, 201, 10))


async def test_segment_store_errors_become_db_errors(pg_pool: asyncpg.Pool) -> None:
    store = PostgresSegmentStore(pool=pg_pool)
    await pg_pool.execute("DROP TABLE IF EXISTS sequence")
    with pytest.raises(DbError):
        await store.raise_mark("u1", "rec", 10)


# --- RedisSeqAllocator ------------------------------------------------------------------


async def test_seqs_are_contiguous_per_user_and_kind(
    redis_client: Redis, segments: SpySegments
) -> None:
    seqs = RedisSeqAllocator(client=redis_client, segments=segments, step=4)
    got = [await seqs.allocate("a", ["b"]) for _ in range(10)]
    assert got == [(n, [n]) for n in range(1, 11)]
    assert await seqs.allocate("b", ["a"]) == (1, [1])  # b's send and a's receive counters
    assert await seqs.allocate(None, ["b"]) == (0, [11])
    assert await seqs.allocate("a", []) == (11, [])
    assert await seqs.allocate(None, []) == (0, [])


async def test_one_lua_call_serves_a_sender_and_many_receivers(
    redis_client: Redis, segments: SpySegments
) -> None:
    seqs = RedisSeqAllocator(client=redis_client, segments=segments, step=100)
    members = [f"m{i}" for i in range(50)]
    assert await seqs.allocate("a", members) == (1, [1] * 50)  # first use: segments raised
    calls = _count_evalsha(redis_client)
    assert await seqs.allocate("a", members) == (2, [2] * 50)
    assert len(calls) == 1
    # a batch may name a receiver several times: it gets consecutive seqs, in order
    assert await seqs.allocate(None, ["m0", "m1", "m0", "m0"]) == (0, [3, 3, 4, 5])


async def test_no_seq_above_the_durable_mark_is_returned(
    redis_client: Redis, segments: SpySegments
) -> None:
    seqs = RedisSeqAllocator(client=redis_client, segments=segments, step=3)
    for expected in range(1, 11):
        send_seq, (seq,) = await seqs.allocate("a", ["b"])
        assert send_seq == seq == expected
        rec_mark, _ = await segments.real.marks("b")
        _, send_mark = await segments.real.marks("a")
        assert seq <= rec_mark < seq + 3
        assert send_seq <= send_mark < send_seq + 3
    assert [mark for user, kind, mark in segments.raises if (user, kind) == ("b", "rec")] == [
        3,
        6,
        9,
        12,
    ]


async def test_a_batch_larger_than_a_segment_raises_the_mark_enough(
    redis_client: Redis, segments: SpySegments
) -> None:
    seqs = RedisSeqAllocator(client=redis_client, segments=segments, step=3)
    assert await seqs.allocate(None, ["b"] * 10) == (0, list(range(1, 11)))
    assert await segments.real.marks("b") == (12, 0)


async def test_no_seq_is_returned_while_the_mark_cannot_be_raised(
    redis_client: Redis, segments: SpySegments
) -> None:
    segments.fail_after = 2  # a's send segment and b's receive segment, then PG is down
    seqs = RedisSeqAllocator(client=redis_client, segments=segments, step=2)
    assert [await seqs.allocate("a", ["b"]) for _ in range(2)] == [(1, [1]), (2, [2])]
    with pytest.raises(DbError):
        await seqs.allocate("a", ["b"])
    with pytest.raises(DbError):
        await seqs.allocate(None, ["b", "c"])
    assert await seqs.allocate(None, []) == (0, [])
    segments.fail_after = None
    # nothing was consumed by the failed calls: the counters go on without a gap
    assert await seqs.allocate("a", ["b", "c"]) == (3, [3, 1])


async def test_after_losing_redis_new_seqs_are_above_every_issued_one(
    redis_client: Redis, segments: SpySegments
) -> None:
    seqs = RedisSeqAllocator(client=redis_client, segments=segments, step=5)
    issued = [await seqs.allocate("a", ["b", "c"]) for _ in range(7)]
    assert issued[-1] == (7, [7, 7])
    await redis_client.flushdb()
    await redis_client.script_flush()  # the scripts are gone too: reloaded on NOSCRIPT
    send_seq, (b_seq, c_seq) = await seqs.allocate("a", ["b", "c"])
    # every counter restarts above its durable mark (10), never at or below 7
    assert (send_seq, b_seq, c_seq) == (11, 11, 11)
    assert await seqs.allocate("a", ["b"]) == (12, [12])
    assert await segments.real.marks("b") == (15, 0)
    # a fresh allocator (another process) after another loss agrees
    await redis_client.flushdb()
    other = RedisSeqAllocator(client=redis_client, segments=segments, step=5)
    assert await other.allocate(None, ["b"]) == (0, [16])


async def test_after_losing_redis_the_watermark_is_the_durable_mark(
    redis_client: Redis, segments: SpySegments
) -> None:
    """A user who gets nothing after the loss still reads a watermark covering what was
    stored before it (it read 0, and pulls were clamped to nothing), and a counter seeded
    at a mark raised meanwhile does not skip the new segment."""
    seqs = RedisSeqAllocator(client=redis_client, segments=segments, step=5)
    for _ in range(7):
        _, got = await seqs.allocate("a", ["b"])
        await seqs.mark_stored([("b", got[0], 0)])
    await redis_client.flushdb()
    assert await seqs.exposed("b") == (10, 0)  # b's mark: nothing above it was issued
    assert await seqs.allocate("a", ["b"]) == (11, [11])
    # The seed reads a mark that an allocation has just raised, before the allocation
    # installs it: the new segment still starts right above the old mark.
    await redis_client.flushdb()
    raised = await segments.real.raise_mark("c", "rec", 5)
    await seqs._seed(keys=["seq:c"], args=[raised])
    await seqs._install(keys=["seq:c"], args=[5, raised])
    assert await seqs.allocate(None, ["c"]) == (0, [raised - 4])


async def test_exposed_stops_below_the_lowest_unstored_seq(
    redis_client: Redis, segments: SpySegments
) -> None:
    seqs = RedisSeqAllocator(client=redis_client, segments=segments, step=100)
    assert await seqs.exposed("b") == (0, 0)
    assert await seqs.mark_stored([]) == {}
    for sender in ("x", "y", "z"):
        await seqs.allocate(sender, ["b"])  # b: seqs 1, 2, 3
    await seqs.allocate("b", ["x"])  # b: send_seq 1
    assert await seqs.exposed("b") == (0, 0)
    # stored out of order: 3 first (another partition), then 1, then 2
    assert await seqs.mark_stored([("b", 3, 0), ("z", 0, 1)]) == {"b": (0, 0), "z": (0, 1)}
    assert await seqs.mark_stored([("b", 1, 0)]) == {"b": (1, 0)}
    assert await seqs.exposed("b") == (1, 0)
    assert await seqs.mark_stored([("b", 2, 0), ("x", 1, 1), ("b", 0, 1)]) == {
        "b": (3, 1),
        "x": (1, 1),
    }
    # storing again (a retried batch) changes nothing
    assert await seqs.mark_stored([("b", 2, 0)]) == {"b": (3, 1)}
    await seqs.allocate(None, ["b"])  # seq 4 pending
    assert await seqs.exposed("b") == (3, 1)
    assert await seqs.mark_stored([("nobody", 5, 5)]) == {"nobody": (0, 0)}


async def test_concurrent_allocations_get_unique_contiguous_seqs(
    pooled_client: Redis, segments: SpySegments
) -> None:
    step = 7
    seqs = RedisSeqAllocator(client=pooled_client, segments=segments, step=step)
    users = [f"u{i}" for i in range(6)]
    rng = random.Random(4)
    calls = [(rng.choice(users), rng.sample(users, rng.randint(1, 4))) for _ in range(300)]
    results = await asyncio.gather(*(seqs.allocate(s, r) for s, r in calls))
    received: dict[str, list[int]] = {u: [] for u in users}
    sent: dict[str, list[int]] = {u: [] for u in users}
    for (sender, receivers), (send_seq, got) in zip(calls, results, strict=True):
        sent[sender].append(send_seq)
        for receiver, seq in zip(receivers, got, strict=True):
            received[receiver].append(seq)
    for user in users:
        assert sorted(received[user]) == list(range(1, len(received[user]) + 1))
        assert sorted(sent[user]) == list(range(1, len(sent[user]) + 1))
        # one process raises each segment once: the marks are exactly what was used
        rec_mark, send_mark = await segments.real.marks(user)
        assert rec_mark == -(-len(received[user]) // step) * step
        assert send_mark == -(-len(sent[user]) // step) * step


async def test_two_allocators_share_the_counters(
    pooled_client: Redis, segments: SpySegments
) -> None:
    first = RedisSeqAllocator(client=pooled_client, segments=segments, step=5)
    second = RedisSeqAllocator(client=pooled_client, segments=segments, step=5)
    pairs = itertools.cycle((first, second))
    results = await asyncio.gather(*(next(pairs).allocate("a", ["b"]) for _ in range(100)))
    # Two processes may raise a new user's first mark at once: at most that one segment
    # is skipped (a gap, allowed); after it the seqs are unique and contiguous.
    for issued in (sorted(send for send, _ in results), sorted(seq for _, (seq,) in results)):
        assert 1 <= issued[0] <= 1 + 5
        assert issued == list(range(issued[0], issued[0] + 100))
    rec_mark, _ = await segments.real.marks("b")
    assert rec_mark >= 100


async def test_redis_errors_become_db_errors(segments: SpySegments) -> None:
    client = Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    seqs = RedisSeqAllocator(client=client, segments=segments, step=5)
    try:
        with pytest.raises(DbError):
            await seqs.allocate("a", ["b"])
        with pytest.raises(DbError):
            await seqs.exposed("a")
    finally:
        await client.aclose()


async def test_a_large_group_is_served_and_stored_in_one_call_each(
    redis_client: Redis, segments: SpySegments
) -> None:
    seqs = RedisSeqAllocator(client=redis_client, segments=segments, step=1000)
    members = [f"m{i}" for i in range(3000)]
    assert await seqs.allocate("a", members) == (1, [1] * 3000)  # 3001 new segments
    assert await seqs.allocate("a", members) == (2, [2] * 3000)
    stored = [(m, seq, 0) for m in members for seq in (1, 2)] + [("a", 0, 1), ("a", 0, 2)]
    calls = _count_evalsha(redis_client)
    exposed = await seqs.mark_stored(stored)
    assert len(calls) == 1
    assert exposed == {**{m: (2, 0) for m in members}, "a": (0, 2)}


async def test_abandoned_allocations_are_released(
    redis_client: Redis, segments: SpySegments
) -> None:
    """A process that dies between allocating and publishing must not stall the watermark."""
    seqs = RedisSeqAllocator(client=redis_client, segments=segments, step=100)
    user = f"abandon-{secrets.token_hex(4)}"
    _, (first,) = await seqs.allocate(None, [user])
    _, (second,) = await seqs.allocate(None, [user])
    await seqs.mark_stored([(user, second, 0)])
    assert await seqs.exposed(user) == (first - 1, 0)  # the abandoned one holds it back
    assert await seqs.release_stale(60_000) == 0  # too young to be abandoned
    assert await seqs.release_stale(0) >= 1
    assert await seqs.exposed(user) == (second, 0)


async def test_a_batch_of_requests_is_one_lua_call_in_request_order(
    redis_client: Redis, segments: SpySegments
) -> None:
    seqs = RedisSeqAllocator(client=redis_client, segments=segments, step=100)
    await seqs.allocate_many([("a", ["b", "c"]), ("c", ["a", "d"])])  # first use: segments
    script = seqs._allocate
    calls: list[int] = []

    async def counted(**kwargs: Any) -> Any:  # this allocator's own calls, whatever else runs
        calls.append(1)
        return await script(**kwargs)

    seqs._allocate = counted  # type: ignore[assignment]
    got = await seqs.allocate_many(
        [("a", ["b"]), ("c", ["b"]), ("a", ["b", "d", "b"]), (None, []), ("a", [])]
    )
    assert len(calls) == 1
    # as if allocated one after the other: a's send_seqs 2, 3, 4; b's seqs 2, 3, 4, 5
    assert got == [(2, [2]), (2, [3]), (3, [4, 2, 5]), (0, []), (4, [])]
    assert await seqs.allocate_many([]) == []
    assert await seqs.allocate_many([(None, [])]) == [(0, [])]
    # every seq of the batch is pending until stored, like a single allocation's
    assert await seqs.exposed("b") == (0, 0)
    assert await seqs.mark_stored([("b", n, 0) for n in (1, 2, 3, 4)]) == {"b": (4, 0)}
    assert await seqs.mark_stored([("b", 5, 0), ("d", 2, 0)]) == {"b": (5, 0), "d": (0, 0)}
    assert await seqs.mark_stored([("d", 1, 0)]) == {"d": (2, 0)}


async def test_a_batch_raises_every_segment_it_needs_before_returning(
    redis_client: Redis, segments: SpySegments
) -> None:
    seqs = RedisSeqAllocator(client=redis_client, segments=segments, step=3)
    got = await seqs.allocate_many([("a", ["b"] * 4), ("a", ["c"]), ("a", ["b"] * 4)])
    assert got == [(1, [1, 2, 3, 4]), (2, [1]), (3, [5, 6, 7, 8])]
    # the durable marks cover every returned seq (8 seqs of b: a mark of 9)
    assert await segments.real.marks("b") == (9, 0)
    assert await segments.real.marks("a") == (0, 3)
    assert await segments.real.marks("c") == (3, 0)


async def test_concurrent_batches_keep_each_batch_contiguous_per_counter(
    pooled_client: Redis, segments: SpySegments
) -> None:
    seqs = RedisSeqAllocator(client=pooled_client, segments=segments, step=5)
    batches = [[("a", ["b"]) for _ in range(10)] for _ in range(20)]
    results = await asyncio.gather(*(seqs.allocate_many(batch) for batch in batches))
    issued: list[int] = []
    for result in results:
        sends = [send for send, _ in result]
        assert sends == list(range(sends[0], sends[0] + 10))  # one atomic call per batch
        assert [seq for _, (seq,) in result] == sends  # a and b move together here
        issued += sends
    assert sorted(issued) == list(range(1, 201))
