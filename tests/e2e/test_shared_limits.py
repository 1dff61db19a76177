"""Distributed mode: the login budget is one budget for every API process (counted in
Redis), not one per process, and a new process starts from it rather than from zero."""

from __future__ import annotations

from pathlib import Path

import aiohttp

from sandcat.ids import nanoid
from tests.client import Api, CodeBook
from tests.cluster import Cluster, LogCodes
from tests.process import serve

ROOT = Path(__file__).resolve().parents[2]


async def test_two_api_processes_share_the_failed_login_budget_of_an_account(
    cluster: Cluster, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    # A second api process of the same topology, with a budget of three failed logins
    # per account (the topology's own api process has a budget nobody reaches).
    tight = {
        **cluster.topology.base_env,
        "SANDCAT__LIMITS__LOGIN_PER_MINUTE_PER_ACCOUNT": "3",
        "SANDCAT__LIMITS__LOGIN_FAILURES_PER_MINUTE_PER_ACCOUNT_AND_IP": "1000",
    }
    first = Api(session, cluster.api_base, LogCodes(cluster.log))
    wrong = {"account": f"nobody-{nanoid(8)}", "password": "d3Jvbmc"}
    for _ in range(2):
        await first.call("POST", "/api/user/login", json=wrong, expect=401)
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
    async with serve(tmp_path / "a", ROOT / "config.yml", tight, role="api") as proc:
        second = Api(session, f"http://127.0.0.1:{proc.api_port}", CodeBook())
        await second.call("POST", "/api/user/login", json=wrong, expect=401)
        # Counted in this process alone it would be its first failure, not the fourth.
        _, body = await second.call("POST", "/api/user/login", json=wrong, expect=429)
        assert "failed logins for this account" in str(body)
    # A process started now (a restart) still refuses: the count outlived the process.
    async with serve(tmp_path / "b", ROOT / "config.yml", tight, role="api") as proc:
        again = Api(session, f"http://127.0.0.1:{proc.api_port}", CodeBook())
        await again.call("POST", "/api/user/login", json=wrong, expect=429)
