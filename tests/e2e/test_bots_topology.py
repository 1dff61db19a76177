"""Bots' webhook workers on the distributed topology with a second msg-server: each bot has
one worker (its lease in PostgreSQL), so every message is POSTed once; and when the
worker's msg-server is killed in the middle of a failing delivery, the other msg-server
takes the lease over and delivers it."""

from __future__ import annotations

import secrets
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest

from sandcat.admin import run_admin
from sandcat.config import load_config
from tests.client import Api, Socket, until
from tests.cluster import Cluster, LogCodes
from tests.e2e.test_bots import Receiver, acked, friends_with_bot, new_bot, receiver, verify
from tests.services import Services

__all__ = ["receiver"]  # the webhook receiver fixture of test_bots


async def _holder(real_services: Services, cluster: Cluster, bot_id: str) -> str:
    """The process whose worker holds the bot's lease (a worker's owner id is host-pid)."""
    database = cluster.topology.base_env["SANDCAT__DB__POSTGRES__DATABASE"]
    dsn = urlunsplit(urlsplit(real_services.pg_dsn)._replace(path="/" + database))
    conn = await asyncpg.connect(dsn)
    try:
        owner = str(await conn.fetchval("SELECT lease_owner FROM bots WHERE id = $1", bot_id))
    finally:
        await conn.close()
    procs = cluster.topology.procs.items()
    return next((name for name, proc in procs if owner.endswith(f"-{proc.pid}")), owner)


@pytest.mark.timeout(180)  # about 20 s here, the topology included
async def test_one_worker_per_bot_and_a_crash_loses_nothing(
    cluster: Cluster,
    real_services: Services,
    receiver: Receiver,
    session: aiohttp.ClientSession,
) -> None:
    api = Api(session, cluster.api_base, LogCodes(cluster.log), tag=secrets.token_hex(4))
    env = cluster.topology.base_env
    config = load_config(
        None, environ={k: v for k, v in env.items() if k.startswith("SANDCAT__")}
    ).config

    async def admin(op: str, args: dict[str, Any]) -> Any:
        return await run_admin(config, op, args)

    topology = cluster.topology
    # The first msg-server, too, retries its failing delivery until it is killed: with the
    # cluster's 3 quick attempts it could dead-letter the message before the kill lands on
    # a loaded machine, and then no worker would owe it any more.
    topology.kill("msg-server")
    topology.restart("msg-server", {"SANDCAT__BOTS__WEBHOOK_ATTEMPTS": "1000"})
    bot = await new_bot(admin, receiver.url)

    async def held_by(name: str) -> bool:
        return await _holder(real_services, cluster, bot["id"]) == name

    await until(lambda: held_by("msg-server"), 20, "the msg-server took the bot")
    # A second msg-server that retries long enough to be the one that delivers below.
    topology.specs["msg-server-2"] = ("msg-server", {"SANDCAT__BOTS__WEBHOOK_ATTEMPTS": "1000"})
    topology.restart("msg-server-2")
    try:
        alice = await api.new_user("alice", "alice@example.com")
        await friends_with_bot(api, alice, bot)
        sock = await Socket.connect(session, alice)
        sent = []
        for i in range(10):
            local = f"m{i}"
            await sock.send(send_id=alice.id, receiver_id=bot["id"], local_id=local, content=b"x")
            sent.append(await acked(sock, local))
        await until(lambda: set(receiver.delivered) == set(sent), 20, "all ten delivered")
        assert receiver.posted() == sent  # in order, each once: one worker for the bot
        for headers, raw in receiver.posts:
            verify(bot["secret"], headers, raw)

        receiver.down = True
        await sock.send(send_id=alice.id, receiver_id=bot["id"], local_id="crash", content=b"y")
        crash = await acked(sock, "crash")
        await until(lambda: receiver.posted()[-1] == crash, 20, "a failing attempt")
        topology.kill("msg-server")  # SIGKILL: nothing releases its lease, it runs out
        await until(lambda: held_by("msg-server-2"), 20, "the other msg-server took over")
        receiver.down = False
        await until(lambda: receiver.delivered[-1:] == [crash], 20, "delivered after the crash")
        assert receiver.delivered.count(crash) == 1
        await sock.close()
    finally:
        topology.kill("msg-server-2")
        del topology.procs["msg-server-2"], topology.specs["msg-server-2"]
        if topology.procs["msg-server"].poll() is not None:
            topology.restart("msg-server")
