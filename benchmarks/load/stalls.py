"""How often this machine takes the CPU away from a process that wants it.

On the shared virtual machines this project is measured on, a CPU-bound process with
nothing else running loses its CPU for 15-40 ms about every 1.5 s (the host runs something
else). Every process stalls at once, so every message in flight waits that long, and a
server at 75 % of its maximum needs several times the stall to drain what queued behind
it: the stalls set a floor under every p99 in ``docs/benchmarks.md``. The suite runs this
probe for a few seconds once its servers have stopped, and the report prints what it saw.

The probe times a fixed piece of pure-Python work (about a millisecond) over and over, with
a short sleep between pieces as a server waiting for its sockets has; a piece that takes
far longer than the fastest one was interrupted. Interruptions less than
``EPISODE_GAP`` apart count as one episode.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

#: Pieces slower than this (ms) were interrupted.
THRESHOLD_MS = 5.0
#: The sleep between pieces (seconds).
PAUSE = 0.002
#: Interruptions closer than this (seconds) are one episode.
EPISODE_GAP = 0.1


def _work(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def _calibrate() -> tuple[int, float]:
    """A work size that takes about a millisecond, and its fastest time (seconds)."""
    n = 1000
    while min(_timed(n) for _ in range(3)) < 0.001:  # one timing a stall inflated stops nothing
        n *= 2
    best = min(_timed(n) for _ in range(20))
    return n, best


def _timed(n: int) -> float:
    begin = time.perf_counter()
    _work(n)
    return time.perf_counter() - begin


def summarize(
    seconds: float, piece_ms: float, interruptions: list[tuple[float, float]]
) -> dict[str, Any]:
    """Episodes from ``interruptions`` (start time in s, piece time in ms), sorted by time."""
    episodes: list[tuple[float, float]] = []  # (start, longest piece ms)
    last = -1.0
    for at, took in interruptions:
        if episodes and at - last < EPISODE_GAP:
            start, worst = episodes[-1]
            episodes[-1] = (start, max(worst, took))
        else:
            episodes.append((at, took))
        last = at
    gaps = sorted(b[0] - a[0] for a, b in itertools.pairwise(episodes))
    lost_ms = sum(took - piece_ms for _, took in interruptions)
    return {
        "seconds": seconds,
        "piece_ms": round(piece_ms, 3),
        "episodes": len(episodes),
        "worst_ms": round(max((w for _, w in episodes), default=0.0), 1),
        "median_gap_s": round(gaps[len(gaps) // 2], 2) if gaps else None,
        "lost_percent": round(lost_ms / (seconds * 1000) * 100, 2),
    }


def probe(seconds: float) -> dict[str, Any]:
    """Run the work for ``seconds`` and summarise the interruptions."""
    n, best = _calibrate()
    interruptions: list[tuple[float, float]] = []
    start = time.perf_counter()
    end = start + seconds
    while True:
        begin = time.perf_counter()
        if begin >= end:
            break
        _work(n)
        took_ms = (time.perf_counter() - begin) * 1000
        if took_ms > THRESHOLD_MS:
            interruptions.append((begin - start, took_ms))
        time.sleep(PAUSE)
    return summarize(seconds, best * 1000, interruptions)


def sentence(stalls: dict[str, Any]) -> str:
    """The report's line on what the probe saw."""
    who = (
        f"a probe of 1 ms pieces of work ({stalls['seconds']:g} s on the idle machine after "
        "the runs, `benchmarks/load/stalls.py`)"
    )
    if not stalls["episodes"]:
        return f"{who} was never interrupted for over {THRESHOLD_MS:g} ms"
    gap = stalls["median_gap_s"]
    every = f", about every {gap:g} s" if gap else ""
    return (
        f"{who} lost the CPU {stalls['episodes']} times for over {THRESHOLD_MS:g} ms{every}, "
        f"the longest {stalls['worst_ms']:g} ms ({stalls['lost_percent']:g} % of its time): "
        "every process on the machine stalls then, and what queued behind a stall sets a "
        "floor under the p99 figures"
    )
