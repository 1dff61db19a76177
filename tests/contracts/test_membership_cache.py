"""``MembershipCache``: the in-process LRU (embedded) and the Redis SET behave alike."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from sandcat.adapters.embedded.social import InProcessMembershipCache
from sandcat.adapters.redis.membership import RedisMembershipCache
from sandcat.ports import MembershipCache


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest) -> MembershipCache:
    if request.param == "memory":
        return InProcessMembershipCache()
    client: Redis = request.getfixturevalue("redis_client")
    return RedisMembershipCache(client=client)


async def test_nothing_is_cached_at_first(cache: MembershipCache) -> None:
    assert await cache.get("g1") is None


async def test_members_are_read_back(cache: MembershipCache) -> None:
    await cache.put("g1", frozenset({"u1", "u2", "u3"}))
    await cache.put("g2", frozenset({"u9"}))
    assert await cache.get("g1") == frozenset({"u1", "u2", "u3"})
    assert await cache.get("g2") == frozenset({"u9"})


async def test_an_empty_group_is_cached_as_empty_not_missing(cache: MembershipCache) -> None:
    await cache.put("g1", frozenset())
    assert await cache.get("g1") == frozenset()


async def test_put_replaces_the_whole_set(cache: MembershipCache) -> None:
    await cache.put("g1", frozenset({"u1", "u2"}))
    await cache.put("g1", frozenset({"u3"}))
    assert await cache.get("g1") == frozenset({"u3"})


async def test_invalidate_forgets_only_that_group(cache: MembershipCache) -> None:
    await cache.put("g1", frozenset({"u1"}))
    await cache.put("g2", frozenset({"u2"}))
    await cache.invalidate("g1")
    await cache.invalidate("never-cached")
    assert await cache.get("g1") is None
    assert await cache.get("g2") == frozenset({"u2"})


async def test_a_large_group_is_cached_whole(cache: MembershipCache) -> None:
    members = frozenset(f"user-{i}" for i in range(20001))
    assert await cache.get("big") is None
    await cache.put("big", members)
    assert await cache.get("big") == members


async def test_redis_entries_expire_as_a_safety_net(redis_client: Redis) -> None:
    cache = RedisMembershipCache(client=redis_client, ttl_seconds=1)
    await cache.put("g1", frozenset({"u1"}))
    ttl = await redis_client.ttl("group_members_id:g1")
    assert 0 < ttl <= 1


async def test_a_load_overtaken_by_a_change_elsewhere_is_not_cached(redis_client: Redis) -> None:
    loader, changer = (RedisMembershipCache(client=redis_client) for _ in range(2))
    assert await loader.get("g1") is None  # the loader reads the database: {u1, u2}
    await changer.invalidate("g1")  # another process removes u2 meanwhile
    await loader.put("g1", frozenset({"u1", "u2"}))
    assert await loader.get("g1") is None  # the stale list was dropped
    await loader.put("g1", frozenset({"u1"}))  # the next load is current
    assert await changer.get("g1") == frozenset({"u1"})
    # a load that nothing overtook is cached (also after earlier invalidations)
    await changer.invalidate("g2")
    assert await loader.get("g2") is None
    await loader.put("g2", frozenset({"u3"}))
    assert await changer.get("g2") == frozenset({"u3"})
