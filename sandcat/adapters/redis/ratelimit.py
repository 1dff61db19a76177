"""The shared ``RateLimiter``: every API process counts in the same Redis keys.

Keys, each with a TTL of its window (or of its bucket's refill), so idle keys go away:

- ``ratelimit:window:{rule}:{key}``: ZSET of a sliding window's events (score: Redis server time
  in microseconds; member: unique per event);
- ``ratelimit:bucket:{rule}:{key}``: hash ``{tokens, at}`` of a token bucket.

One Lua call per request: it reads Redis's own clock (``TIME``, so the processes' clocks
do not matter), drops what left the windows or refills the bucket, and counts the events
only when every check of the request is within its limit, atomically (``hit_many``; a
refused request consumes nothing). While Redis is down each rule does what its
``on_outage`` says: ``"local"`` counts in the fallback limiter of this process (the budget
is per process again until Redis is back; ``COUNTS.ratelimit_fallbacks`` counts these
checks per rule), ``"refuse"`` raises ``DbError`` (for a request with such a rule among
its checks, the whole request). After a failed
call Redis is left alone for ``PAUSE_SECONDS`` (every check goes straight to its outage
behaviour), so an unreachable Redis does not add its connect timeouts to every login.
"""

from __future__ import annotations

from collections.abc import Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError

from sandcat.errors import DbError
from sandcat.ids import SYSTEM_CLOCK, nanoid
from sandcat.log import get_logger
from sandcat.metrics import COUNTS
from sandcat.ports import BucketRule, Clock, OnOutage, RateLimiter, WindowRule

log = get_logger(__name__)

#: How long checks skip Redis after it failed one.
PAUSE_SECONDS = 5.0

# KEYS: the windows of one request's checks; ARGV[1]: the request's member prefix, then the
# limit and window (microseconds) of each check. Each check is counted if within its limit;
# when any is not, those counted are removed again before the script returns (all or
# nothing). Returns each check's 0 (within) or whole seconds until its oldest event leaves.
_HIT_MANY = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local verdicts = {}
local refused = false
for i, key in ipairs(KEYS) do
  local limit = tonumber(ARGV[2 * i])
  local window = tonumber(ARGV[2 * i + 1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    verdicts[i] = math.max(1, math.ceil((tonumber(oldest[2]) + window - now) / 1000000))
    refused = true
  else
    redis.call('ZADD', key, now, ARGV[1] .. ':' .. i)
    redis.call('PEXPIRE', key, math.ceil(window / 1000))
    verdicts[i] = 0
  end
end
if refused then
  for i, key in ipairs(KEYS) do
    if verdicts[i] == 0 then
      redis.call('ZREM', key, ARGV[1] .. ':' .. i)
    end
  end
end
return verdicts
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
        self._hit_many = client.register_script(_HIT_MANY)
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
        return (await self.hit_many([(rule, key)]))[0]

    async def hit_many(self, checks: Sequence[tuple[WindowRule, str]]) -> list[int]:
        counted = [(rule, key) for rule, key in checks if rule.limit > 0]
        if not counted:
            return [0] * len(checks)
        on_outage: OnOutage = (
            "refuse" if any(rule.on_outage == "refuse" for rule, _ in counted) else "local"
        )
        if not self._usable(on_outage):
            return await self._fall_back(checks, counted)
        args: list[str | int] = [nanoid()]
        for rule, _ in counted:
            args += [rule.limit, int(rule.window * 1_000_000)]
        try:
            answers = await self._hit_many(
                keys=[f"ratelimit:window:{rule.name}:{key}" for rule, key in counted],
                args=args,
            )
        except RedisError as exc:
            self._failed(",".join(rule.name for rule, _ in counted), on_outage, exc)
            return await self._fall_back(checks, counted)
        retries = iter(answers)
        return [int(next(retries)) if rule.limit > 0 else 0 for rule, _ in checks]

    async def _fall_back(
        self, checks: Sequence[tuple[WindowRule, str]], counted: list[tuple[WindowRule, str]]
    ) -> list[int]:
        for rule, _ in counted:
            COUNTS.count_fallback(rule.name)
        return await self._fallback.hit_many(checks)

    async def refund(self, rule: WindowRule, key: str) -> None:
        """Never raises: an event that cannot be taken back stays counted for its window."""
        await self.refund_many([(rule, key)])

    async def refund_many(self, checks: Sequence[tuple[WindowRule, str]]) -> None:
        """Never raises, as ``refund``."""
        counted = [(rule, key) for rule, key in checks if rule.limit > 0]
        if not counted:
            return
        if not self._usable("local"):
            await self._fallback.refund_many(counted)
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for rule, key in counted:
                    pipe.zpopmax(f"ratelimit:window:{rule.name}:{key}")
                await pipe.execute()
        except RedisError as exc:
            self._failed(",".join(rule.name for rule, _ in counted), "local", exc)
            await self._fallback.refund_many(counted)

    async def take(self, rule: BucketRule, key: str) -> bool:
        if rule.rate <= 0:
            return True
        if not self._usable(rule.on_outage):
            COUNTS.count_fallback(rule.name)
            return await self._fallback.take(rule, key)
        try:
            taken = await self._take(
                keys=[f"ratelimit:bucket:{rule.name}:{key}"],
                args=[repr(float(rule.rate)), max(1, rule.burst)],
            )
        except RedisError as exc:
            self._failed(rule.name, rule.on_outage, exc)
            COUNTS.count_fallback(rule.name)
            return await self._fallback.take(rule, key)
        return bool(int(taken))
