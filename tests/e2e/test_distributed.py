"""The distributed topology end to end: api + two gateways + msg-server as real processes
on real PostgreSQL, Redis, Kafka, FerretDB (MongoDB wire) and S3.

Users sit on different gateways; they register with codes from the api's log, befriend,
chat, group-chat and pull offline messages. Two failure basics: the msg-server dies
between storing a batch and committing its offsets, and a gateway dies and comes back.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import aiohttp
import pytest

from tests.client import Api, Socket, User, befriend, create_group, pull
from tests.cluster import Cluster, LogCodes

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(240)


@pytest.fixture
async def dapi(cluster: Cluster, session: aiohttp.ClientSession) -> Api:
    return Api(session, cluster.api_base, LogCodes(cluster.log))


async def _users_on_two_gateways(api: Api, tag: str) -> tuple[User, User]:
    a = await api.new_user(f"a{tag}", f"a{tag}@example.com")
    b = await api.new_user(f"b{tag}", f"b{tag}@example.com")
    if a.ws_addr == b.ws_addr:  # login round-robins over the live gateways
        await api.login(b)
    assert a.ws_addr != b.ws_addr
    return a, b


async def test_two_gateways_chat_friends_groups_and_sync(
    dapi: Api, session: aiohttp.ClientSession
) -> None:
    alice, bob = await _users_on_two_gateways(dapi, secrets.token_hex(3))
    await befriend(dapi, alice, bob)
    a = await Socket.connect(session, alice)
    b = await Socket.connect(session, bob)
    await a.send(receiver_id=bob.id, local_id="d1", content=b"across gateways")
    ack = await a.recv_until(lambda m: m["msg_type"] == 24, timeout=15)
    assert ack["content_type"] != 9 and ack["send_seq"] == 1
    got = await b.recv_until(lambda m: m["msg_type"] == 0, timeout=15)
    assert got["content"] == b"across gateways" and got["seq"] == 2  # 1 = the friend request

    await b.send(receiver_id=alice.id, local_id="d2", content=b"and back")
    back = await a.recv_until(lambda m: m["msg_type"] == 0, timeout=15)
    assert back["send_id"] == bob.id and back["content"] == b"and back"

    # Idempotent resend through the distributed pipeline.
    await a.send(receiver_id=bob.id, local_id="d1", content=b"across gateways")
    again = await a.recv_until(lambda m: m["msg_type"] == 24, timeout=15)
    assert (again["server_id"], again["send_seq"]) == (ack["server_id"], ack["send_seq"])

    # A group of three across both gateways.
    carol = await dapi.new_user(
        "carol" + secrets.token_hex(2), f"c{secrets.token_hex(3)}@example.com"
    )
    await befriend(dapi, alice, carol)  # a group takes only the owner's friends: Carol's seq 1
    invitation = await create_group(dapi, alice, [bob.id, carol.id], name="trio")
    gid = invitation["info"]["id"]
    await b.recv_until(lambda m: m["msg_type"] == 2, timeout=15)
    await a.send(receiver_id=gid, group_id=gid, local_id="g1", msg_type=1, content=b"hi all")
    group_ack = await a.recv_until(
        lambda m: m["msg_type"] == 24 and m["local_id"] == "g1", timeout=15
    )
    assert group_ack["content_type"] != 9
    to_bob = await b.recv_until(lambda m: m["msg_type"] == 1, timeout=15)
    assert to_bob["content"] == b"hi all" and to_bob["group_id"] == gid

    # Carol was offline: she pulls the invitation and the group message by seq.
    _, seqs = await dapi.call("GET", f"/api/message/seq/{carol.id}", token=carol.token)
    pulled = await pull(dapi, carol, start=1, end=seqs["seq"])
    assert [m["msg_type"] for m in pulled] == [2, 1]
    assert bytes(pulled[1]["content"]) == b"hi all"
    await a.close()
    await b.close()


async def test_msg_server_crash_between_store_and_commit(
    cluster: Cluster, dapi: Api, session: aiohttp.ClientSession
) -> None:
    alice, bob = await _users_on_two_gateways(dapi, secrets.token_hex(3))
    await befriend(dapi, alice, bob)
    topology = cluster.topology
    topology.kill("msg-server")
    a = await Socket.connect(session, alice)
    for i in range(20):
        await a.send(receiver_id=bob.id, local_id=f"c{i}", content=f"m{i}".encode())
    acks = [await a.recv_until(lambda m: m["msg_type"] == 24, timeout=15) for _ in range(20)]
    assert [x["send_seq"] for x in acks] == list(range(1, 21))  # acked by Kafka alone
    # Restart with a failpoint: die after storing the first batch, before committing it.
    topology.restart("msg-server", {"SANDCAT_FAILPOINT": "after_store_before_commit"}, wait=False)
    code = await asyncio.to_thread(topology.procs["msg-server"].wait, 60)
    assert code == 75  # the failpoint's exit: the batch is stored, its offsets are not
    topology.restart("msg-server")
    for _ in range(150):
        _, seqs = await dapi.call("GET", f"/api/message/seq/{bob.id}", token=bob.token)
        if seqs["seq"] >= 21:
            break
        await asyncio.sleep(0.2)
    pulled = await pull(dapi, bob, start=1, end=21)
    assert [m["seq"] for m in pulled] == list(range(2, 22))  # none lost, none twice
    assert [bytes(m["content"]) for m in pulled] == [f"m{i}".encode() for i in range(20)]
    await a.close()


async def test_gateway_restart_clients_converge(
    cluster: Cluster, dapi: Api, session: aiohttp.ClientSession
) -> None:
    alice, bob = await _users_on_two_gateways(dapi, secrets.token_hex(3))
    await befriend(dapi, alice, bob)
    topology = cluster.topology
    port = int(alice.ws_addr.rsplit(":", 1)[1].split("/")[0])
    name = next(
        n
        for n, (_, extra) in topology.specs.items()
        if extra.get("SANDCAT__WEBSOCKET__PORT") == str(port)
    )
    a = await Socket.connect(session, alice)
    b = await Socket.connect(session, bob)
    topology.kill(name)
    await a.expect_close(timeout=10)
    for i in range(5):
        await b.send(receiver_id=alice.id, local_id=f"o{i}", content=f"while down {i}".encode())
        await b.recv_until(lambda m: m["msg_type"] == 24, timeout=15)
    topology.restart(name)
    a = await Socket.connect(session, alice)  # the client reconnects to the same ws_addr
    await b.send(receiver_id=alice.id, local_id="after", content=b"back")
    # Like the web client: take pushes; a seq gap means "pull what is missing".
    received: dict[int, bytes] = {}
    async with asyncio.timeout(20):
        while b"back" not in received.values():
            frame = await a.recv_until(lambda m: m["msg_type"] == 0, timeout=15)
            received[frame["seq"]] = frame["content"]
    top = max(received)
    gaps = [seq for seq in range(2, top) if seq not in received]
    if gaps:
        for m in await pull(dapi, alice, start=min(gaps) - 1, end=max(gaps)):
            received[m["seq"]] = bytes(m["content"])
    expected = [f"while down {i}".encode() for i in range(5)] + [b"back"]
    assert [received[seq] for seq in range(2, top + 1)] == expected
    await a.close()
    await b.close()


async def test_knock_off_across_gateways(dapi: Api, session: aiohttp.ClientSession) -> None:
    """The same user and platform on another gateway closes the old socket with 4001."""
    alice, bob = await _users_on_two_gateways(dapi, secrets.token_hex(3))
    await befriend(dapi, alice, bob)
    first = await Socket.connect(session, alice, platform=1)
    await first.ready(alice)
    other = alice.ws_addr
    while alice.ws_addr == other:  # log in again until the round robin picks the other gateway
        await dapi.login(alice)
    second = await Socket.connect(session, alice, platform=1)
    await second.ready(alice)
    assert await first.expect_close(timeout=10) == 4001
    b = await Socket.connect(session, bob)
    await b.ready(bob)
    await b.send(receiver_id=alice.id, local_id="k", content=b"to the survivor")
    got = await second.recv_until(lambda m: m["msg_type"] == 0, timeout=15)
    assert got["content"] == b"to the survivor"
    await second.close()
    await b.close()


async def test_logout_on_the_api_is_seen_by_every_gateway_at_once(
    cluster: Cluster, dapi: Api, session: aiohttp.ClientSession
) -> None:
    """The api process raises the token generation; both gateways refuse the old token on
    the very next connect (no cache to expire), and the new login's token works on both."""
    alice = await dapi.new_user("gen", f"gen{secrets.token_hex(3)}@example.com")
    gateways = [f"ws://127.0.0.1:{port}/ws" for port in cluster.topology.ws_ports]
    for cycle in range(20):
        await dapi.login(alice)
        old = alice.token
        opened = []
        if cycle == 0:  # sockets open on both gateways before the logout are closed by it
            for platform, alice.ws_addr in enumerate(gateways):
                sock = await Socket.connect(session, alice, platform=platform)
                await sock.ready(alice)
                opened.append(sock)
        await dapi.call("DELETE", f"/api/user/logout/{alice.id}", token=old)
        for sock in opened:
            assert await sock.expect_close(timeout=15) == 4002
        for alice.ws_addr in gateways:
            sock = await Socket.connect(session, alice, token=old)
            assert await sock.expect_close() == 4002
        await dapi.login(alice)
        for alice.ws_addr in gateways:
            fresh = await Socket.connect(session, alice)
            await fresh.ready(alice)  # acked: the new token is accepted
            await fresh.close()
