"""Sequence counters in Redis, backed by durable segment marks (docs/distributed.md).

Keys per user (the original's counters plus the pending sets):

- ``seq:{uid}`` / ``send_seq:{uid}``: hash ``{cur_seq, max_seq}``, the receive / send counter;
- ``pending:seq:{uid}`` / ``pending:send:{uid}``: ZSET of allocated seqs not yet in the inbox
  (member and score are the seq).

One Lua call serves a whole batch of allocations (``allocate_many``): each counter is raised
once by what the batch needs and its seqs go to the batch's requests in their order, so a
batch is allocated exactly as its requests one after the other would be. The same call
checks the membership epoch of the batch's group messages and installs the member sets of
its membership-change notices (``sandcat.adapters.redis.membership``): a group's messages
and changes are ordered by their allocations.

Segments: ``max_seq`` is never above the user's durable mark (``SegmentStore``). When an
allocation does not fit below ``max_seq`` the script allocates nothing and names the counters
that need a new segment; Python raises the durable mark, installs it as the new ``max_seq``
and retries. A counter missing from Redis (new user, or Redis lost its data) is installed as
``cur = max = old mark`` first, so every new seq is above every seq ever issued.

Exposure: a counter's exposed value is ``min(pending) - 1``, or ``cur_seq`` when nothing is
pending. A seq that was allocated but will never be stored (e.g. the publish failed) must be
passed to ``mark_stored`` too, or the watermark stays below it. Redis must not evict keys
(``maxmemory-policy noeviction``). Losing Redis loses the pending sets with the counters:
seqs allocated before the loss and stored after it are not held back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from redis.asyncio import Redis

from sandcat.adapters.redis.client import redis_errors
from sandcat.adapters.redis.membership import (
    INSTALL_MEMBERS_LUA,
    MEMBERS_TTL_SECONDS,
    group_keys,
)
from sandcat.domain import GroupStamp, StaleMembership
from sandcat.ports import SegmentStore
from sandcat.util.tasks import run_all

#: Segment kinds as ``SegmentStore`` names them.
REC = "rec"
SEND = "send"

# KEYS: (hash, pending) per counter, then (member set, epoch) per group, then the global
# "pending since" ZSET. ARGV: n counters, g groups, the member sets' ttl, how many seqs each
# counter needs, then the group operations in request order: (request index, group index,
# 'c', epoch) checks that the group is at that epoch, (request index, group index, 'i',
# k, k members) installs the members and moves the epoch on.
# Reply {1, first seq of each counter}, {0, index, max_seq seen (-1: missing), ...} (new
# segments needed, nothing done) or {2, request index, ...} (stale checks, nothing done).
# The pending members go in with one ZADD per counter and one for "pending since" (in
# chunks of ``chunk`` members: Lua's unpack has a stack limit).
_ALLOCATE = (
    INSTALL_MEMBERS_LUA
    + """
local n = tonumber(ARGV[1])
local since = KEYS[#KEYS]
local chunk = 2000
local epochs = {}
local stale = {2}
local a = n + 4
while a <= #ARGV do
  local gi = tonumber(ARGV[a + 1])
  if epochs[gi] == nil then
    epochs[gi] = tonumber(redis.call('GET', KEYS[2 * n + 2 * gi]) or '0')
  end
  if ARGV[a + 2] == 'c' then
    if tonumber(ARGV[a + 3]) ~= epochs[gi] then
      stale[#stale + 1] = tonumber(ARGV[a])
    end
    a = a + 4
  else
    epochs[gi] = epochs[gi] + 1
    a = a + 4 + tonumber(ARGV[a + 3])
  end
end
if #stale > 1 then
  return stale
end
local need = {0}
for i = 1, n do
  local state = redis.call('HMGET', KEYS[2 * i - 1], 'cur_seq', 'max_seq')
  if not state[2] then
    need[#need + 1] = i
    need[#need + 1] = -1
  elseif tonumber(state[1] or 0) + tonumber(ARGV[i + 3]) > tonumber(state[2]) then
    need[#need + 1] = i
    need[#need + 1] = tonumber(state[2])
  end
end
if #need > 1 then
  return need
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {1}
local stamps = {}
for i = 1, n do
  local count = tonumber(ARGV[i + 3])
  local pending = KEYS[2 * i]
  local last = redis.call('HINCRBY', KEYS[2 * i - 1], 'cur_seq', count)
  local members = {}
  for seq = last - count + 1, last do
    members[#members + 1] = seq
    members[#members + 1] = seq
    stamps[#stamps + 1] = now
    stamps[#stamps + 1] = pending .. '|' .. seq
    if #members >= chunk then
      redis.call('ZADD', pending, unpack(members))
      members = {}
    end
    if #stamps >= chunk then
      redis.call('ZADD', since, unpack(stamps))
      stamps = {}
    end
  end
  if #members > 0 then
    redis.call('ZADD', pending, unpack(members))
  end
  out[#out + 1] = last - count + 1
end
if #stamps > 0 then
  redis.call('ZADD', since, unpack(stamps))
end
a = n + 4
while a <= #ARGV do
  if ARGV[a + 2] == 'c' then
    a = a + 4
  else
    local gi = tonumber(ARGV[a + 1])
    local k = tonumber(ARGV[a + 3])
    local members = {}
    for j = a + 4, a + 3 + k do
      members[#members + 1] = ARGV[j]
    end
    install_members(KEYS[2 * n + 2 * gi - 1], KEYS[2 * n + 2 * gi], members, ARGV[3])
    a = a + 4 + k
  end
end
return out
"""
)

# KEYS: hashes; ARGV: the step, then each hash's new durable mark. Only ever raises max_seq;
# a missing hash (new user, lost Redis) starts at its previous mark.
_INSTALL = """
local step = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  local mark = tonumber(ARGV[i + 1])
  local max = redis.call('HGET', key, 'max_seq')
  if not max then
    redis.call('HSET', key, 'cur_seq', mark - step, 'max_seq', mark)
  elseif tonumber(max) < mark then
    redis.call('HSET', key, 'max_seq', mark)
  elseif tonumber(max) == mark and tonumber(redis.call('HGET', key, 'cur_seq')) == mark then
    -- seeded at this very mark (``_SEED`` read it between the raise and now): nothing of
    -- the new segment was handed out, so it starts where a missing hash would
    redis.call('HSET', key, 'cur_seq', mark - step)
  end
end
return 1
"""

# KEYS: (seq hash, seq pending, send hash, send pending) per user, then the "pending since"
# ZSET; ARGV per user: n, n stored seqs, m, m stored send_seqs (``mark_stored_call``).
# Reply: exposed (seq, send_seq) per user; -1 for a counter missing from Redis.
MARK_STORED_LUA = """
local since = KEYS[#KEYS]
local function exposed(hash, pending)
  local first = redis.call('ZRANGE', pending, 0, 0)
  if first[1] then
    return tonumber(first[1]) - 1
  end
  local cur = redis.call('HGET', hash, 'cur_seq')
  if not cur then
    return -1
  end
  return tonumber(cur)
end
local out = {}
local a = 1
for base = 0, #KEYS - 5, 4 do
  for kind = 0, 1 do
    local n = tonumber(ARGV[a])
    for j = a + 1, a + n do
      redis.call('ZREM', KEYS[base + 2 * kind + 2], ARGV[j])
      redis.call('ZREM', since, KEYS[base + 2 * kind + 2] .. '|' .. ARGV[j])
    end
    a = a + n + 1
  end
  out[#out + 1] = exposed(KEYS[base + 1], KEYS[base + 2])
  out[#out + 1] = exposed(KEYS[base + 3], KEYS[base + 4])
end
return out
"""


# KEYS: hashes; ARGV: each one's durable mark. A missing hash (a counter never used, or Redis
# lost its data) is installed at its mark, ``cur = max = mark``: no seq above the mark was
# ever issued, and the next allocation raises a new segment.
_SEED = """
for i, key in ipairs(KEYS) do
  if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'cur_seq', ARGV[i], 'max_seq', ARGV[i])
  end
end
return 1
"""


# KEYS: the "pending since" ZSET; ARGV: cutoff (ms), limit. Releases (as if stored) the
# pending seqs allocated before the cutoff; returns how many.
_RELEASE_STALE = """
local stale = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, member in ipairs(stale) do
  local bar = string.find(member, '|', 1, true)
  redis.call('ZREM', string.sub(member, 1, bar - 1), string.sub(member, bar + 1))
  redis.call('ZREM', KEYS[1], member)
end
return #stale
"""

#: Every pending seq with its allocation time, for releasing abandoned allocations.
PENDING_SINCE = "pending:since"


def _counter_keys(user_id: str, kind: str) -> tuple[str, str]:
    if kind == SEND:
        return f"send_seq:{user_id}", f"pending:send:{user_id}"
    return f"seq:{user_id}", f"pending:seq:{user_id}"


#: user -> (stored seqs, stored send_seqs), as ``MARK_STORED_LUA`` takes them.
StoredSeqs = dict[str, tuple[list[int], list[int]]]


def stored_by_user(items: Sequence[tuple[str, int, int]]) -> StoredSeqs:
    """``mark_stored``'s ``(user, seq, send_seq)`` items per user (0: none of that kind)."""
    stored: StoredSeqs = {}
    for user_id, seq, send_seq in items:
        seqs, send_seqs = stored.setdefault(user_id, ([], []))
        if seq:
            seqs.append(seq)
        if send_seq:
            send_seqs.append(send_seq)
    return stored


def mark_stored_call(stored: StoredSeqs) -> tuple[list[str], list[int]]:
    """The keys and arguments of ``MARK_STORED_LUA`` for ``stored``."""
    keys: list[str] = []
    args: list[int] = []
    for user_id, (seqs, send_seqs) in stored.items():
        keys += (*_counter_keys(user_id, REC), *_counter_keys(user_id, SEND))
        args += (len(seqs), *seqs, len(send_seqs), *send_seqs)
    keys.append(PENDING_SINCE)
    return keys, args


def exposed_marks(stored: StoredSeqs, reply: Sequence[int]) -> dict[str, tuple[int, int]]:
    """``MARK_STORED_LUA``'s reply as each user's exposed ``(seq, send_seq)``; a counter
    missing from Redis reads 0."""
    return {
        user_id: (max(reply[2 * i], 0), max(reply[2 * i + 1], 0))
        for i, user_id in enumerate(stored)
    }


class RedisSeqAllocator:
    """Implements ``SeqAllocator`` (one Lua call per allocation or batch of them;
    ``step`` = ``redis.seq_step``)."""

    def __init__(self, *, client: Redis, segments: SegmentStore, step: int) -> None:
        if step < 1:
            raise ValueError("the segment step must be positive")
        self._redis = client
        self._segments = segments
        self._step = step
        self._allocate = client.register_script(_ALLOCATE)
        self._install = client.register_script(_INSTALL)
        self._mark_stored = client.register_script(MARK_STORED_LUA)
        self._seed = client.register_script(_SEED)
        self._release_stale = client.register_script(_RELEASE_STALE)
        #: One segment raise at a time per counter in this process; others wait for it.
        self._raising: dict[tuple[str, str], asyncio.Future[None]] = {}

    async def allocate(self, sender: str | None, receivers: Sequence[str]) -> tuple[int, list[int]]:
        return (await self.allocate_many([(sender, receivers)]))[0]

    async def allocate_many(
        self,
        requests: Sequence[tuple[str | None, Sequence[str]]],
        groups: Sequence[GroupStamp | None] = (),
    ) -> list[tuple[int, list[int]]]:
        """Every request's seqs in one Lua call: each counter is raised once by what the
        whole batch needs, and its seqs are handed out to the requests in their order.
        The same call checks the group epochs of ``groups`` and installs their new member
        sets (see ``sandcat.adapters.redis.membership``)."""
        slots: dict[tuple[str, str], int] = {}
        counters: list[tuple[str, str]] = []
        counts: list[int] = []

        def count(user_id: str, kind: str) -> None:
            index = slots.get((user_id, kind))
            if index is None:
                slots[(user_id, kind)] = len(counters)
                counters.append((user_id, kind))
                counts.append(1)
            else:
                counts[index] += 1

        for sender, receivers in requests:
            if sender is not None:
                count(sender, SEND)
            for receiver in receivers:
                count(receiver, REC)
        group_slots: dict[str, int] = {}
        operations: list[str | int] = []
        for index, stamp in enumerate(groups):
            if stamp is None:
                continue
            group_id, epoch, members = stamp
            slot = group_slots.setdefault(group_id, len(group_slots) + 1)
            if epoch is not None:
                operations += (index, slot, "c", epoch)
            if members is not None:
                operations += (index, slot, "i", len(members), *members)
        if not counters and not operations:
            return [(0, []) for _ in requests]
        keys = [key for user_id, kind in counters for key in _counter_keys(user_id, kind)]
        keys += (key for group_id in group_slots for key in group_keys(group_id))
        keys.append(PENDING_SINCE)
        args = [len(counters), len(group_slots), MEMBERS_TTL_SECONDS, *counts, *operations]
        while True:
            with redis_errors("allocate"):
                reply: list[int] = await self._allocate(keys=keys, args=args)
            if reply[0] == 1:
                break
            if reply[0] == 2:
                raise StaleMembership(sorted(set(reply[1:])))
            needs = reply[1:]
            await self._new_segments(
                [(*counters[needs[i] - 1], needs[i + 1]) for i in range(0, len(needs), 2)]
            )
        following = reply[1:]  # per counter, the next seq to hand out
        out: list[tuple[int, list[int]]] = []
        for sender, receivers in requests:
            send_seq = 0
            if sender is not None:
                index = slots[(sender, SEND)]
                send_seq = following[index]
                following[index] += 1
            seqs: list[int] = []
            for receiver in receivers:
                index = slots[(receiver, REC)]
                seqs.append(following[index])
                following[index] += 1
            out.append((send_seq, seqs))
        return out

    async def _new_segments(self, needs: list[tuple[str, str, int]]) -> None:
        """Get the counters ``(user, kind, max_seq seen)`` new segments.

        In this process one raise at a time per counter: a counter already being raised
        is waited for, not raised again.
        """
        loop = asyncio.get_running_loop()
        mine: list[tuple[str, str, int]] = []
        others: list[asyncio.Future[None]] = []
        for user_id, kind, seen in needs:
            running = self._raising.get((user_id, kind))
            if running is None:
                self._raising[(user_id, kind)] = loop.create_future()
                mine.append((user_id, kind, seen))
            else:
                others.append(running)
        try:
            if mine:
                await self._raise_marks(mine)
        finally:
            for user_id, kind, _ in mine:
                self._raising.pop((user_id, kind)).set_result(None)
        for running in others:
            await asyncio.shield(running)

    async def _raise_marks(self, needs: list[tuple[str, str, int]]) -> None:
        """Durably raise the marks, then let Redis use them; skip a counter whose
        ``max_seq`` moved since the allocation saw it (another process raised it)."""
        hashes = [_counter_keys(user_id, kind)[0] for user_id, kind, _ in needs]
        with redis_errors("new_segment"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in hashes:
                    pipe.hget(key, "max_seq")
                current: list[bytes | None] = await pipe.execute()
        todo = [
            (user_id, kind, key)
            for (user_id, kind, seen), key, now in zip(needs, hashes, current, strict=True)
            if now is None or int(now) <= seen
        ]
        if not todo:
            return
        marks = await run_all(
            self._segments.raise_mark(user_id, kind, self._step) for user_id, kind, _ in todo
        )
        with redis_errors("new_segment"):
            await self._install(keys=[key for _, _, key in todo], args=[self._step, *marks])

    async def mark_stored(
        self, items: Sequence[tuple[str, int, int]]
    ) -> dict[str, tuple[int, int]]:
        return await self._run_mark_stored(stored_by_user(items))

    async def exposed(self, user_id: str) -> tuple[int, int]:
        """The watermarks a client reads (``GET /message/seq``, the clamp of a pull). A
        counter missing from Redis exposes its durable mark: after a Redis loss every seq
        issued before it is at most the mark (without this the watermark read 0 and pulls
        were clamped to nothing until the user's next message)."""
        return (await self._run_mark_stored({user_id: ([], [])}, seed=True))[user_id]

    async def _run_mark_stored(
        self, stored: StoredSeqs, seed: bool = False
    ) -> dict[str, tuple[int, int]]:
        """Release ``stored`` and read the watermarks (one Lua call). A missing counter
        reads 0, or with ``seed`` its durable mark (see ``exposed``)."""
        if not stored:
            return {}
        keys, args = mark_stored_call(stored)
        with redis_errors("mark_stored"):
            reply: list[int] = await self._mark_stored(keys=keys, args=args)
        if not seed:
            return exposed_marks(stored, reply)
        exposed = {user_id: (reply[2 * i], reply[2 * i + 1]) for i, user_id in enumerate(stored)}
        missing = [user_id for user_id, pair in exposed.items() if -1 in pair]
        if missing:
            exposed.update(await self._seed_missing(missing, exposed))
        return exposed

    async def _seed_missing(
        self, user_ids: list[str], exposed: dict[str, tuple[int, int]]
    ) -> dict[str, tuple[int, int]]:
        """The durable marks of the missing counters, installed in Redis (``_SEED``) so
        the store is asked once per counter."""
        marks = await asyncio.gather(*(self._segments.marks(user_id) for user_id in user_ids))
        keys: list[str] = []
        values: list[int] = []
        out: dict[str, tuple[int, int]] = {}
        for user_id, (rec_mark, send_mark) in zip(user_ids, marks, strict=True):
            seq, send_seq = exposed[user_id]
            if seq == -1:
                keys.append(_counter_keys(user_id, REC)[0])
                values.append(rec_mark)
                seq = rec_mark
            if send_seq == -1:
                keys.append(_counter_keys(user_id, SEND)[0])
                values.append(send_mark)
                send_seq = send_mark
            out[user_id] = (seq, send_seq)
        with redis_errors("seed"):
            await self._seed(keys=keys, args=values)
        return out

    async def release_stale(self, older_than_ms: int, limit: int = 10_000) -> int:
        """Release seqs allocated more than ``older_than_ms`` ago and never stored (their
        accepting process died between allocating and publishing): the watermark moves
        past them, leaving a gap the client pulls over, instead of stalling forever."""
        with redis_errors("release_stale"):
            now_s, now_us = await self._redis.time()
            cutoff = now_s * 1000 + now_us // 1000 - older_than_ms
            released: int = await self._release_stale(keys=[PENDING_SINCE], args=[cutoff, limit])
        return released
