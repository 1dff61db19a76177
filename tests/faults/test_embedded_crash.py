"""Embedded mode: ``sandcat serve`` killed with SIGKILL during a stream (one-to-one and group
fan-out), started again on the same data folder, and the same checks as the distributed
faults: every acked message stored exactly once, pushes equal to the store, each sender's
messages in seq order, every seq hole explained."""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from scripts import topology as topology_mod
from tests.client import Api, until
from tests.faults.conftest import TailCodes
from tests.faults.harness import Stream
from tests.faults.test_distributed_faults import run_through
from tests.process import OPEN_LIMITS, embedded_env

pytestmark = pytest.mark.timeout(180)


class Server:
    """One embedded ``sandcat serve`` process on fixed ports and a data folder."""

    def __init__(self, data: Path, log: Path) -> None:
        self.api_port = topology_mod.free_port()
        self.ws_port = topology_mod.free_port()
        self.log = log
        self.env = {
            **embedded_env(data, self.api_port, self.ws_port),
            "SANDCAT__SERVER__JWT_SECRET": secrets.token_urlsafe(40),
            "SANDCAT__LIMITS__GROUP_INVITE_STRANGERS": "true",
            **OPEN_LIMITS,
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "sandcat", "serve"], env=self.env, stderr=sink
            )

    async def ready(self, session: aiohttp.ClientSession) -> None:
        async def answers() -> bool:
            assert self.proc is not None and self.proc.poll() is None, "the server exited"
            try:
                async with session.get(f"{self.base}/health") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        await until(answers, 30, "the embedded server answers /health")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[Server]:
    server = Server(tmp_path / "data", tmp_path / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_sigkill_during_a_stream_and_restart(
    embedded: Server, session: aiohttp.ClientSession
) -> None:
    await embedded.ready(session)
    api = Api(session, embedded.base, TailCodes(embedded.log))

    async def inject(stream: Stream) -> None:
        embedded.kill()
        embedded.start()
        await embedded.ready(session)

    await run_through(api, session, inject)
