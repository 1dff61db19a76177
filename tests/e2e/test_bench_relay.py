"""A few seconds of the load generator against the relay baseline (``benchmarks/load/relay.py``).

The relay is a separate process the generator knows only by URL, driven by the same
scenarios as a sandcat server. The assertions are about correctness (every message acked,
nothing lost, duplicated or reordered, every group member served), never about speed.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.load import scenarios
from benchmarks.load.api import Account
from benchmarks.load.launch import RelayServer
from benchmarks.load.scenarios import Context, Target, Timing


async def test_relay_one_to_one_and_group_have_no_loss_duplicates_or_reordering(
    tmp_path: Path,
) -> None:
    relay = RelayServer(tmp_path / "logs")
    accounts = [Account(id="", email=f"r{i}@bench.example.com", password="pw") for i in range(6)]
    try:
        await relay.start()
        target = Target(tuple(relay.api), relay.pids)
        await scenarios.login_all(target, accounts)
        ctx = Context(target, workers=2, timing=Timing(warmup=0.2, measure=0.5, drain=10.0))
        one = await scenarios.one_to_one(
            ctx,
            accounts,
            senders=4,
            start_rate=200.0,
            max_rate=200.0,
            slo_ms=10_000.0,
            repeats=1,
            find_max=False,
        )
        groups = await scenarios.make_groups(ctx, accounts, [5])
        fanout = await scenarios.group_fanout(ctx, accounts, groups, burst_deliveries=40, repeats=1)
    finally:
        relay.stop()
    assert len({a.id for a in accounts}) == len(accounts)
    probes = one["probes"]
    assert [p["offered_per_s"] for p in probes] == [50.0, 100.0, 150.0]
    for probe in probes:
        assert probe["sent"] > 0
        assert probe["acked"] == probe["sent"], probe
        assert probe["ack_errors"] == 0 and probe["reader_errors"] == []
        assert probe["lost"] == 0 and probe["duplicates"] == 0, probe
        assert probe["order_violations"] == 0 and probe["seq_gaps"] == 0, probe
        assert probe["e2e_latency"]["count"] > 0
        assert probe["server_cores"] is not None
    rows = fanout["5"]
    assert [r["mode"] for r in rows] == ["single", "burst"]
    for row in rows:
        assert row["acked"] == row["messages"] and row["ack_errors"] == 0, row
        assert row["missing"] == 0 and row["deliveries"] == row["messages"] * 4, row
        assert row["order_violations"] == 0, row
    assert "server_cpu_us_per_unit" in rows[1]  # the relay PID was watched (the value may be
    # None: a burst this small can take less than one clock tick of CPU)
