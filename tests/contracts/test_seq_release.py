"""``SeqRelease`` on real Redis: a stored batch's seq release and its users' presence lookup
in one write and one wait, answering what ``mark_stored`` and ``locate`` answer."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from sandcat.adapters.postgres.segments import PostgresSegmentStore
from sandcat.adapters.redis.presence import CHUNK, RedisGatewayRegistry, RedisPresence
from sandcat.adapters.redis.release import RedisSeqRelease
from sandcat.adapters.redis.seqs import RedisSeqAllocator
from sandcat.errors import DbError
from tests.contracts.test_seq_allocator import _SEQUENCE_TABLE


@pytest.fixture
async def seqs(redis_client: Redis, pg_pool: asyncpg.Pool) -> RedisSeqAllocator:
    await pg_pool.execute(_SEQUENCE_TABLE)
    return RedisSeqAllocator(
        client=redis_client, segments=PostgresSegmentStore(pool=pg_pool), step=100
    )


@pytest.fixture
async def presence(redis_client: Redis) -> RedisPresence:
    registry = RedisGatewayRegistry(client=redis_client)
    for gateway in ("gw1", "gw2"):
        await registry.register(gateway, f"ws://{gateway}")
    return RedisPresence(client=redis_client)


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per write to Redis from this process (a pipeline is one write)."""
    sent: list[int] = []
    real = AbstractConnection.send_packed_command

    async def counted(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        sent.append(1)
        await real(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counted)
    return sent


async def test_release_is_mark_stored_then_locate_in_one_write(
    redis_client: Redis, seqs: RedisSeqAllocator, presence: RedisPresence, writes: list[int]
) -> None:
    await presence.connect("b", 0, "gw1")
    await presence.connect("b", 1, "gw2")
    await presence.connect("a", 2, "gw2")
    await presence.connect("c", 0, "gw3")  # a gateway that never registered
    for sender in ("x", "y"):
        await seqs.allocate(sender, ["b"])  # b: seqs 1, 2
    await seqs.allocate("a", ["b"])  # b: seq 3; a: send_seq 1
    release = RedisSeqRelease(client=redis_client)
    assert await release.release([]) == ({}, {})
    # the first call loads the scripts (NOSCRIPT, then the pipeline once more)
    assert await release.release([("b", 3, 0), ("a", 0, 1), ("c", 0, 0)]) == (
        {"b": (0, 0), "a": (0, 1), "c": (0, 0)},
        {"b": {0: "gw1", 1: "gw2"}, "a": {2: "gw2"}},
    )
    writes.clear()
    assert await release.release([("b", 1, 0), ("b", 2, 0)]) == (
        {"b": (3, 0)},
        {"b": {0: "gw1", 1: "gw2"}},
    )
    assert len(writes) == 1
    assert await seqs.exposed("b") == (3, 0)
    # after a flush (a restarted Redis) the scripts are loaded again
    await redis_client.script_flush()
    _, (seq,) = await seqs.allocate("a", ["b"])
    assert await release.release([("b", seq, 0)]) == ({"b": (4, 0)}, {"b": {0: "gw1", 1: "gw2"}})


async def test_a_large_batch_is_located_in_chunks_of_the_same_write(
    redis_client: Redis, seqs: RedisSeqAllocator, presence: RedisPresence, writes: list[int]
) -> None:
    members = [f"m{i}" for i in range(2 * CHUNK + 5)]
    await presence.refresh("gw1", [(member, 0) for member in members[::2]])
    await seqs.allocate("a", members)
    release = RedisSeqRelease(client=redis_client)
    await release.release([("a", 0, 1)])  # loads the scripts
    writes.clear()
    exposed, where = await release.release([(member, 1, 0) for member in members])
    assert len(writes) == 1
    assert exposed == {member: (1, 0) for member in members}
    assert where == await presence.locate(members)
    assert len(where) == CHUNK + 3


async def test_redis_errors_become_db_errors() -> None:
    client = Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    try:
        with pytest.raises(DbError):
            await RedisSeqRelease(client=client).release([("a", 1, 0)])
    finally:
        await client.aclose()
