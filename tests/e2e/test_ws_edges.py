"""WebSocket edges: JSON frames, Read, call relay, malformed and oversized frames."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
import pytest

from sandcat.server import Running
from sandcat.services.messages import MessageService
from tests import wire
from tests.client import Api, Socket, alice_and_bob, befriend


async def test_json_text_frames_are_accepted(api: Api, session: aiohttp.ClientSession) -> None:
    alice, bob = await alice_and_bob(api)
    a = await Socket.connect(session, alice)
    b = await Socket.connect(session, bob)
    frame = wire.msg(receiver_id=bob.id, local_id="j1", content=b"via json")
    frame["content"] = list(frame["content"])
    await a.ws.send_str(orjson.dumps(frame).decode())
    ack = await a.recv_until(lambda m: m["msg_type"] == 24)
    assert ack["local_id"] == "j1" and ack["send_seq"] == 1
    got = await b.recv_until(lambda m: m["msg_type"] == 0)
    assert got["content"] == b"via json"
    await a.close()
    await b.close()


async def test_read_marks_inbox_and_is_never_pushed(
    api: Api, session: aiohttp.ClientSession
) -> None:
    alice, bob = await alice_and_bob(api)
    a = await Socket.connect(session, alice)
    b = await Socket.connect(session, bob)
    for i in range(3):
        await a.send(receiver_id=bob.id, local_id=f"r{i}", content=b"x")
        await b.recv_until(lambda m: m["msg_type"] == 0)
    # The client leaves send_id empty on Read.
    await b.send(send_id="", msg_type=23, content=wire.read_payload([2, 4], bob.id))
    ack = await b.recv_until(lambda m: m["msg_type"] == 24)
    assert ack["content_type"] != 9
    _, pulled = await api.call(
        "POST",
        "/message",
        token=bob.token,
        json={"user_id": bob.id, "send_start": 0, "send_end": 0, "start": 1, "end": 4},
    )
    assert [m["is_read"] for m in pulled] == [True, False, True]
    await a.send(receiver_id=bob.id, local_id="after", content=b"y")
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1]["local_id"] != "after":
        seen.append(await a.recv())
    assert all(m["msg_type"] != 23 for m in seen)  # no Read (23) frame ever reached Alice
    await b.send(msg_type=23, content=b"\x01\x02")
    bad = await b.recv_until(lambda m: m["msg_type"] == 24)
    assert bad["content_type"] == 9
    await a.close()
    await b.close()


async def test_call_signalling_is_relayed_without_seqs(
    api: Api, session: aiohttp.ClientSession
) -> None:
    alice, bob = await alice_and_bob(api)
    a = await Socket.connect(session, alice)
    b = await Socket.connect(session, bob)
    await a.ready(alice)  # relayed signalling is best effort: only to registered sockets
    await b.ready(bob)
    await a.send(receiver_id=bob.id, local_id="call-1", msg_type=14, content_type=7)
    invite = await b.recv_until(lambda m: m["msg_type"] == 14)
    assert invite["seq"] == 0 and invite["local_id"] == "call-1" and invite["content_type"] == 7
    await b.send(receiver_id=alice.id, msg_type=21, content=b"v=0 sdp-answer")
    answer = await a.recv_until(lambda m: m["msg_type"] == 21)
    assert answer["seq"] == 0 and answer["content"] == b"v=0 sdp-answer"
    # Hang-up (20) is a stored call event with a seq.
    await a.send(receiver_id=bob.id, local_id="h", msg_type=20, content=(1500).to_bytes(8, "big"))
    hang = await b.recv_until(lambda m: m["msg_type"] == 20)
    assert hang["seq"] == 2 and int.from_bytes(hang["content"], "big") == 1500
    _, seqs = await api.call("GET", f"/message/seq/{bob.id}", token=bob.token)
    assert seqs["seq"] == 2  # the relayed invite and answer consumed nothing
    await a.close()
    await b.close()


@pytest.mark.embedded_only
async def test_malformed_frames_get_error_acks_then_close(
    api: Api, session: aiohttp.ClientSession, server: Running
) -> None:
    alice, bob = await alice_and_bob(api)
    a = await Socket.connect(session, alice)
    await a.ws.send_bytes(b"\x01\x02\x03")
    err = await a.recv_until(lambda m: m["msg_type"] == 24)
    assert err["content_type"] == 9 and b"malformed" in err["content"]
    await a.ws.send_str("{not json")
    assert (await a.recv_until(lambda m: m["msg_type"] == 24))["content_type"] == 9
    # The connection still works after garbage.
    await a.send(receiver_id=bob.id, local_id="ok", content=b"fine")
    assert (await a.recv_until(lambda m: m["msg_type"] == 24))["send_seq"] == 1
    for _ in range(10):
        await a.ws.send_bytes(b"\xff")
    assert await a.expect_close() == 1007
    assert server.apps.gateway_edge is not None and server.apps.gateway_edge.bad_frames >= 10
    # The server keeps serving others.
    b = await Socket.connect(session, bob)
    await b.send(receiver_id=alice.id, local_id="still", content=b"up")
    assert (await b.recv_until(lambda m: m["msg_type"] == 24))["send_seq"] == 1
    await b.close()


async def test_oversized_frame_closes_1009(api: Api, session: aiohttp.ClientSession) -> None:
    alice, bob = await alice_and_bob(api)
    a = await Socket.connect(session, alice)
    await a.send(receiver_id=bob.id, content=b"x" * 70000)
    assert await a.expect_close() == 1009


async def test_ping_right_after_connect(api: Api, session: aiohttp.ClientSession) -> None:
    alice = await api.new_user("alice", "alice@example.com")
    url = f"{alice.ws_addr}/{alice.id}/conn/{alice.id}/0/{alice.token}"
    ws = await session.ws_connect(url, autoping=False)
    frame = await ws.receive(timeout=5)
    assert frame.type == aiohttp.WSMsgType.PING
    await ws.close()


async def test_many_concurrent_senders_keep_per_sender_order(
    api: Api, session: aiohttp.ClientSession
) -> None:
    users = [await api.new_user(f"u{i}", f"u{i}@example.com") for i in range(4)]
    sink = users[0]
    for user in users[1:]:
        await befriend(api, sink, user)  # the sink's receive seqs 1-3
    socks = [await Socket.connect(session, u) for u in users]

    async def blast(sock: Socket, n: int) -> list[int]:
        for i in range(n):
            await sock.send(receiver_id=sink.id, local_id=f"x{i}", content=b"m")
        acks = [await sock.recv_until(lambda m: m["msg_type"] == 24) for _ in range(n)]
        return [ack["send_seq"] for ack in acks]

    results = await asyncio.gather(*(blast(s, 50) for s in socks[1:]))
    for seqs in results:
        assert seqs == list(range(1, 51))
    _, pulled = await api.call(
        "POST",
        "/message",
        token=sink.token,
        json={"user_id": sink.id, "send_start": 0, "send_end": 0, "start": 3, "end": 153},
    )
    assert sorted(m["seq"] for m in pulled) == list(range(4, 154))
    for sock in socks:
        await sock.close()


@pytest.mark.embedded_only
async def test_a_frame_whose_handling_fails_gets_an_error_ack_and_the_next_is_served(
    api: Api, session: aiohttp.ClientSession, server: Running, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A backend failing on one frame (not a refusal) answers that frame with an error ack;
    the frames queued behind it are still handled, in order, on the same connection."""
    alice, bob = await alice_and_bob(api)
    real_accept = MessageService.accept

    async def failing(self: MessageService, user_id: str, msg: Any) -> Any:
        if msg.local_id == "boom":
            raise RuntimeError("the backend failed")
        return await real_accept(self, user_id, msg)

    monkeypatch.setattr(MessageService, "accept", failing)
    a = await Socket.connect(session, alice)
    b = await Socket.connect(session, bob)
    for local_id in ("boom", "after-1", "after-2"):
        await a.send(receiver_id=bob.id, local_id=local_id, content=local_id.encode())
    acks = [await a.recv_until(lambda m: m["msg_type"] == 24) for _ in range(3)]
    assert [ack["local_id"] for ack in acks] == ["boom", "after-1", "after-2"]
    assert acks[0]["content_type"] == 9 and b"resend" in acks[0]["content"]
    assert [ack["content_type"] for ack in acks[1:]] == [0, 0]
    got = [await b.recv_until(lambda m: m["msg_type"] == 0) for _ in range(2)]
    assert [m["content"] for m in got] == [b"after-1", b"after-2"]
    await a.close()
    await b.close()
