"""Group members in Redis: the SET ``group_members_id:{group_id}``, its membership epoch
``group_members_gen:{group_id}`` and the change lock ``group_change:{group_id}``.

The epoch orders membership changes against group messages across processes (the whole
rule is in docs/message-flow.md, "Membership windows"):

- a change holds the group's change lock (``changing``) from its permission check until its
  notice is durable, so changes of one group never overlap, whichever api process makes them;
- the change's notice carries the new member set; the Lua call that allocates the notice's
  seqs (``RedisSeqAllocator.allocate_many``) replaces the SET and increments the epoch in
  the same atomic step (``install_members_lua``);
- a group message carries the epoch its receivers were read at (``get``); its allocation,
  in the same kind of Lua call, allocates nothing if the epoch has moved.

Each cached set holds an extra empty member (user ids are never empty), so an empty group is
cached as ``{""}`` and a missing key means "not cached". A process that missed loads the
members from the database and ``put``s them; the put writes only if the epoch is still the
one the miss saw and no change holds the lock (the database may already hold a change whose
notice is not allocated yet): a stale or premature member list is never cached.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.asyncio import Redis
from redis.exceptions import LockError

from sandcat.adapters.redis.client import redis_errors, text
from sandcat.errors import DbError

_PRESENT = ""
#: Misses remembered per process (oldest forgotten first; a forgotten one puts unguarded).
_MAX_MISSES = 10000
#: Sets and epochs expire as a safety net; every install renews them.
MEMBERS_TTL_SECONDS = 86400
#: A change holds its group's lock at most this long (a crashed holder's lock then lapses).
CHANGE_LOCK_SECONDS = 30.0
#: Lua's unpack has a stack limit: members go into SADD in chunks.
_CHUNK = 1000

# KEYS: set, epoch, change lock; ARGV: expected epoch ("" = any), ttl seconds, members...
# Reply: the epoch the set was cached at, or -1 when it was not cached.
_PUT = f"""
local epoch = redis.call('GET', KEYS[2]) or '0'
if redis.call('EXISTS', KEYS[3]) == 1 or (ARGV[1] ~= '' and epoch ~= ARGV[1]) then
  return -1
end
redis.call('DEL', KEYS[1])
for i = 3, #ARGV, {_CHUNK} do
  redis.call('SADD', KEYS[1], unpack(ARGV, i, math.min(i + {_CHUNK - 1}, #ARGV)))
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return tonumber(epoch)
"""

#: The Lua fragment of an install, for the allocation script: ``set_key`` and ``epoch_key``
#: name the group's keys, ``members`` is a Lua table of member ids (empty: dismissed).
INSTALL_MEMBERS_LUA = f"""
local function install_members(set_key, epoch_key, members, ttl)
  redis.call('INCR', epoch_key)
  redis.call('EXPIRE', epoch_key, ttl)
  redis.call('DEL', set_key)
  if #members == 0 then
    return
  end
  redis.call('SADD', set_key, '{_PRESENT}')
  for i = 1, #members, {_CHUNK} do
    redis.call('SADD', set_key, unpack(members, i, math.min(i + {_CHUNK - 1}, #members)))
  end
  redis.call('EXPIRE', set_key, ttl)
end
"""


def group_keys(group_id: str) -> tuple[str, str]:
    """The group's member SET and its epoch counter."""
    return f"group_members_id:{group_id}", f"group_members_gen:{group_id}"


def _lock_key(group_id: str) -> str:
    return f"group_change:{group_id}"


class RedisMembershipCache:
    """Implements ``MembershipCache`` with a shared epoch and change lock."""

    def __init__(self, *, client: Redis, ttl_seconds: int = MEMBERS_TTL_SECONDS) -> None:
        self._redis = client
        self._ttl = ttl_seconds
        self._put = client.register_script(_PUT)
        self._misses: OrderedDict[str, str] = OrderedDict()

    async def get(self, group_id: str) -> tuple[frozenset[str], int] | None:
        members_key, epoch_key = group_keys(group_id)
        with redis_errors("membership_get"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.smembers(members_key)
                pipe.get(epoch_key)
                values, epoch = await pipe.execute()
        current = 0 if epoch is None else int(epoch)
        if values:
            return frozenset(text(value) for value in values) - {_PRESENT}, current
        self._misses[group_id] = str(current)
        self._misses.move_to_end(group_id)
        if len(self._misses) > _MAX_MISSES:
            self._misses.popitem(last=False)
        return None

    async def put(self, group_id: str, members: frozenset[str]) -> int | None:
        expected = self._misses.pop(group_id, "")
        with redis_errors("membership_put"):
            epoch: int = await self._put(
                keys=[*group_keys(group_id), _lock_key(group_id)],
                args=[expected, self._ttl, _PRESENT, *members],
            )
        return None if epoch < 0 else epoch

    async def invalidate(self, group_id: str) -> None:
        """Nothing to drop: the change's notice replaces the set and moves the epoch in the
        call that allocates its seqs. Until then group messages keep the old set, which is
        right: they are ordered before the notice."""

    @asynccontextmanager
    async def changing(self, group_id: str) -> AsyncIterator[None]:
        lock = self._redis.lock(
            _lock_key(group_id),
            timeout=CHANGE_LOCK_SECONDS,
            sleep=0.01,
            blocking_timeout=CHANGE_LOCK_SECONDS,
            thread_local=False,
        )
        with redis_errors("membership_lock"):
            acquired = await lock.acquire()
        if not acquired:
            raise DbError("the group is busy; try again")
        try:
            yield
        finally:
            # A lock held past CHANGE_LOCK_SECONDS has lapsed: nothing to free.
            with redis_errors("membership_unlock"), contextlib.suppress(LockError):
                await lock.release()
