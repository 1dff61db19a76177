"""Micro-benchmarks: each compiled twin against its pure-Python reference.

Run with ``make bench-micro`` (never part of ``make test``). Each benchmark records a
correctness check (``extra_info["correct"]``) beside its timing and fails when it is false.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

from sandcat._native import framing, shard
from sandcat.protocol import bincode, payloads
from sandcat.protocol.msg import Msg
from sandcat.protocol.payloads import ReadPayload


def _compiled(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


CYTHON = _compiled("sandcat._native._framing")
RUST = _compiled("sandcat_native")
FRAMING: dict[str, ModuleType | None] = {"python": bincode, "cython": CYTHON}
SHARD: dict[str, ModuleType | None] = {"python": shard, "rust": RUST}
SIZES = {"100B": 100, "1KiB": 1024, "16KiB": 16 * 1024}


def _impl(table: dict[str, ModuleType | None], name: str) -> ModuleType:
    module = table[name]
    if module is None:
        pytest.skip(f"{name} twin not built")
    return module


def _run(benchmark: BenchmarkFixture, func: Callable[..., Any], *args: Any, expected: Any) -> None:
    result = benchmark(func, *args)
    benchmark.extra_info["correct"] = result == expected
    assert benchmark.extra_info["correct"]


def _msg(size: int) -> Msg:
    rng = random.Random(size)
    return Msg(
        send_id="01J4Z8Q6Y0S1VQW9M3K5T7B2XA",
        receiver_id="01J4Z8Q6Y0S1VQW9M3K5T7B2XB",
        local_id="5f0c8a2e-1d4b-4c6e-9a7f-3b2d1c0e9f8a",
        server_id="01J4Z8Q6Y0S1VQW9M3K5T7B2XC",
        create_time=1_716_000_000_000,
        send_time=1_716_000_000_123,
        seq=4242,
        msg_type=0,
        content_type=1,
        content=bytes(rng.randrange(32, 127) for _ in range(size)),
        group_id="",
        platform=0,
        avatar="avatars/01J4Z8Q6Y0S1VQW9M3K5T7B2XA.png",
        nickname="Sandcat",
        send_seq=17,
    )


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("impl", FRAMING)
def test_encode_msg(benchmark: BenchmarkFixture, impl: str, size: str) -> None:
    benchmark.group = f"encode_msg {size}"
    msg = _msg(SIZES[size])
    _run(benchmark, _impl(FRAMING, impl).encode_msg, msg, expected=bincode.encode_msg(msg))


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("impl", FRAMING)
def test_decode_msg(benchmark: BenchmarkFixture, impl: str, size: str) -> None:
    benchmark.group = f"decode_msg {size}"
    msg = _msg(SIZES[size])
    _run(benchmark, _impl(FRAMING, impl).decode_msg, bincode.encode_msg(msg), expected=msg)


def _ids(count: int) -> list[str]:
    rng = random.Random(count)
    return [f"01J4Z8Q6Y0S1VQ{rng.randrange(36**12):012d}" for _ in range(count)]


@pytest.mark.parametrize("impl", SHARD)
def test_inbox_collection_batch_10k(benchmark: BenchmarkFixture, impl: str) -> None:
    benchmark.group = "inbox_collection_batch 10k ids"
    ids = _ids(10_000)
    expected = shard.inbox_collection_batch(ids, 1_716_000_000_000, 10)
    _run(
        benchmark,
        _impl(SHARD, impl).inbox_collection_batch,
        ids,
        1_716_000_000_000,
        10,
        expected=expected,
    )


@pytest.mark.parametrize("impl", ["python", "cython"])
def test_encode_fanout_1k(benchmark: BenchmarkFixture, impl: str) -> None:
    benchmark.group = "encode_fanout 1k seqs, 1KiB content"
    module = importlib.import_module("sandcat._native.framing") if impl == "python" else CYTHON
    if module is None:
        pytest.skip("cython twin not built")
    msg = _msg(1024)
    seqs = list(range(1, 1001))
    expected = [bincode.encode_msg(msg.copy(seq=seq)) for seq in seqs]
    _run(benchmark, module.encode_fanout, msg, seqs, expected=expected)


@pytest.mark.parametrize("impl", ["python", "cython"])
def test_decode_read_100_seqs(benchmark: BenchmarkFixture, impl: str) -> None:
    benchmark.group = "decode_read 100 seqs"
    module = framing if impl == "python" else _impl({"cython": CYTHON}, impl)
    seqs = list(range(10_000, 10_100))
    user_id = "01J4Z8Q6Y0S1VQW9M3K5T7B2XA"
    data = len(seqs).to_bytes(8, "little") + b"".join(s.to_bytes(8, "little") for s in seqs)
    data += len(user_id).to_bytes(8, "little") + user_id.encode()
    _run(benchmark, module.decode_read, data, expected=ReadPayload(seqs, user_id))


@pytest.mark.parametrize("impl", ["python", "cython"])
def test_encode_strings_100_ids(benchmark: BenchmarkFixture, impl: str) -> None:
    benchmark.group = "encode_strings 100 ids"
    module = payloads if impl == "python" else _impl({"cython": CYTHON}, impl)
    ids = _ids(100)
    _run(benchmark, module.encode_strings, ids, expected=payloads.encode_strings(ids))
