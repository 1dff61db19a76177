"""A few seconds of the load generator against a real ``sandcat serve`` process.

The server is a separate process that the generator knows only by URL; users are
registered through the public API with codes read from the server's log. The assertions
are about correctness (nothing lost, duplicated or reordered), never about speed.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.load import scenarios
from benchmarks.load.scenarios import Context, Timing
from tests.e2e.bench_targets import assert_clean_probes, sandcat_target


async def test_one_to_one_smoke_has_no_loss_duplicates_or_reordering(tmp_path: Path) -> None:
    async with sandcat_target(tmp_path, users=6) as (target, accounts):
        ctx = Context(target, workers=2, timing=Timing(warmup=0.5, measure=1.0, drain=10.0))
        result = await scenarios.one_to_one(
            ctx,
            accounts,
            senders=4,
            start_rate=200.0,
            max_rate=200.0,
            slo_ms=10_000.0,
            repeats=1,
            find_max=False,
        )
    assert_clean_probes(result["probes"], [50.0, 100.0, 150.0])
