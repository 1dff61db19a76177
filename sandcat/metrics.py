"""Process-wide counters and histograms, as plain integers.

The hot message path counts with ``COUNTS.frames_in += 1`` (about 50 ns) instead of a
``prometheus_client`` ``Counter.inc()`` (about 660 ns; a labelled one about 3 us, a
``Histogram.observe`` about 2.8 us, measured on this machine); ``sandcat.observability``
reads these numbers only when ``/metrics`` is scraped. The module imports nothing but the
standard library, so services may count too.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence


class Histogram:
    """Observation counts per upper bound (``le``), their sum and count; cumulated at scrape."""

    __slots__ = ("bounds", "buckets", "count", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.buckets = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.buckets[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, cumulative count)`` pairs, ending with ``+Inf`` (the exposition's form)."""
        pairs: list[tuple[str, int]] = []
        total = 0
        for bound, hits in zip((*map(str, self.bounds), "+Inf"), self.buckets, strict=True):
            total += hits
            pairs.append((bound, total))
        return pairs


#: Seconds: from a fraction of a millisecond (one SQLite batch) to seconds (a stalled backend).
LATENCY_BOUNDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Messages per stored batch (the embedded writer takes at most 256, a Kafka poll 500).
BATCH_BOUNDS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Counts:
    """Every plain counter of the process (monotonic unless named as a gauge)."""

    __slots__ = (
        "argon2_wait",
        "dead_letters",
        "frames_in",
        "frames_out",
        "http_requests",
        "kafka_lag",
        "kafka_publish",
        "messages_accepted",
        "messages_refused",
        "messages_stored",
        "ratelimit_fallbacks",
        "slow_client_closes",
        "store_batch_seconds",
        "store_batch_size",
        "ws_connections",
    )

    def __init__(self) -> None:
        self.frames_in = 0
        self.frames_out = 0
        self.ws_connections = 0
        self.messages_accepted = 0
        self.messages_stored = 0
        #: reason -> count (a handful of fixed reasons, see ``REFUSED_*``).
        self.messages_refused: dict[str, int] = {}
        self.slow_client_closes = 0
        self.dead_letters = 0
        #: rule -> rate-limit checks answered by this process's own counts (Redis was down).
        self.ratelimit_fallbacks: dict[str, int] = {}
        #: Kafka partition -> records not yet polled (a gauge, set after each poll).
        self.kafka_lag: dict[int, int] = {}
        #: (method, route, status) -> count.
        self.http_requests: dict[tuple[str, str, int], int] = {}
        self.store_batch_size = Histogram(BATCH_BOUNDS)
        self.store_batch_seconds = Histogram(LATENCY_BOUNDS)
        self.argon2_wait = Histogram(LATENCY_BOUNDS)
        self.kafka_publish = Histogram(LATENCY_BOUNDS)

    def refused(self, reason: str) -> None:
        refused = self.messages_refused
        refused[reason] = refused.get(reason, 0) + 1

    def count_fallback(self, rule: str) -> None:
        fallbacks = self.ratelimit_fallbacks
        fallbacks[rule] = fallbacks.get(rule, 0) + 1


#: The reasons a client message is answered with an error ack.
REFUSED_MALFORMED = "malformed"
REFUSED_RATE_LIMITED = "rate_limited"
REFUSED_POLICY = "policy"  # not a friend, not the sender, too large, not a member, ...
REFUSED_NOT_STORED = "not_stored"
REFUSED_SHUTTING_DOWN = "shutting_down"

COUNTS = Counts()
