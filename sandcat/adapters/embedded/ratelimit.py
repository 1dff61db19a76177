"""The in-process ``RateLimiter``: every count in this process's memory (embedded mode, and
distributed mode's fallback while Redis is down)."""

from __future__ import annotations

from collections.abc import Sequence

from sandcat.ids import SYSTEM_CLOCK
from sandcat.ports import BucketRule, Clock, WindowRule
from sandcat.services.ratelimit import PRUNE_AT, TokenBucket, WindowLimiter


class InProcessRateLimiter:
    """Implements ``RateLimiter`` on this process's monotonic clock."""

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._windows: dict[WindowRule, WindowLimiter] = {}
        self._buckets: dict[tuple[BucketRule, str], TokenBucket] = {}

    def _window(self, rule: WindowRule) -> WindowLimiter:
        window = self._windows.get(rule)
        if window is None:
            window = self._windows[rule] = WindowLimiter(rule.limit, rule.window, clock=self._clock)
        return window

    async def hit(self, rule: WindowRule, key: str) -> int:
        return self._window(rule).hit(key)

    async def hit_many(self, checks: Sequence[tuple[WindowRule, str]]) -> list[int]:
        # Counted one after the other, then taken back if any was refused: nothing else
        # runs in between (no await), so the latest event of each key is the one counted.
        verdicts = [self._window(rule).hit(key) for rule, key in checks]
        if any(verdicts):
            for (rule, key), retry in zip(reversed(checks), reversed(verdicts), strict=True):
                if not retry:
                    self._window(rule).refund(key)
        return verdicts

    async def refund(self, rule: WindowRule, key: str) -> None:
        self._window(rule).refund(key)

    async def refund_many(self, checks: Sequence[tuple[WindowRule, str]]) -> None:
        for rule, key in checks:
            self._window(rule).refund(key)

    async def take(self, rule: BucketRule, key: str) -> bool:
        bucket = self._buckets.get((rule, key))
        if bucket is None:
            if len(self._buckets) >= PRUNE_AT:
                for full in [k for k, b in self._buckets.items() if b.full()]:
                    del self._buckets[full]
            bucket = self._buckets[rule, key] = TokenBucket(
                rule.rate, rule.burst, clock=self._clock
            )
        return bucket.take()
