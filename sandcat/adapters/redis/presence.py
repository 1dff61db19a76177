"""Presence, the gateway registry and the push bus in Redis.

Keys:

- ``gateways``: ZSET gateway id -> lease expiry (ms, Redis server clock, so the processes'
  clocks do not matter); ``gateway_addrs``: HASH gateway id -> public ``ws_addr``;
  ``gateway_rr``: the shared round-robin counter. Expired leases are pruned on every
  ``register`` (heartbeat).
- ``presence:{user_id}``: HASH platform -> gateway id, expiring ``ttl`` after the last
  connect or heartbeat of any of its gateways. ``locate`` drops entries whose gateway's lease
  has expired, so a crashed gateway's users stop being routed to it at once.
- ``push:{gateway_id}``: LIST of batches. A list, not pub/sub: a batch published while the
  gateway's listener is between two reads or reconnecting waits for it, where pub/sub would
  drop it. The list expires ``backlog_ttl`` after the last publish, so the backlog of a dead
  gateway disappears.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.connection import AbstractConnection

from sandcat.adapters.redis.client import redis_errors, text
from sandcat.errors import DbError
from sandcat.ports import Located

GATEWAYS = "gateways"
GATEWAY_ADDRS = "gateway_addrs"
GATEWAY_RR = "gateway_rr"
#: Keys per script call for presence (keeps each call short for Redis's single thread).
CHUNK = 1000
#: Batches a listener takes at most in one blocking pop.
DRAIN = 100

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

# KEYS: gateways, gateway_addrs; ARGV: id, ws_addr, ttl ms.
_REGISTER = (
    _NOW
    + """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
return 1
"""
)

# KEYS: gateways, gateway_addrs. Reply: id, ws_addr, id, ws_addr, ...
_LIVE = (
    _NOW
    + """
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')) do
  local addr = redis.call('HGET', KEYS[2], id)
  if addr then
    out[#out + 1] = id
    out[#out + 1] = addr
  end
end
return out
"""
)

# KEYS: gateways, gateway_addrs, gateway_rr. Reply: the next live ws_addr (ids in order).
_NEXT = (
    _NOW
    + """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
if #ids == 0 then
  return false
end
table.sort(ids)
local n = redis.call('INCR', KEYS[3])
return redis.call('HGET', KEYS[2], ids[(n - 1) % #ids + 1])
"""
)

# KEYS[1]: presence hash; ARGV: platform, gateway id, ttl ms. Reply: the previous other holder.
_CONNECT = """
local old = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if old == ARGV[2] then
  return false
end
return old
"""

# KEYS[1]: presence hash; ARGV: platform, gateway id.
_DISCONNECT = """
if redis.call('HGET', KEYS[1], ARGV[1]) == ARGV[2] then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
"""

# KEYS: presence hashes; ARGV: gateway id, ttl ms, then one platform per key.
_REFRESH = """
for i, key in ipairs(KEYS) do
  local holder = redis.call('HGET', key, ARGV[i + 2])
  if not holder or holder == ARGV[1] then
    redis.call('HSET', key, ARGV[i + 2], ARGV[1])
    redis.call('PEXPIRE', key, ARGV[2])
  end
end
return 1
"""

# KEYS: gateways, then presence hashes (``locate_keys``). Reply per hash: platform, gateway,
# ... (live only).
LOCATE_LUA = (
    _NOW
    + """
local live = {}
local out = {}
for i = 2, #KEYS do
  local found = {}
  local fields = redis.call('HGETALL', KEYS[i])
  for j = 1, #fields, 2 do
    local gateway = fields[j + 1]
    if live[gateway] == nil then
      local lease = redis.call('ZSCORE', KEYS[1], gateway)
      live[gateway] = lease ~= false and tonumber(lease) > now
    end
    if live[gateway] then
      found[#found + 1] = fields[j]
      found[#found + 1] = gateway
    end
  end
  out[#out + 1] = found
end
return out
"""
)


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


def _presence_key(user_id: str) -> str:
    return f"presence:{user_id}"


def _push_key(gateway_id: str) -> str:
    return f"push:{gateway_id}"


def locate_chunks(user_ids: Sequence[str]) -> list[Sequence[str]]:
    """``user_ids`` in chunks of at most ``CHUNK``: one ``LOCATE_LUA`` call each."""
    return [user_ids[start : start + CHUNK] for start in range(0, len(user_ids), CHUNK)]


def locate_keys(chunk: Sequence[str]) -> list[str]:
    """The keys of ``LOCATE_LUA`` for ``chunk``."""
    return [GATEWAYS, *(_presence_key(user_id) for user_id in chunk)]


def add_located(found: Located, chunk: Sequence[str], reply: Sequence[Sequence[bytes]]) -> None:
    """Add ``LOCATE_LUA``'s reply for ``chunk`` to ``found`` (offline users left out)."""
    for user_id, fields in zip(chunk, reply, strict=True):
        if fields:
            found[user_id] = {int(fields[i]): text(fields[i + 1]) for i in range(0, len(fields), 2)}


class RedisGatewayRegistry:
    """Implements ``GatewayRegistry``: leases of ``ttl_seconds`` renewed by ``register``."""

    def __init__(self, *, client: Redis, ttl_seconds: float = 15.0) -> None:
        self._redis = client
        self._ttl_ms = _ms(ttl_seconds)
        self._register = client.register_script(_REGISTER)
        self._live = client.register_script(_LIVE)
        self._next = client.register_script(_NEXT)

    async def register(self, gateway_id: str, ws_addr: str) -> None:
        with redis_errors("gateway_register"):
            await self._register(
                keys=[GATEWAYS, GATEWAY_ADDRS], args=[gateway_id, ws_addr, self._ttl_ms]
            )

    async def unregister(self, gateway_id: str) -> None:
        with redis_errors("gateway_unregister"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(GATEWAYS, gateway_id)
                pipe.hdel(GATEWAY_ADDRS, gateway_id)
                await pipe.execute()

    async def live(self) -> dict[str, str]:
        with redis_errors("gateway_live"):
            reply: list[bytes] = await self._live(keys=[GATEWAYS, GATEWAY_ADDRS])
        return {text(reply[i]): text(reply[i + 1]) for i in range(0, len(reply), 2)}

    async def next_ws_addr(self) -> str | None:
        with redis_errors("gateway_next"):
            addr: bytes | None = await self._next(keys=[GATEWAYS, GATEWAY_ADDRS, GATEWAY_RR])
        return None if addr is None else text(addr)


class RedisPresence:
    """Implements ``Presence``; an entry lives ``ttl_seconds`` after its last refresh."""

    def __init__(self, *, client: Redis, ttl_seconds: float = 60.0) -> None:
        self._ttl_ms = _ms(ttl_seconds)
        self._connect = client.register_script(_CONNECT)
        self._disconnect = client.register_script(_DISCONNECT)
        self._refresh = client.register_script(_REFRESH)
        self._locate = client.register_script(LOCATE_LUA)

    async def connect(self, user_id: str, platform: int, gateway_id: str) -> str | None:
        with redis_errors("presence_connect"):
            old: bytes | None = await self._connect(
                keys=[_presence_key(user_id)], args=[platform, gateway_id, self._ttl_ms]
            )
        return None if old is None else text(old)

    async def disconnect(self, user_id: str, platform: int, gateway_id: str) -> None:
        with redis_errors("presence_disconnect"):
            await self._disconnect(keys=[_presence_key(user_id)], args=[platform, gateway_id])

    async def refresh(self, gateway_id: str, connections: Iterable[tuple[str, int]]) -> None:
        connections = list(connections)
        for start in range(0, len(connections), CHUNK):
            chunk = connections[start : start + CHUNK]
            with redis_errors("presence_refresh"):
                await self._refresh(
                    keys=[_presence_key(user_id) for user_id, _ in chunk],
                    args=[gateway_id, self._ttl_ms, *(platform for _, platform in chunk)],
                )

    async def locate(self, user_ids: Sequence[str]) -> Located:
        found: Located = {}
        for chunk in locate_chunks(user_ids):
            with redis_errors("presence_locate"):
                reply: list[list[bytes]] = await self._locate(keys=locate_keys(chunk))
            add_located(found, chunk, reply)
        return found


class RedisPushBus:
    """Implements ``PushBus`` with one LIST per gateway (see the module docstring).

    A listener opens a connection of its own (outside the client's pool) and pops with
    ``BLMPOP`` for ``block_seconds`` at a time; a reply that takes ``read_grace_seconds``
    longer means a dead connection and ends the iteration with ``DbError`` (the caller
    subscribes again).

    That connection has no socket timeout: the deadline of each pop bounds its writes and
    reads instead. redis-py writes on a connection that has one through ``asyncio.wait_for``,
    which on Python 3.11 swallows a cancellation landing just after the write completed: the
    cancelled listener then went on popping forever (and a gateway's shutdown with it).
    """

    def __init__(
        self,
        *,
        client: Redis,
        backlog_ttl_seconds: float = 60.0,
        block_seconds: float = 2.0,
        read_grace_seconds: float = 5.0,
    ) -> None:
        self._redis = client
        self._backlog_ttl_ms = _ms(backlog_ttl_seconds)
        self._block = block_seconds
        self._deadline = block_seconds + read_grace_seconds

    async def publish(self, batches: Mapping[str, bytes]) -> None:
        if not batches:
            return
        with redis_errors("push_publish"):
            async with self._redis.pipeline(transaction=False) as pipe:
                for gateway_id, batch in batches.items():
                    pipe.rpush(_push_key(gateway_id), batch)
                    pipe.pexpire(_push_key(gateway_id), self._backlog_ttl_ms)
                await pipe.execute()

    async def subscribe(self, gateway_id: str) -> AsyncGenerator[bytes, None]:
        key = _push_key(gateway_id)
        pool = self._redis.connection_pool
        conn = pool.connection_class(**{**pool.connection_kwargs, "socket_timeout": None})
        try:
            while True:
                for batch in await self._pop(conn, key):
                    yield batch
        finally:
            await conn.disconnect()

    async def _pop(self, conn: AbstractConnection, key: str) -> list[bytes]:
        """The next batches (up to ``DRAIN``), or none after ``block_seconds``."""
        try:
            with redis_errors("push_subscribe"):
                async with asyncio.timeout(self._deadline):
                    # One round trip: block until the list has a batch, then take up to
                    # DRAIN of them (BLMPOP, Redis 7.0); connects if need be.
                    await conn.send_command("BLMPOP", self._block, 1, key, "LEFT", "COUNT", DRAIN)
                    popped: list[Any] | None = await conn.read_response()
        except TimeoutError as exc:  # read_response dropped the connection on cancellation
            raise DbError("the cache is unavailable") from exc
        return list(popped[1]) if popped else []
