"""Group member ids: the SET ``group_members_id:{group_id}``."""

from __future__ import annotations

from redis.asyncio import Redis

from sandcat.adapters.redis.client import redis_errors, text

#: Always in a cached set (user ids are never empty), so an empty group is cached as
#: ``{""}`` and a missing key means "not cached".
_PRESENT = ""


def _key(group_id: str) -> str:
    return f"group_members_id:{group_id}"


class RedisMembershipCache:
    """Implements ``MembershipCache``; entries also expire after ``ttl_seconds`` as a
    safety net for a missed invalidation."""

    def __init__(self, *, client: Redis, ttl_seconds: int = 86400) -> None:
        self._redis = client
        self._ttl = ttl_seconds

    async def get(self, group_id: str) -> frozenset[str] | None:
        with redis_errors("membership_get"):
            values = await self._redis.smembers(_key(group_id))
        if not values:
            return None
        return frozenset(text(value) for value in values) - {_PRESENT}

    async def put(self, group_id: str, members: frozenset[str]) -> None:
        key = _key(group_id)
        with redis_errors("membership_put"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(key)
                pipe.sadd(key, _PRESENT, *members)
                pipe.expire(key, self._ttl)
                await pipe.execute()

    async def invalidate(self, group_id: str) -> None:
        with redis_errors("membership_invalidate"):
            await self._redis.delete(_key(group_id))
