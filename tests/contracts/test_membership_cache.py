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


async def test_redis_entries_expire_as_a_safety_net(redis_client: Redis) -> None:
    cache = RedisMembershipCache(client=redis_client, ttl_seconds=1)
    await cache.put("g1", frozenset({"u1"}))
    ttl = await redis_client.ttl("group_members_id:g1")
    assert 0 < ttl <= 1
