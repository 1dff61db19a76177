"""A few seconds of the load generator against a real ``sandcat serve`` process.

The server is a separate process that the generator knows only by URL; users are
registered through the public API with codes read from the server's log. The assertions
are about correctness (nothing lost, duplicated or reordered), never about speed.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.load.scenarios import Context, Timing
from tests.e2e.bench_targets import sandcat_target, small_one_to_one


async def test_one_to_one_smoke_has_no_loss_duplicates_or_reordering(tmp_path: Path) -> None:
    async with sandcat_target(tmp_path, users=6) as (target, accounts):
        ctx = Context(target, workers=2, timing=Timing(warmup=0.5, measure=1.0, drain=10.0))
        await small_one_to_one(ctx, accounts)
