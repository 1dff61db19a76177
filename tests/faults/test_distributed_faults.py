"""Faults injected into the real distributed topology while a client stream runs.

Each test starts a stream (one-to-one senders and a group sender), waits for acks before the
fault, injects it, waits for acks after recovery, stops the stream and verifies it
(``tests/faults/harness.py``): every acked message stored exactly once in the receivers' and
the sender's boxes, pushes equal to the store, seqs in order, every seq hole explained.
"""

from __future__ import annotations

import asyncio
import base64
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from miniopy_async.api import Minio

from tests.client import Api, User, create_group, until
from tests.cluster import Cluster
from tests.faults.conftest import Backends, new_users
from tests.faults.harness import TALLY, Peer, Report, Stream, verify
from tests.services import Services

pytestmark = pytest.mark.timeout(240)

Inject = Callable[[Stream], Awaitable[None]]


async def run_through(
    api: Api,
    session: aiohttp.ClientSession,
    inject: Inject,
    *,
    pairs: int = 4,
    before: int = 30,
    after: int = 30,
    seq_jumps: int = 0,
    recovery: float = 120.0,
) -> Report:
    """``pairs`` one-to-one senders (each to its own receiver) plus one group sender to a
    group of every receiver; ``before`` acks, the fault, ``after`` acks, then verify.

    A quiet pair sends a few messages before the fault and none after it: its receiver gets
    nothing that would refresh its counters once the fault is over."""
    users = await new_users(api, 2 * pairs + 3, f"f{secrets.token_hex(2)}-")
    receivers, owner = users[pairs : 2 * pairs], users[2 * pairs]
    invitation = await create_group(api, owner, [m.id for m in receivers], name="faults")
    gid = str(invitation["info"]["id"])
    group_ids = tuple(u.id for u in receivers)
    peers = [Peer(api, session, user) for user in users]
    await asyncio.gather(*(peer.connect() for peer in peers))
    quiet = Stream(secrets.token_hex(3))
    quiet.add_sender(peers[-2], [(users[-1].id, (users[-1].id,), False)])
    await quiet.until_acked(5, 60, "from the quiet pair")
    await quiet.stop()
    stream = Stream(secrets.token_hex(3))
    for peer, receiver in zip(peers[:pairs], receivers, strict=True):
        stream.add_sender(peer, [(receiver.id, (receiver.id,), False)])
    stream.add_sender(peers[2 * pairs], [(gid, group_ids, True)])
    try:
        await stream.until_acked(before, 60, "before the fault")
        await inject(stream)
        TALLY["faults"] += 1
        await stream.until_acked(after, recovery, "after the fault")
    finally:
        await stream.stop()
    report = await verify(api, users, peers, stream, seq_jumps=seq_jumps)
    await verify(api, users, peers, quiet, seq_jumps=seq_jumps)
    await asyncio.gather(*(peer.close() for peer in peers))
    assert report.acked >= before + after
    return report


async def test_kafka_stopped_and_restarted_three_times(
    backends: Backends, fapi: Api, session: aiohttp.ClientSession
) -> None:
    async def inject(stream: Stream) -> None:
        for _ in range(3):
            await backends.stop("kafka")
            await backends.start("kafka")
            await stream.until_acked(5, 120, "after a Kafka restart")

    await run_through(fapi, session, inject)
    TALLY["faults"] += 2  # three restarts in all


async def test_msg_server_sigkill_mid_batch(
    fcluster: Cluster, fapi: Api, session: aiohttp.ClientSession
) -> None:
    topology = fcluster.topology

    async def inject(stream: Stream) -> None:
        await stream.until_acked(20, 30, "while the msg-server stores")  # batches in flight
        topology.kill("msg-server")  # SIGKILL
        await stream.until_acked(10, 30, "with no msg-server (acked by Kafka alone)")
        await asyncio.to_thread(topology.restart, "msg-server")

    await run_through(fapi, session, inject)


async def test_postgres_restarted(
    backends: Backends, fapi: Api, session: aiohttp.ClientSession
) -> None:
    async def inject(stream: Stream) -> None:
        await backends.restart("postgres")

    await run_through(fapi, session, inject)


async def test_mongo_wire_server_restarted(
    backends: Backends, fapi: Api, session: aiohttp.ClientSession
) -> None:
    async def inject(stream: Stream) -> None:
        await backends.restart("mongo")

    await run_through(fapi, session, inject)


async def _gateways_registered(api: Api, user: User) -> None:
    """Login answers again: the gateways renewed their leases (every 5 s) after Redis lost
    them (until then login has no ``ws_addr`` to give: 500, no gateway available)."""

    async def login_works() -> bool:
        status, _ = await api.call("POST", "/api/user/login", json=_login(user), expect=None)
        return status == 200

    await until(login_works, 30, "login finds a gateway again")


def _login(user: User) -> dict[str, str]:
    password = base64.b64encode(user.password.encode()).decode().rstrip("=")
    return {"account": user.email, "password": password}


async def test_redis_restarted(
    backends: Backends, fapi: Api, session: aiohttp.ClientSession
) -> None:
    """Redis keeps nothing on disk here: a restart loses every counter, presence entry and
    registry lease; seqs continue above everything issued (one segment jump per box)."""

    probe = await fapi.new_user("probe", "probe@example.com")

    async def inject(stream: Stream) -> None:
        await backends.restart("redis")
        await _gateways_registered(fapi, probe)

    await run_through(fapi, session, inject, seq_jumps=1)


async def test_redis_flushall(
    backends: Backends, fapi: Api, session: aiohttp.ClientSession
) -> None:
    probe = await fapi.new_user("probe", "probe@example.com")

    async def inject(stream: Stream) -> None:
        client = aioredis.Redis.from_url(backends.services.redis_url)
        try:
            await client.flushall()
        finally:
            await client.aclose()
        await _gateways_registered(fapi, probe)

    await run_through(fapi, session, inject, seq_jumps=1)


def _gateway_of(cluster: Cluster, ws_addr: str) -> str:
    port = ws_addr.rsplit(":", 1)[1].split("/", maxsplit=1)[0]
    topology = cluster.topology
    return str(
        next(
            name
            for name, (_, extra) in topology.specs.items()
            if extra.get("SANDCAT__WEBSOCKET__PORT") == port
        )
    )


async def test_gateway_killed_with_200_connected_clients(fcluster: Cluster, fapi: Api) -> None:
    """Clients of the killed gateway log in again (login's ``ws_addr`` names the live
    gateway), reconnect and sync; the stream to all 200 keeps going."""
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await _kill_a_gateway(fcluster, Api(session, fapi.base, fapi.codes, fapi.tag), session)


async def _kill_a_gateway(fcluster: Cluster, fapi: Api, session: aiohttp.ClientSession) -> None:
    clients = 200
    users = await new_users(fapi, clients + 4, f"g{secrets.token_hex(2)}-")
    receivers, senders = users[:clients], users[clients:]
    peers = [Peer(fapi, session, user, stay=True) for user in receivers]
    peers += [Peer(fapi, session, user) for user in senders]
    await asyncio.gather(*(peer.connect() for peer in peers))
    victim = _gateway_of(fcluster, receivers[0].ws_addr)
    on_victim = [p for p in peers[:clients] if _gateway_of(fcluster, p.user.ws_addr) == victim]
    assert len(on_victim) >= clients // 4  # login spreads the clients over both gateways
    stream = Stream(secrets.token_hex(3))
    for index, peer in enumerate(peers[clients:]):
        share = receivers[index::4]
        stream.add_sender(peer, [(u.id, (u.id,), False) for u in share])
    try:
        await stream.until_acked(50, 60, "before the gateway dies")
        fcluster.topology.kill(victim)  # SIGKILL
        TALLY["faults"] += 1

        def all_back() -> bool:
            return all(p.connected and p.reconnects > 0 for p in on_victim)

        await until(all_back, 60, f"{len(on_victim)} clients of {victim} reconnected")
        assert {_gateway_of(fcluster, p.user.ws_addr) for p in on_victim} == (
            {n for n in fcluster.topology.specs if n.startswith("gateway")} - {victim}
        )
        await stream.until_acked(100, 60, "after the clients moved")
    finally:
        await stream.stop()
    # A gateway killed between raising a receiver's segment and installing it in Redis
    # leaves that segment unused: one jump per box is allowed, as after a Redis loss.
    report = await verify(fapi, users, peers, stream, seq_jumps=1)
    await asyncio.gather(*(peer.close() for peer in peers))
    await asyncio.to_thread(fcluster.topology.restart, victim)
    assert report.acked >= 150


async def _upload(api: Api, user: User, chunks: AsyncIterator[bytes]) -> tuple[int, Any]:
    """``POST /api/file/upload`` with a multipart body sent as ``chunks`` arrive."""
    headers = {
        "Authorization": f"Bearer {user.token}",
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
    }
    async with api.session.post(
        f"{api.base}/api/file/upload", data=chunks, headers=headers
    ) as resp:
        if resp.content_type == "application/json":
            return resp.status, await resp.json()
        return resp.status, await resp.text()


BOUNDARY = "sandcat-fault-boundary"


def _multipart(content: bytes) -> tuple[bytes, bytes, bytes]:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="f.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head, content, f"\r\n--{BOUNDARY}--\r\n".encode()


async def _bucket(cluster: Cluster, services: Services) -> set[str]:
    endpoint = services.s3_endpoint.split("://", 1)[1]
    client = Minio(
        endpoint,
        access_key=services.s3_access_key,
        secret_key=services.s3_secret_key,
        secure=False,
        region=services.s3_region,
    )
    bucket = cluster.topology.base_env["SANDCAT__OSS__BUCKET"]
    try:
        return {str(o.object_name) async for o in client.list_objects(bucket, recursive=True)}
    finally:
        await client.close_session()  # type: ignore[no-untyped-call]


async def test_s3_down_during_an_upload(
    backends: Backends, fcluster: Cluster, fapi: Api, session: aiohttp.ClientSession
) -> None:
    """S3 stops while a client is sending a file: a clear error (the file store is
    unavailable), no object written; once S3 is back the same upload works. The message
    stream does not notice."""
    uploader = await fapi.new_user("up", "up@example.com")
    content = os.urandom(1 << 20)
    before = await _bucket(fcluster, backends.services)

    async def inject(stream: Stream) -> None:
        head, body, tail = _multipart(content)

        async def chunks() -> AsyncIterator[bytes]:
            yield head + body[: len(body) // 2]
            await backends.stop("s3")  # down while the upload is on its way
            yield body[len(body) // 2 :] + tail

        status, answer = await _upload(fapi, uploader, chunks())
        assert status >= 500 and answer["details"] == "the file store is unavailable", answer
        await backends.start("s3")

    await run_through(fapi, session, inject)
    assert await _bucket(fcluster, backends.services) == before  # nothing half-written

    async def whole() -> AsyncIterator[bytes]:
        yield b"".join(_multipart(content))

    status, key = await _upload(fapi, uploader, whole())
    assert status == 200
    _, back = await fapi.call("GET", f"/api/file/get/{key}")
    assert back == content
    assert await _bucket(fcluster, backends.services) == before | {key}
