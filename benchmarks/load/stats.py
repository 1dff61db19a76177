"""Latency percentiles and the summary of repeated runs (median and spread)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence

PERCENTILES = (50.0, 90.0, 99.0)


def percentile(ordered: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (0.0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(pct / 100.0 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def latency_summary(samples_s: Iterable[float]) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds, plus the sample count."""
    ordered = sorted(samples_s)
    out = {f"p{pct:g}_ms": percentile(ordered, pct) * 1000.0 for pct in PERCENTILES}
    out["max_ms"] = (ordered[-1] * 1000.0) if ordered else 0.0
    out["count"] = float(len(ordered))
    return out


def spread(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max of repeated runs' values."""
    if not values:
        return {"median": 0.0, "min": 0.0, "max": 0.0, "runs": 0.0}
    return {
        "median": float(statistics.median(values)),
        "min": float(min(values)),
        "max": float(max(values)),
        "runs": float(len(values)),
    }
