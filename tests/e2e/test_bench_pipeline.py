"""A few seconds of the pipelined one-to-one scenario against a real ``sandcat serve`` process
and against the relay baseline (``benchmarks/load/relay.py``).

One sender writes its messages back to back to one online receiver without waiting for
acks; both servers are separate processes the generator knows only by URL. The assertions
are about correctness (every message acked, nothing lost or duplicated, per-sender FIFO
kept), never about speed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.load import scenarios
from benchmarks.load.scenarios import Context
from tests.e2e.bench_targets import relay_target, sandcat_target

MESSAGES = 2000


def _assert_correct(result: dict[str, Any], repeats: int) -> None:
    assert result["messages"] == MESSAGES
    runs = result["runs"]
    assert len(runs) == repeats
    for run in runs:
        assert run["sent"] == MESSAGES and run["send_errors"] == 0, run
        assert run["acked"] == MESSAGES and run["ack_errors"] == 0, run
        assert run["unacked"] == 0 and run["duplicate_acks"] == 0, run
        assert run["delivered"] == MESSAGES and run["complete"], run
        assert run["lost"] == 0 and run["duplicates"] == 0, run
        assert run["order_violations"] == 0 and run["seq_gaps"] == 0, run
        assert run["reader_errors"] == [] and run["closed_by_server"] == 0, run
        assert run["e2e_latency"]["count"] == MESSAGES
        assert run["ack_latency"]["count"] == MESSAGES
        assert run["wall_seconds"] > 0
        assert "server_cpu_us_per_unit" in run  # the PIDs were watched (the value may be None:
        # a short run can take less than one clock tick of server CPU)


async def test_pipeline_against_sandcat_acks_and_delivers_everything_in_order(
    tmp_path: Path,
) -> None:
    async with sandcat_target(tmp_path, users=2) as (target, accounts):
        result = await scenarios.pipeline(
            Context(target, workers=2), accounts, messages=MESSAGES, repeats=2, stall=10.0
        )
    _assert_correct(result, repeats=2)


async def test_pipeline_against_the_relay_acks_and_delivers_everything_in_order(
    tmp_path: Path,
) -> None:
    async with relay_target(tmp_path, users=2) as (target, accounts):
        result = await scenarios.pipeline(
            Context(target, workers=2), accounts, messages=MESSAGES, repeats=1, stall=10.0
        )
    _assert_correct(result, repeats=1)
