"""Shard-key hashing twins: golden vectors, identical batches, identical errors, stability."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from xxhash import xxh3_64_intdigest

from sandcat._native import shard
from tests.native.golden import ShardVector, read_shard_vectors

VECTORS = read_shard_vectors()
SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
ids = st.lists(st.text(max_size=40), max_size=60)
shard_counts = st.integers(1, shard.MAX_USER_SHARDS)
partition_counts = st.integers(1, 2**31 - 1)
send_times = st.integers(0, shard.MAX_SEND_TIME_MS)


def outcome(func: Any, *args: Any) -> tuple[str, Any]:
    try:
        return ("ok", func(*args))
    except Exception as exc:
        return (type(exc).__name__, str(exc))


@pytest.mark.parametrize("v", VECTORS, ids=lambda v: v.user_id[:12] or "empty")
def test_golden_vectors(shard_impl: Any, v: ShardVector) -> None:
    assert xxh3_64_intdigest(v.user_id.encode()) == v.xxh3_64  # the column cargo test checks
    assert shard_impl.shard_of(v.user_id, v.user_shards) == v.shard
    assert shard_impl.month_of(v.send_time_ms) == v.month
    assert shard_impl.collection_name(v.month, v.shard) == v.collection
    assert shard_impl.inbox_collection_batch([v.user_id], v.send_time_ms, v.user_shards) == [
        v.collection
    ]
    assert shard_impl.partition_of(v.user_id, v.partitions) == v.partition


def test_xxh3_is_the_standard_one() -> None:
    assert xxh3_64_intdigest(b"") == 0x2D06800538D394C2  # XXH3_64bits("") of the xxHash spec


def test_defaults_and_names(shard_impl: Any) -> None:
    assert shard_impl.shard_of("alice") == shard_impl.shard_of("alice", 10)
    assert shard_impl.inbox_collection_batch(["alice"], 1_716_000_000_000) == ["msg_box_202405_00"]
    assert shard_impl.collection_name(202405, 3) == "msg_box_202405_03"
    assert shard_impl.collection_name(202405, 123) == "msg_box_202405_123"


@SETTINGS
@given(user_ids=ids, shards=shard_counts, send_time=send_times)
def test_batch_matches_single_calls_and_the_reference(
    shard_impl: Any, user_ids: list[str], shards: int, send_time: int
) -> None:
    month = shard.month_of(send_time)
    expected = [
        shard.collection_name(month, shard.shard_of(user_id, shards)) for user_id in user_ids
    ]
    assert shard_impl.inbox_collection_batch(user_ids, send_time, shards) == expected
    assert shard_impl.inbox_collection_batch(tuple(user_ids), send_time, shards) == expected
    assert shard_impl.inbox_collection_batch(iter(user_ids), send_time, shards) == expected


@SETTINGS
@given(send_time=send_times)
def test_month_is_the_utc_month(shard_impl: Any, send_time: int) -> None:
    day = datetime.fromtimestamp(send_time // 1000, UTC)
    assert shard_impl.month_of(send_time) == day.year * 100 + day.month


@pytest.mark.parametrize(
    ("func", "args"),
    [
        ("shard_of", ("a", 0)),
        ("shard_of", ("a", 65_537)),
        ("shard_of", ("a", 2**80)),
        ("shard_of", ("a", 2.0)),
        ("shard_of", ("\ud800",)),
        ("partition_of", ("a", 0)),
        ("partition_of", ("a", 2**31)),
        ("month_of", (-1,)),
        ("month_of", (shard.MAX_SEND_TIME_MS + 1,)),
        ("month_of", (2**70,)),
        ("collection_name", (202413, 1)),
        ("collection_name", (196912, 1)),
        ("collection_name", (-202401, 1)),
        ("collection_name", (202401, -1)),
        ("collection_name", (202401, 65_536)),
        ("inbox_collection_batch", (["a", "\udfff"], 0, 10)),
        ("inbox_collection_batch", (["a"], 0, 0)),
        ("inbox_collection_batch", (["a"], -1, 10)),
    ],
)
def test_bad_arguments_fail_identically(shard_impl: Any, func: str, args: tuple[Any, ...]) -> None:
    got = outcome(getattr(shard_impl, func), *args)
    assert got[0] != "ok"
    assert got == outcome(getattr(shard, func), *args)


def test_stable_across_processes(shard_impl: Any) -> None:
    """Other hash seeds, another interpreter: the same shards (never Python's ``hash()``)."""
    code = (
        f"import {shard_impl.__name__} as m; "
        "print(m.inbox_collection_batch(['alice', 'bob', '用户'], 0, 10), m.partition_of('g1', 12))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    names = shard.inbox_collection_batch(["alice", "bob", "用户"], 0, 10)
    expected = f"{names} {shard.partition_of('g1', 12)}\n"
    assert outputs == {expected}
