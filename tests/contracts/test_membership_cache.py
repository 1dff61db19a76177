"""``MembershipCache``: the in-process LRU (embedded) and the Redis SET behave alike; the
Redis epoch moves with a change's notice in the seq allocation and guards loads."""

from __future__ import annotations

import asyncio
import secrets
from typing import cast

import asyncpg
import pytest
from redis.asyncio import Redis

from sandcat.adapters.embedded.social import InProcessMembershipCache
from sandcat.adapters.postgres.segments import PostgresSegmentStore
from sandcat.adapters.redis.membership import RedisMembershipCache
from sandcat.adapters.redis.seqs import RedisSeqAllocator
from sandcat.config import LimitsConfig
from sandcat.domain import StaleMembership
from sandcat.ids import SystemClock
from sandcat.ports import Events, FriendStore, GroupStore, MembershipCache
from sandcat.services.groups import GroupService
from sandcat.services.messages import MessageRefused
from sandcat.services.notify import Notifier
from tests.client import until


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> MembershipCache:
    if request.param == "memory":
        return InProcessMembershipCache()
    client: Redis = request.getfixturevalue("redis_client")
    return RedisMembershipCache(client=client)


async def test_nothing_is_cached_at_first(cache: MembershipCache) -> None:
    assert await cache.get("g1") is None


async def test_members_are_read_back(cache: MembershipCache) -> None:
    assert await cache.put("g1", frozenset({"u1", "u2", "u3"})) == 0
    await cache.put("g2", frozenset({"u9"}))
    assert await cache.get("g1") == (frozenset({"u1", "u2", "u3"}), 0)
    assert await cache.get("g2") == (frozenset({"u9"}), 0)


async def test_an_empty_group_is_cached_as_empty_not_missing(cache: MembershipCache) -> None:
    await cache.put("g1", frozenset())
    assert await cache.get("g1") == (frozenset(), 0)


async def test_put_replaces_the_whole_set(cache: MembershipCache) -> None:
    await cache.put("g1", frozenset({"u1", "u2"}))
    await cache.put("g1", frozenset({"u3"}))
    assert await cache.get("g1") == (frozenset({"u3"}), 0)


async def test_a_large_group_is_cached_whole(cache: MembershipCache) -> None:
    members = frozenset(f"user-{i}" for i in range(20001))
    assert await cache.get("big") is None
    await cache.put("big", members)
    assert await cache.get("big") == (members, 0)


async def test_the_in_process_cache_forgets_an_invalidated_group() -> None:
    cache = InProcessMembershipCache()
    await cache.put("g1", frozenset({"u1"}))
    await cache.put("g2", frozenset({"u2"}))
    async with cache.changing("g1"):
        await cache.invalidate("g1")
    await cache.invalidate("never-cached")
    assert await cache.get("g1") is None
    assert await cache.get("g2") == (frozenset({"u2"}), 0)


async def test_redis_entries_expire_as_a_safety_net(redis_client: Redis) -> None:
    cache = RedisMembershipCache(client=redis_client, ttl_seconds=1)
    await cache.put("g1", frozenset({"u1"}))
    ttl = await redis_client.ttl("group_members_id:g1")
    assert 0 < ttl <= 1


# --- Redis: the epoch, moved by a change's notice in the allocation call ---------------


@pytest.fixture
async def seqs(redis_client: Redis, pg_pool: asyncpg.Pool) -> RedisSeqAllocator:
    await pg_pool.execute(
        "CREATE TABLE IF NOT EXISTS sequence (user_id VARCHAR PRIMARY KEY, "
        "rec_max_seq BIGINT NOT NULL DEFAULT 0, send_max_seq BIGINT NOT NULL DEFAULT 0)"
    )
    return RedisSeqAllocator(
        client=redis_client, segments=PostgresSegmentStore(pool=pg_pool), step=100
    )


def _uid(name: str) -> str:
    return f"{name}-{secrets.token_hex(4)}"  # the segment marks live in a shared table


async def test_a_notice_installs_its_members_and_moves_the_epoch(
    redis_client: Redis, seqs: RedisSeqAllocator
) -> None:
    cache = RedisMembershipCache(client=redis_client)
    a, b, x, y = (_uid(n) for n in "abxy")
    await seqs.allocate_many([(a, [b, x])], [("g", None, frozenset({a, b, x}))])
    assert await cache.get("g") == (frozenset({a, b, x}), 1)
    # a message read at epoch 1, and the removal of x: both in one batch, in that order
    got = await seqs.allocate_many(
        [(b, [a, x]), (a, [b, x])], [("g", 1, None), ("g", None, frozenset({a, b}))]
    )
    assert got == [(1, [1, 2]), (2, [2, 3])]
    assert await cache.get("g") == (frozenset({a, b}), 2)
    # a message still read at epoch 1 now allocates nothing (not even its other requests)
    with pytest.raises(StaleMembership) as stale:
        await seqs.allocate_many([(a, [y]), (b, [a, x])], [None, ("g", 1, None)])
    assert stale.value.indices == [1]
    assert await seqs.exposed(y) == (0, 0) and await seqs.exposed(a) == (0, 0)
    # after the install in the same batch, a message read at the old epoch is stale too
    with pytest.raises(StaleMembership) as stale:
        await seqs.allocate_many(
            [(a, [b, y]), (b, [a])], [("g", None, frozenset({a, b, y})), ("g", 2, None)]
        )
    assert stale.value.indices == [1]
    # dismissal: no set any more, the epoch moves on
    await seqs.allocate_many([(a, [b])], [("g", None, frozenset())])
    assert await cache.get("g") is None
    assert await redis_client.get("group_members_gen:g") == b"3"


async def test_a_load_is_not_cached_when_a_change_overtook_it_or_is_under_way(
    redis_client: Redis, seqs: RedisSeqAllocator
) -> None:
    loader, changer = (RedisMembershipCache(client=redis_client) for _ in range(2))
    assert await loader.get("g1") is None  # the loader reads the database: {u1, u2}
    await seqs.allocate_many([("u1", ["u2"])], [("g1", None, frozenset({"u1"}))])
    assert await loader.put("g1", frozenset({"u1", "u2"})) is None  # overtaken: dropped
    assert await changer.get("g1") == (frozenset({"u1"}), 1)
    # a change under way (its database write may be done, its notice not allocated yet)
    await redis_client.delete("group_members_id:g1")  # e.g. the set expired
    assert await loader.get("g1") is None
    async with changer.changing("g1"):
        assert await loader.put("g1", frozenset({"u1", "u3"})) is None
    assert await loader.get("g1") is None
    assert await loader.put("g1", frozenset({"u1", "u3"})) == 1  # the next load is current
    assert await changer.get("g1") == (frozenset({"u1", "u3"}), 1)


async def test_changes_of_one_group_take_turns_across_processes(redis_client: Redis) -> None:
    first, second = (RedisMembershipCache(client=redis_client) for _ in range(2))
    order: list[str] = []
    entered = asyncio.Event()

    async def change(cache: RedisMembershipCache, name: str, hold: asyncio.Event) -> None:
        async with cache.changing("g1"):
            order.append(f"{name} in")
            entered.set()
            await hold.wait()
            order.append(f"{name} out")

    release = asyncio.Event()
    one = asyncio.create_task(change(first, "first", release))
    await entered.wait()
    free = asyncio.Event()
    free.set()
    two = asyncio.create_task(change(second, "second", free))
    other_group = RedisMembershipCache(client=redis_client)
    async with other_group.changing("g2"):  # another group is not held up
        order.append("g2")
    release.set()
    await asyncio.gather(one, two)
    assert order == ["first in", "g2", "first out", "second in", "second out"]


class CountingGroups:
    """The one ``GroupStore`` read the message gate makes, counted."""

    def __init__(self, roles: dict[str, int]) -> None:
        self.roles = roles
        self.loads = 0

    async def member_roles(self, group_id: str) -> dict[str, int]:
        self.loads += 1
        return dict(self.roles)


async def test_a_load_during_a_change_elsewhere_waits_for_it_or_is_refused_in_the_pipeline(
    redis_client: Redis,
) -> None:
    """The gate's miss loads again (backing off) until the change elsewhere ends; read
    again from inside the accept pipeline (``again``) it refuses at once instead."""
    store = CountingGroups({"a": 0, "b": 2})
    gate = GroupService(
        groups=cast(GroupStore, store),
        friends=cast(FriendStore, None),
        cache=RedisMembershipCache(client=redis_client),
        notifier=cast(Notifier, None),
        clock=SystemClock(),
        limits=LimitsConfig(),
        events=cast(Events, None),
    )
    elsewhere = RedisMembershipCache(client=redis_client)
    async with elsewhere.changing("g"):
        with pytest.raises(MessageRefused, match="changing"):
            await gate.recipients("g", "a", again=True)
        assert store.loads == 1
        waiting = asyncio.create_task(gate.recipients("g", "a"))
        await until(lambda: store.loads >= 3, what="the gate loaded again")
        assert not waiting.done()
    assert await waiting == (["b"], 0)
    assert await gate.recipients("g", "a", again=True) == (["b"], 0)  # cached now
