"""Identifiers and time: 21-character nanoids and millisecond clocks."""

from __future__ import annotations

import os
import time

_ALPHABET = b"_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: Byte b -> letter b mod 64: a 64-letter alphabet takes every random byte without bias,
#: and ``bytes.translate`` maps all of them in C (one id is on every message's path).
_TRANSLATE = _ALPHABET * 4


def nanoid(size: int = 21) -> str:
    """A URL-safe random id of ``size`` letters."""
    return os.urandom(size).translate(_TRANSLATE).decode("ascii")


class SystemClock:
    """The process's clocks (implements ``sandcat.ports.Clock``)."""

    __slots__ = ()

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


#: The clock of components built without one (production passes nothing else).
SYSTEM_CLOCK = SystemClock()
