"""Identifiers and time: 21-character nanoids and millisecond clocks."""

from __future__ import annotations

import os
import time
from typing import Protocol

_ALPHABET = b"_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: Byte b -> letter b mod 64: a 64-letter alphabet takes every random byte without bias,
#: and ``bytes.translate`` maps all of them in C (one id is on every message's path).
_TRANSLATE = _ALPHABET * 4


def nanoid(size: int = 21) -> str:
    """A URL-safe random id of ``size`` letters."""
    return os.urandom(size).translate(_TRANSLATE).decode("ascii")


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
