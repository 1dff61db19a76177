"""What the load-generator tests drive: a real ``sandcat serve`` process or the relay
baseline, each a separate process the generator knows only by URL, with logged-in users;
and the correctness checks the open-loop one-to-one probes share."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from benchmarks.load import scenarios
from benchmarks.load.api import Account, LogCodes
from benchmarks.load.launch import RelayServer, Servers
from benchmarks.load.scenarios import Context, Target


@asynccontextmanager
async def sandcat_target(tmp_path: Path, users: int) -> AsyncIterator[tuple[Target, list[Account]]]:
    """One embedded server; users registered through the public API (codes from its log)."""
    servers = Servers(tmp_path / "data", tmp_path / "logs")
    await servers.start(1)
    try:
        target = Target(tuple(servers.api), servers.pids)
        accounts = await scenarios.register_users(
            target.api[0], LogCodes(servers.log_path()), count=users, prefix="t", password="pw-1"
        )
        await scenarios.login_all(target, accounts)
        yield target, accounts
    finally:
        servers.stop()


@asynccontextmanager
async def relay_target(tmp_path: Path, users: int) -> AsyncIterator[tuple[Target, list[Account]]]:
    """The relay baseline; it logs anyone in."""
    relay = RelayServer(tmp_path / "logs")
    accounts = [
        Account(id="", email=f"r{i}@bench.example.com", password="pw") for i in range(users)
    ]
    try:
        await relay.start()
        target = Target(tuple(relay.api), relay.pids)
        await scenarios.login_all(target, accounts)
        yield target, accounts
    finally:
        relay.stop()


async def small_one_to_one(ctx: Context, accounts: Sequence[Account]) -> None:
    """A short open-loop one-to-one curve (4 senders, up to 200 msgs/s: probes at 50, 100
    and 150 msgs/s), checked with ``assert_clean_probes``."""
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
    assert_clean_probes(result["probes"])


def assert_clean_probes(probes: Sequence[dict[str, Any]]) -> None:
    """Every probe acked everything it sent, lost, duplicated and reordered nothing."""
    assert [p["offered_per_s"] for p in probes] == [50.0, 100.0, 150.0]
    for probe in probes:
        assert probe["sent"] > 0
        assert probe["acked"] == probe["sent"], probe
        assert probe["ack_errors"] == 0 and probe["reader_errors"] == []
        assert probe["lost"] == 0 and probe["duplicates"] == 0, probe
        assert probe["order_violations"] == 0 and probe["seq_gaps"] == 0, probe
        assert probe["e2e_latency"]["count"] > 0
        assert probe["server_cores"] is not None
