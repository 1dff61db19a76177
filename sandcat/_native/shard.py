"""Shard keys under hybrid sharding (docs/sharding.md): the pure-Python reference.

This module is the specification; the Rust twin (``native/rust``, module ``sandcat_native``)
must return the same values and raise the same errors. Values are stable across processes
and machines: xxh3-64 (seed 0) of the UTF-8 bytes, never Python's ``hash()``.

- shard of a user = xxh3-64(user id) mod ``user_shards`` (default 10, at most 65536);
- month of a message = UTC month of ``send_time`` (ms, 1970-01 to 9999-12) as ``YYYYMM``;
- inbox collection = ``msg_box_{YYYYMM}_{shard:02d}``, e.g. ``msg_box_202405_03``;
- Kafka partition of a key = xxh3-64(key) mod ``partitions``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from xxhash import xxh3_64_intdigest

DEFAULT_USER_SHARDS = 10
MAX_USER_SHARDS = 65_536
MAX_PARTITIONS = 2**31 - 1
#: The last millisecond of 9999-12-31 UTC.
MAX_SEND_TIME_MS = 253_402_300_799_999

BAD_SHARDS = "user_shards must be between 1 and 65536"
BAD_PARTITIONS = "partitions must be between 1 and 2147483647"
BAD_SEND_TIME = "send_time must be between 0 and 253402300799999 ms"
BAD_SHARD = "shard must be between 0 and 65535"
BAD_MONTH = "month must be YYYYMM with a year from 1970 to 9999"


def _int_in(value: int, low: int, high: int, message: str) -> int:
    if not isinstance(value, int):
        raise TypeError(message)
    if not low <= value <= high:
        raise ValueError(message)
    return value


def check_shards(user_shards: int) -> int:
    return _int_in(user_shards, 1, MAX_USER_SHARDS, BAD_SHARDS)


def check_month(month: int) -> int:
    _int_in(month, 0, 2**63 - 1, BAD_MONTH)
    if not (1970 <= month // 100 <= 9999 and 1 <= month % 100 <= 12):
        raise ValueError(BAD_MONTH)
    return month


def month_of(send_time_ms: int) -> int:
    """UTC month of a millisecond timestamp, as the integer ``YYYYMM``."""
    _int_in(send_time_ms, 0, MAX_SEND_TIME_MS, BAD_SEND_TIME)
    day = time.gmtime(send_time_ms // 1000)
    return day.tm_year * 100 + day.tm_mon


def collection_name(month: int, shard: int) -> str:
    """``msg_box_{YYYYMM}_{shard:02d}``."""
    check_month(month)
    return f"msg_box_{month}_{_int_in(shard, 0, MAX_USER_SHARDS - 1, BAD_SHARD):02d}"


def shard_of(user_id: str, user_shards: int = DEFAULT_USER_SHARDS) -> int:
    """xxh3-64 of the UTF-8 user id mod ``user_shards``."""
    return xxh3_64_intdigest(user_id.encode()) % check_shards(user_shards)


def partition_of(key: str, partitions: int) -> int:
    """xxh3-64 of the UTF-8 key mod ``partitions``."""
    return xxh3_64_intdigest(key.encode()) % _int_in(partitions, 1, MAX_PARTITIONS, BAD_PARTITIONS)


def inbox_collection_batch(
    user_ids: Iterable[str], send_time_ms: int, user_shards: int = DEFAULT_USER_SHARDS
) -> list[str]:
    """The collection of each user id's copy of a message sent at ``send_time_ms``:
    ``collection_name(month_of(send_time_ms), shard_of(user_id, user_shards))`` for each."""
    month = month_of(send_time_ms)
    shards = check_shards(user_shards)
    names: dict[int, str] = {}
    out: list[str] = []
    for user_id in user_ids:
        shard = xxh3_64_intdigest(user_id.encode()) % shards
        name = names.get(shard)
        if name is None:
            name = names[shard] = f"msg_box_{month}_{shard:02d}"
        out.append(name)
    return out
