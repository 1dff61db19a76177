"""CPU time and memory of processes (psutil), and the generator's own CPU."""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of every thread of ``pid``."""
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def rss_bytes(pid: int) -> int:
    return int(psutil.Process(pid).memory_info().rss)


def open_files(pid: int) -> int:
    return int(psutil.Process(pid).num_fds())


@dataclass(frozen=True, slots=True)
class Snapshot:
    wall: float
    cpu: float
    rss: int


def snapshot(pids: tuple[int, ...]) -> Snapshot:
    """The summed CPU seconds and RSS of ``pids`` (zeros when there are none to watch)."""
    return Snapshot(
        time.monotonic(),
        sum(cpu_seconds(pid) for pid in pids),
        sum(rss_bytes(pid) for pid in pids),
    )


@dataclass(frozen=True, slots=True)
class Usage:
    """What a set of processes spent between two snapshots."""

    seconds: float
    cpu_seconds: float

    @property
    def cores(self) -> float:
        return self.cpu_seconds / self.seconds if self.seconds > 0 else 0.0

    def us_per(self, units: float) -> float | None:
        """CPU microseconds per unit of work (``None`` when nothing was watched or done)."""
        if units <= 0 or self.cpu_seconds <= 0:
            return None
        return self.cpu_seconds * 1e6 / units


def usage(before: Snapshot, after: Snapshot) -> Usage:
    return Usage(after.wall - before.wall, after.cpu - before.cpu)


class SelfMeter:
    """This process's CPU share over a window: the generator must not be the bottleneck."""

    __slots__ = ("_cpu", "_wall")

    def __init__(self) -> None:
        self._wall = time.monotonic()
        self._cpu = time.process_time()

    def reset(self) -> None:
        self._wall = time.monotonic()
        self._cpu = time.process_time()

    def cores(self) -> float:
        wall = time.monotonic() - self._wall
        return (time.process_time() - self._cpu) / wall if wall > 0 else 0.0
