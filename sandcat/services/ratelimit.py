"""Rate limiting: the in-process counting (sliding windows, token buckets) and ``Limit``,
one window rule of a ``RateLimiter`` that raises ``TooManyRequests`` (``hit_all``: the
several rules of one request in one call)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence

from sandcat.errors import TooManyRequests
from sandcat.ids import SYSTEM_CLOCK
from sandcat.ports import Clock, RateLimiter, WindowRule

#: Past this many keys a window drops those whose events have all expired.
PRUNE_AT = 100_000


class WindowLimiter:
    """At most ``limit`` events per ``window`` seconds per key, in this process."""

    def __init__(self, limit: int, window: float, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._limit = limit
        self._window = window
        self._clock = clock
        self._events: dict[str, deque[float]] = {}

    def hit(self, key: str) -> int:
        """Record one event for ``key``: 0, or the seconds to wait when over the limit
        (nothing recorded then)."""
        if self._limit <= 0:
            return 0
        now = self._clock.monotonic()
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - self._window:
            events.popleft()
        if len(events) >= self._limit:
            return max(1, math.ceil(events[0] + self._window - now))
        events.append(now)
        if len(self._events) > PRUNE_AT:
            self._prune(now)
        return 0

    def refund(self, key: str) -> None:
        """Take back the latest event of ``key``."""
        events = self._events.get(key)
        if events:
            events.pop()

    def _prune(self, now: float) -> None:
        for key in [k for k, v in self._events.items() if not v or v[-1] <= now - self._window]:
            del self._events[key]


class TokenBucket:
    """``rate`` tokens per second up to ``burst``; ``take`` says whether one was available."""

    __slots__ = ("_burst", "_clock", "_last", "_rate", "_tokens")

    def __init__(self, rate: float, burst: int, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._rate = rate
        self._burst = float(max(1, burst))
        self._tokens = self._burst
        self._clock = clock
        self._last = clock.monotonic()

    def take(self) -> bool:
        if self._rate <= 0:
            return True
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def full(self) -> bool:
        """Whether the bucket is back to ``burst`` (forgetting it changes nothing)."""
        self._refill()
        return self._tokens >= self._burst

    def _refill(self) -> None:
        now = self._clock.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now


class Limit:
    """One window rule on a limiter; ``what`` names the events in the 429's message."""

    def __init__(self, limiter: RateLimiter, rule: WindowRule, what: str) -> None:
        self._limiter = limiter
        self.rule = rule
        self.what = what

    async def hit(self, key: str) -> None:
        """Count one event of ``key``; raises :class:`TooManyRequests` when over the limit."""
        await hit_all(self._limiter, [(self, key)])


async def hit_all(limiter: RateLimiter, checks: Sequence[tuple[Limit, str]]) -> None:
    """Count one event of each ``(limit, key)`` of a request in one limiter call, all or
    nothing; raises :class:`TooManyRequests` naming the first limit refused, with the longest
    wait of the refused ones (the request passes only when all of them do)."""
    verdicts = await limiter.hit_many([(limit.rule, key) for limit, key in checks])
    refused = [(limit, retry) for (limit, _), retry in zip(checks, verdicts, strict=True) if retry]
    if refused:
        retry = max(wait for _, wait in refused)
        raise TooManyRequests(f"too many {refused[0][0].what}; retry later", retry)


async def refund_all(limiter: RateLimiter, checks: Sequence[tuple[Limit, str]]) -> None:
    """Take back the latest event of each ``(limit, key)``, in one limiter call: counting an
    attempt when it starts and refunding it when it turns out not to count (a login that
    succeeded) bounds the attempts in flight too, which counting only at the end would not."""
    await limiter.refund_many([(limit.rule, key) for limit, key in checks])
