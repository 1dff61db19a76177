"""Fixtures of the fault suite: services it may stop and start, and one distributed topology.

``make test-faults`` (and ``scripts/test.sh``, after its first pytest pass) hand over the run
dir of services they started in ``SANDCAT_FAULTS_RUN_DIR``; without it the suite starts its
own in a temporary run dir and stops them at the end. Either way the tests stop and restart
single services on that run dir (``scripts/services.py stop NAME`` / ``start NAME``).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from scripts import provision
from tests.client import Api, CodeBook, User
from tests.cluster import Cluster, start_cluster
from tests.faults.harness import TALLY
from tests.services import ENV_KEYS, Services


@dataclass
class Backends:
    """The services of this run and a way to stop and restart each one."""

    run_dir: Path
    services: Services

    async def stop(self, name: str) -> None:
        await asyncio.to_thread(provision.stop_services, self.run_dir, [name])

    async def start(self, name: str) -> None:
        await asyncio.to_thread(provision.start_services, [name], self.run_dir)

    async def restart(self, name: str) -> None:
        await self.stop(name)
        await self.start(name)


def _read_env(run_dir: Path) -> Services:
    env: dict[str, str] = {}
    for line in (run_dir / "services.env").read_text().splitlines():
        key, _, value = line.partition("=")
        env[key] = value
    return Services(*(env[key] for key in ENV_KEYS))


@pytest.fixture(scope="session")
def backends() -> Iterator[Backends]:
    given = os.environ.get("SANDCAT_FAULTS_RUN_DIR")
    if given:
        yield Backends(Path(given), _read_env(Path(given)))
        return
    run_dir = Path(tempfile.mkdtemp(prefix="sandcat-faults-"))
    provision.start_services(None, run_dir)
    try:
        yield Backends(run_dir, _read_env(run_dir))
    finally:
        provision.stop_services(run_dir)


@pytest.fixture(scope="session")
def real_services(backends: Backends) -> Services:
    """The faults' own services (the suite stops and restarts them)."""
    return backends.services


@pytest.fixture(scope="session")
def fcluster(real_services: Services, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """api + two gateways + msg-server; strangers may chat and be put into groups, so the
    streams need no friendships."""
    yield from start_cluster(
        real_services,
        tmp_path_factory,
        {
            "SANDCAT__SERVER__ALLOW_STRANGER_MESSAGES": "true",
            "SANDCAT__LIMITS__GROUP_INVITE_STRANGERS": "true",
            # A gateway killed between allocating seqs and publishing leaves them pending:
            # released after this long (default 600 s; docs/reliability.md).
            "SANDCAT__KAFKA__CONSUMER__ABANDON_AFTER_SECONDS": "20",
            # Every client is on 127.0.0.1: 200 of them end on one gateway.
            "SANDCAT__LIMITS__CONNECTIONS_PER_IP": "10000",
            "SANDCAT__LIMITS__HTTP_CONNECTIONS_PER_IP": "10000",
        },
    )


class TailCodes(CodeBook):
    """Verification codes from the cluster log, read incrementally (hundreds of sign-ups)."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._offset = 0
        self._partial = b""

    async def wait(self, email: str, timeout: float = 20.0) -> str:
        async with asyncio.timeout(timeout):
            while email not in self.codes:
                with self.path.open("rb") as fh:
                    fh.seek(self._offset)
                    chunk = fh.read()
                self._offset += len(chunk)
                *lines, self._partial = (self._partial + chunk).split(b"\n")
                for line in lines:
                    self.feed(line.decode(errors="replace"))
                if email not in self.codes:
                    await asyncio.sleep(0.05)
            return self.codes.pop(email)


@pytest.fixture(scope="session")
def codes_tail(fcluster: Cluster) -> TailCodes:
    return TailCodes(fcluster.log)


@pytest.fixture
async def fapi(
    fcluster: Cluster, codes_tail: TailCodes, session: aiohttp.ClientSession
) -> AsyncIterator[Api]:
    yield Api(session, fcluster.api_base, codes_tail, tag=secrets.token_hex(3))


async def new_users(api: Api, count: int, prefix: str, parallel: int = 16) -> list[User]:
    """``count`` registered and logged-in users, ``parallel`` sign-ups at a time."""
    gate = asyncio.Semaphore(parallel)

    async def one(index: int) -> User:
        async with gate:
            return await api.new_user(f"{prefix}{index}", f"{prefix}{index}@example.com")

    return list(await asyncio.gather(*(one(i) for i in range(count))))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TALLY["faults"]:
        terminalreporter.write_line(
            "faults: {faults} injected, {acked} messages acked, {lost} lost, "
            "{duplicates} stored twice".format(**TALLY)
        )
