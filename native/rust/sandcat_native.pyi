# Stub of the Rust twin (native/rust/src/python.rs) of sandcat/_native/shard.py; checked by
# mypy.stubtest (tests/native/test_stubs.py).
from collections.abc import Iterable

__all__ = [
    "DEFAULT_USER_SHARDS",
    "collection_name",
    "inbox_collection_batch",
    "month_of",
    "partition_of",
    "shard_of",
]

DEFAULT_USER_SHARDS: int

def month_of(send_time_ms: int) -> int: ...
def collection_name(month: int, shard: int) -> str: ...
def shard_of(user_id: str, user_shards: int = 10) -> int: ...
def partition_of(key: str, partitions: int) -> int: ...
def inbox_collection_batch(
    user_ids: Iterable[str], send_time_ms: int, user_shards: int = 10
) -> list[str]: ...
