"""A fake ``Clock`` (``sandcat.ports``): time moves only when the test says so."""

from __future__ import annotations


class FakeClock:
    """Implements ``Clock``; ``ms`` is both the wall clock and the monotonic one."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self.ms = start_ms

    def advance(self, seconds: float) -> None:
        self.ms += round(seconds * 1000)

    def now_ms(self) -> int:
        return self.ms

    def now(self) -> float:
        return self.ms / 1000

    def monotonic(self) -> float:
        return self.ms / 1000
