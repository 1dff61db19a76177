"""``benchmarks.load.report``: the relay's own ceiling, and its p99 at 75 % of it, sit beside
sandcat's maximum."""

from __future__ import annotations

from typing import Any

from benchmarks.load.report import goal_notes, table_rows


def _probe(offered: float, delivered: float, p99: float) -> dict[str, Any]:
    return {
        "offered_per_s": offered,
        "delivered_per_s": delivered,
        "server_cpu_us_per_unit": 100.0,
        "ack_latency": {"p50_ms": 1.0, "p99_ms": p99},
        "e2e_latency": {"p50_ms": 1.0, "p90_ms": 2.0, "p99_ms": p99, "max_ms": p99},
        "lost": 0,
        "duplicates": 0,
        "order_violations": 0,
    }


def _one_to_one(top: float) -> dict[str, Any]:
    return {
        "users": 200,
        "senders": 50,
        "max_delivered_per_s": top,
        "at_75pct": [_probe(top * 0.75, top * 0.75, 20.0)],
        "probes": [_probe(top, top, 40.0)],
    }


def test_the_relays_own_maximum_is_reported_beside_sandcats() -> None:
    res: dict[str, Any] = {
        "one_to_one": _one_to_one(5000.0),
        "baseline": {
            "one_to_one": _one_to_one(5000.0),
            "one_to_one_max": _one_to_one(7250.0),
        },
    }
    rows = {metric: value for metric, value, _ in table_rows(res)}
    key = (
        "… relay baseline's own max sustained delivered msgs/s (same search); p99 ms at 75 % of it"
    )
    assert rows[key] == "7,250; 20.0"
    (note,) = [n for n in goal_notes({"native": res}) if "one-to-one max" in n]
    assert note.startswith("native: one-to-one max 5,000 delivered msgs/s")
    assert note.endswith("the same generator, sustained 7,250, with p99 20.0 ms at 75 % of that.")
    del res["baseline"]["one_to_one_max"]
    (note,) = [n for n in goal_notes({"native": res}) if "one-to-one max" in n]
    assert "relay" not in note


def test_the_distributed_group_goal_is_a_rate_not_cpu_efficiency() -> None:
    burst = {"mode": "burst", "deliveries_per_s": 11_450.0, "deliveries_per_core_s": 27_179.0}
    res: dict[str, Any] = {"group_fanout": {"1000": [burst]}}
    (dist,) = goal_notes({"distributed": res})
    assert dist == (
        "distributed: group of 1,000: 11,450 deliveries/s: falls short of the goal "
        "(≥ 30,000 for 1,000 members)."
    )
    (embedded,) = goal_notes({"native": res})
    assert "27,179 deliveries per server core-second" in embedded
