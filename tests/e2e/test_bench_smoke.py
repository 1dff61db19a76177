"""A few seconds of the load generator against a real ``sandcat serve`` process.

The server is a separate process that the generator knows only by URL; users are
registered through the public API with codes read from the server's log. The assertions
are about correctness (nothing lost, duplicated or reordered), never about speed.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.load import scenarios
from benchmarks.load.api import LogCodes
from benchmarks.load.launch import Servers
from benchmarks.load.scenarios import Context, Target, Timing


async def test_one_to_one_smoke_has_no_loss_duplicates_or_reordering(tmp_path: Path) -> None:
    servers = Servers(tmp_path / "data", tmp_path / "logs")
    await servers.start(1)
    try:
        target = Target(tuple(servers.api), servers.pids)
        accounts = await scenarios.register_users(
            target.api[0], LogCodes(servers.log_path()), count=6, prefix="smoke", password="pw-1"
        )
        await scenarios.login_all(target, accounts)
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
    finally:
        servers.stop()
    probes = result["probes"]
    assert [p["offered_per_s"] for p in probes] == [50.0, 100.0, 150.0]
    for probe in probes:
        assert probe["sent"] > 0
        assert probe["acked"] == probe["sent"], probe
        assert probe["ack_errors"] == 0 and probe["reader_errors"] == []
        assert probe["lost"] == 0 and probe["duplicates"] == 0, probe
        assert probe["order_violations"] == 0 and probe["seq_gaps"] == 0, probe
        assert probe["e2e_latency"]["count"] > 0
        assert probe["server_cores"] is not None
