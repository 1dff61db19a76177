"""``examples/chat.py`` (the quickstart's WebSocket client) against a real embedded server."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.client import Api, CodeBook, befriend
from tests.conftest import StartServer

pytestmark = pytest.mark.embedded_only

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "chat.py"


async def run(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLE),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def line(proc: asyncio.subprocess.Process, timeout: float = 20.0) -> str:
    assert proc.stdout is not None
    return (await asyncio.wait_for(proc.stdout.readline(), timeout)).decode().strip()


async def test_the_chat_example_sends_and_receives(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    async with start_server() as srv:
        api = Api(session, f"http://127.0.0.1:{srv.api_port}", codes)
        alice = await api.new_user("alice", "alice@example.com")
        bob = await api.new_user("bob", "bob@example.com")
        common = ("--api", api.base, "--password", "pass-word-1")

        # Strangers: the default friend policy refuses, and the example says why.
        refused = await run(*common, "--account", alice.email, "--to", bob.id, "--text", "hi")
        assert await line(refused) == f"connected as {alice.id}"
        assert await line(refused) == "refused: the receiver is not your friend"
        assert await asyncio.wait_for(refused.wait(), 20) == 1

        await befriend(api, alice, bob)
        listener = await run(*common, "--account", bob.email, "--count", "1")
        try:
            assert await line(listener) == f"connected as {bob.id}"
            sender = await run(*common, "--account", alice.email, "--to", bob.id, "--text", "hi")
            assert await line(sender) == f"connected as {alice.id}"
            assert (await line(sender)).startswith("sent: server_id=")
            assert await asyncio.wait_for(sender.wait(), 20) == 0
            received = await line(listener)
            assert received.startswith(f"from {alice.id} (seq ")
            assert received.endswith("): hi")
            assert await asyncio.wait_for(listener.wait(), 20) == 0
        finally:
            if listener.returncode is None:
                listener.kill()
                await listener.wait()


async def test_the_chat_example_reports_a_wrong_password(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    async with start_server() as srv:
        api = Api(session, f"http://127.0.0.1:{srv.api_port}", codes)
        alice = await api.register("alice", "alice@example.com")
        proc = await run("--api", api.base, "--account", alice.email, "--password", "nope")
        assert (
            await line(proc) == "login refused (401): AccountOrPassword: wrong account or password"
        )
        assert await asyncio.wait_for(proc.wait(), 20) == 1
