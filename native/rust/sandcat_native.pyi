# Stub of the Rust twin (native/rust/src/python.rs) of sandcat/_native/shard.py and
# sandcat/_native/fanout.py; checked by mypy.stubtest (tests/native/test_stubs.py).
from collections.abc import Iterable, Mapping

__all__ = [
    "DEFAULT_USER_SHARDS",
    "collection_name",
    "inbox_collection",
    "inbox_collection_batch",
    "month_of",
    "partition_batch",
    "partition_of",
    "plan_fanout",
    "shard_batch",
    "shard_of",
    "xxh3_64",
]

DEFAULT_USER_SHARDS: int

def xxh3_64(data: bytes) -> int: ...
def month_of(send_time_ms: int) -> int: ...
def collection_name(month: int, shard: int) -> str: ...
def shard_of(user_id: str, user_shards: int = 10) -> int: ...
def inbox_collection(user_id: str, send_time_ms: int, user_shards: int = 10) -> str: ...
def partition_of(key: str, partitions: int) -> int: ...
def shard_batch(user_ids: Iterable[str], user_shards: int = 10) -> list[int]: ...
def partition_batch(keys: Iterable[str], partitions: int) -> list[int]: ...
def inbox_collection_batch(
    user_ids: Iterable[str], send_time_ms: int, user_shards: int = 10
) -> list[str]: ...
def plan_fanout(
    recipients: Iterable[tuple[str, int]],
    gateways: Mapping[str, str | None],
    month: int,
    user_shards: int = 10,
) -> tuple[dict[str, list[tuple[str, int]]], dict[str, list[tuple[str, int]]]]: ...
