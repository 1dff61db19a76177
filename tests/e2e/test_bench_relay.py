"""A few seconds of the load generator against the relay baseline (``benchmarks/load/relay.py``).

The relay is a separate process the generator knows only by URL, driven by the same
scenarios as a sandcat server. The assertions are about correctness (every message acked,
nothing lost, duplicated or reordered, every group member served), never about speed.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.load import scenarios
from benchmarks.load.scenarios import Context, Timing
from tests.e2e.bench_targets import relay_target, small_one_to_one


async def test_relay_one_to_one_and_group_have_no_loss_duplicates_or_reordering(
    tmp_path: Path,
) -> None:
    async with relay_target(tmp_path, users=6) as (target, accounts):
        ctx = Context(target, workers=2, timing=Timing(warmup=0.2, measure=0.5, drain=10.0))
        await small_one_to_one(ctx, accounts)
        groups = await scenarios.make_groups(ctx, accounts, [5])
        fanout = await scenarios.group_fanout(ctx, accounts, groups, burst_deliveries=40, repeats=1)
    assert len({a.id for a in accounts}) == len(accounts)
    rows = fanout["5"]
    assert [r["mode"] for r in rows] == ["single", "burst"]
    for row in rows:
        assert row["acked"] == row["messages"] and row["ack_errors"] == 0, row
        assert row["missing"] == 0 and row["deliveries"] == row["messages"] * 4, row
        assert row["order_violations"] == 0, row
    assert "server_cpu_us_per_unit" in rows[1]  # the relay PID was watched (the value may be
    # None: a burst this small can take less than one clock tick of CPU)
