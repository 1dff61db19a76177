"""Group member ids: the SET ``group_members_id:{group_id}`` and its generation counter.

Each cached set holds an extra empty member (user ids are never empty), so an empty group is
cached as ``{""}`` and a missing key means "not cached".

A process that missed (``get`` returned None) loads the members from the database and then
``put``s them; another process may change the membership and ``invalidate`` in between.
``invalidate`` therefore also bumps ``group_members_gen:{group_id}``, and a ``put`` after a
miss only writes if the generation is still the one the miss saw: a stale member list is
never cached (a removed member must not keep receiving the group's messages).
"""

from __future__ import annotations

from collections import OrderedDict

from redis.asyncio import Redis

from sandcat.adapters.redis.client import redis_errors, text

_PRESENT = ""
#: Misses remembered per process (oldest forgotten first; a forgotten one puts unguarded).
_MAX_MISSES = 10000

# KEYS: set, generation; ARGV: expected generation ("" = any), ttl seconds, members...
_PUT = """
if ARGV[1] ~= '' and (redis.call('GET', KEYS[2]) or '0') ~= ARGV[1] then
  return 0
end
redis.call('DEL', KEYS[1])
for i = 3, #ARGV, 1000 do
  redis.call('SADD', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


def _keys(group_id: str) -> tuple[str, str]:
    return f"group_members_id:{group_id}", f"group_members_gen:{group_id}"


class RedisMembershipCache:
    """Implements ``MembershipCache``; entries also expire after ``ttl_seconds`` as a
    safety net."""

    def __init__(self, *, client: Redis, ttl_seconds: int = 86400) -> None:
        self._redis = client
        self._ttl = ttl_seconds
        self._put = client.register_script(_PUT)
        self._misses: OrderedDict[str, str] = OrderedDict()

    async def get(self, group_id: str) -> frozenset[str] | None:
        members_key, generation_key = _keys(group_id)
        with redis_errors("membership_get"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.smembers(members_key)
                pipe.get(generation_key)
                values, generation = await pipe.execute()
        if values:
            return frozenset(text(value) for value in values) - {_PRESENT}
        self._misses[group_id] = "0" if generation is None else text(generation)
        self._misses.move_to_end(group_id)
        if len(self._misses) > _MAX_MISSES:
            self._misses.popitem(last=False)
        return None

    async def put(self, group_id: str, members: frozenset[str]) -> None:
        expected = self._misses.pop(group_id, "")
        with redis_errors("membership_put"):
            await self._put(keys=_keys(group_id), args=[expected, self._ttl, _PRESENT, *members])

    async def invalidate(self, group_id: str) -> None:
        members_key, generation_key = _keys(group_id)
        with redis_errors("membership_invalidate"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(members_key)
                pipe.incr(generation_key)
                pipe.expire(generation_key, self._ttl)
                await pipe.execute()
