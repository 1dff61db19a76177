"""``examples/chat.py`` (the quickstart's WebSocket client) against a real embedded server."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import aiohttp
import pytest

from sandcat import control
from scripts.topology import free_port
from tests.client import Api, CodeBook, Socket, User, apply_friend, befriend, until
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


async def test_the_echo_bot_answers(
    start_server: StartServer,
    session: aiohttp.ClientSession,
    codes: CodeBook,
    tmp_path: Path,
) -> None:
    """``examples/echo_bot.py`` as its docstring runs it: the server's webhook reaches it,
    it checks the signature and answers through ``POST /bot/message``."""
    port = free_port()
    async with start_server() as srv:
        api = Api(session, f"http://127.0.0.1:{srv.api_port}", codes)
        bot = await control.request(
            tmp_path / "data",
            "bot.create",
            {"name": "echo", "webhook": f"http://127.0.0.1:{port}/", "auto_accept": True},
        )
        env = {
            **os.environ,
            "SANDCAT_API": api.base,
            "BOT_TOKEN": bot["token"],
            "BOT_SECRET": bot["secret"],
            "PORT": str(port),
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(EXAMPLE.parent / "echo_bot.py"), env=env
        )
        try:

            async def listening() -> bool:
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    return False
                writer.close()
                return True

            await until(listening, 20, "the echo bot listens")
            alice = await api.new_user("alice", "alice@example.com")
            await apply_friend(api, alice, User(id=bot["id"], email="", password=""))
            sock = await Socket.connect(session, alice)
            await sock.recv_until(lambda m: m["msg_type"] == 11, timeout=15)  # accepted
            await sock.send(send_id=alice.id, receiver_id=bot["id"], content_type=1, content=b"hi")
            answer = await sock.recv_until(
                lambda m: m["msg_type"] == 0 and m["send_id"] == bot["id"], timeout=20
            )
            assert bytes(answer["content"]) == b"echo: hi"
            await sock.close()
        finally:
            proc.kill()
            await proc.wait()
