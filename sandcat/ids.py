"""Identifiers and time: 21-character nanoids and millisecond clocks."""

from __future__ import annotations

import os
import time
from typing import Protocol

_ALPHABET = b"_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def nanoid(size: int = 21) -> str:
    """A URL-safe random id (64-letter alphabet, so every random byte maps without bias)."""
    return bytes(_ALPHABET[b & 63] for b in os.urandom(size)).decode()


class Clock(Protocol):
    def now_ms(self) -> int: ...

    def now(self) -> float: ...


class SystemClock:
    """Wall clock for timestamps; monotonic time is used separately for rate limits."""

    __slots__ = ()

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def now(self) -> float:
        return time.time()
