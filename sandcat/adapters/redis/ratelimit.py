"""The shared ``RateLimiter``: every API process counts in the same Redis keys.

Keys, each with a TTL of its window (or of its bucket's refill), so idle keys go away:

- ``ratelimit:window:{rule}:{key}``: ZSET of a sliding window's events (score: Redis server time
  in microseconds; member: unique per event);
- ``ratelimit:bucket:{rule}:{key}``: hash ``{tokens, at}`` of a token bucket.

One Lua call per check: it reads Redis's own clock (``TIME``, so the processes' clocks do
not matter), drops what left the window or refills the bucket, and counts the event only
when it is within the limit, atomically. While Redis is down each rule does what its
``on_outage`` says: ``"local"`` counts in the fallback limiter of this process (the budget
is per process again until Redis is back), ``"refuse"`` raises ``DbError``. After a failed
call Redis is left alone for ``PAUSE_SECONDS`` (every check goes straight to its outage
behaviour), so an unreachable Redis does not add its connect timeouts to every login.
"""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

from sandcat.errors import DbError
from sandcat.ids import SYSTEM_CLOCK, nanoid
from sandcat.log import get_logger
from sandcat.ports import BucketRule, Clock, OnOutage, RateLimiter, WindowRule

log = get_logger(__name__)

#: How long checks skip Redis after it failed one.
PAUSE_SECONDS = 5.0

# KEYS[1]: the window; ARGV: limit, window in microseconds, the event's member.
# Returns 0 (counted) or the whole seconds until the oldest event leaves the window.
_HIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, math.ceil((tonumber(oldest[2]) + window - now) / 1000000))
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
return 0
"""

# KEYS[1]: the bucket; ARGV: rate (tokens a second), burst. Returns 1 (taken) or 0.
_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local taken = 0
if tokens >= 1 then
  tokens = tokens - 1
  taken = 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens),
           'at', string.format('%.17g', now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return taken
"""


class RedisRateLimiter:
    """Implements ``RateLimiter`` in Redis; ``fallback`` counts the ``"local"`` rules while
    Redis is down."""

    def __init__(
        self, *, client: Redis, fallback: RateLimiter, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._redis = client
        self._fallback = fallback
        self._clock = clock
        self._hit = client.register_script(_HIT)
        self._take = client.register_script(_TAKE)
        #: Monotonic time until which Redis is not asked (0: it answered last time).
        self._paused_until = 0.0

    def _usable(self, on_outage: OnOutage) -> bool:
        """Whether to ask Redis; during a pause, ``DbError`` for a ``"refuse"`` rule."""
        if self._clock.monotonic() >= self._paused_until:
            return True
        if on_outage == "refuse":
            raise DbError("the rate limiter is unavailable")
        return False

    def _failed(self, rule: str, on_outage: OnOutage, exc: RedisError) -> None:
        """Log the failure and pause; raise ``DbError`` unless the rule falls back here."""
        log.warning("ratelimit_redis_down", rule=rule, on_outage=on_outage, error=repr(exc))
        self._paused_until = self._clock.monotonic() + PAUSE_SECONDS
        if on_outage == "refuse":
            raise DbError("the rate limiter is unavailable") from exc

    async def hit(self, rule: WindowRule, key: str) -> int:
        if rule.limit <= 0:
            return 0
        if not self._usable(rule.on_outage):
            return await self._fallback.hit(rule, key)
        try:
            retry = await self._hit(
                keys=[f"ratelimit:window:{rule.name}:{key}"],
                args=[rule.limit, int(rule.window * 1_000_000), nanoid()],
            )
        except RedisError as exc:
            self._failed(rule.name, rule.on_outage, exc)
            return await self._fallback.hit(rule, key)
        return int(retry)

    async def refund(self, rule: WindowRule, key: str) -> None:
        """Never raises: an event that cannot be taken back stays counted for its window."""
        if rule.limit <= 0:
            return
        if not self._usable("local"):
            await self._fallback.refund(rule, key)
            return
        try:
            await self._redis.zpopmax(f"ratelimit:window:{rule.name}:{key}")
        except RedisError as exc:
            self._failed(rule.name, "local", exc)
            await self._fallback.refund(rule, key)

    async def take(self, rule: BucketRule, key: str) -> bool:
        if rule.rate <= 0:
            return True
        if not self._usable(rule.on_outage):
            return await self._fallback.take(rule, key)
        try:
            taken = await self._take(
                keys=[f"ratelimit:bucket:{rule.name}:{key}"],
                args=[repr(float(rule.rate)), max(1, rule.burst)],
            )
        except RedisError as exc:
            self._failed(rule.name, rule.on_outage, exc)
            return await self._fallback.take(rule, key)
        return bool(int(taken))
