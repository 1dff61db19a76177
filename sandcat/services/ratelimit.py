"""In-process rate limiting: sliding-window counters and token buckets."""

from __future__ import annotations

from collections import deque

from sandcat.errors import TooManyRequests
from sandcat.ids import SYSTEM_CLOCK
from sandcat.ports import Clock


class WindowLimiter:
    """At most ``limit`` events per ``window`` seconds per key."""

    def __init__(
        self, limit: int, window: float, what: str, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._limit = limit
        self._window = window
        self._what = what
        self._clock = clock
        self._events: dict[str, deque[float]] = {}

    def hit(self, key: str) -> None:
        """Record one event for ``key``; raises :class:`TooManyRequests` when over the limit."""
        if self._limit <= 0:
            return
        now = self._clock.monotonic()
        events = self._events.setdefault(key, deque())
        while events and events[0] <= now - self._window:
            events.popleft()
        if len(events) >= self._limit:
            retry = int(events[0] + self._window - now) + 1
            raise TooManyRequests(f"too many {self._what}; retry later", retry)
        events.append(now)
        if len(self._events) > 100_000:
            self._prune(now)

    def refund(self, key: str) -> None:
        """Take back the latest event of ``key``: counting an attempt when it starts and
        refunding it when it turns out not to count (a login that succeeded) bounds the
        attempts in flight too, which counting only at the end would not."""
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
        now = self._clock.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False
