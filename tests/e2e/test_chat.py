"""Two users over real sockets: register, log in, chat, go offline, pull, resend."""

from __future__ import annotations

import aiohttp

from tests.client import Api, Socket, alice_and_bob


async def test_chat_both_ways_with_acks_and_seqs(api: Api, session: aiohttp.ClientSession) -> None:
    alice, bob = await alice_and_bob(api)
    a = await Socket.connect(session, alice)
    b = await Socket.connect(session, bob)

    await a.send(
        send_id=alice.id,
        receiver_id=bob.id,
        local_id="l1",
        msg_type=0,
        content_type=1,
        content=b"hi bob",
        create_time=123,
        platform=0,
    )
    ack = await a.recv_until(lambda m: m["msg_type"] == 24)
    assert ack["local_id"] == "l1" and ack["content_type"] == 1 and ack["content"] == b""
    assert len(ack["server_id"]) == 21 and ack["send_time"] > 0
    assert ack["send_seq"] == 1 and ack["seq"] == 0

    got = await b.recv_until(lambda m: m["msg_type"] == 0)
    assert got["content"] == b"hi bob" and got["send_id"] == alice.id
    assert got["seq"] == 2 and got["server_id"] == ack["server_id"]
    assert got["send_seq"] == 1 and got["create_time"] == 123

    # Bob answers with an empty send_id (the server fills in the connection's user).
    await b.send(send_id="", receiver_id=alice.id, local_id="r1", msg_type=0, content=b"hey")
    back = await a.recv_until(lambda m: m["msg_type"] == 0)
    assert back["send_id"] == bob.id and back["seq"] == 2 and back["content"] == b"hey"
    ack_b = await b.recv_until(lambda m: m["msg_type"] == 24)
    assert ack_b["send_seq"] == 1

    _, seqs = await api.call("GET", f"/api/message/seq/{alice.id}", token=alice.token)
    assert seqs == {"seq": 2, "send_seq": 1}
    await a.close()
    await b.close()


async def test_offline_messages_are_pulled_in_order(
    api: Api, session: aiohttp.ClientSession
) -> None:
    alice, bob = await alice_and_bob(api)
    a = await Socket.connect(session, alice)
    for i in range(20):
        await a.send(receiver_id=bob.id, local_id=f"m{i}", msg_type=0, content=f"n{i}".encode())
    acks = [await a.recv_until(lambda m: m["msg_type"] == 24) for _ in range(20)]
    assert [ack["send_seq"] for ack in acks] == list(range(1, 21))  # per-sender FIFO

    _, seqs = await api.call("GET", f"/message/seq/{bob.id}", token=bob.token)
    assert seqs == {"seq": 21, "send_seq": 0}
    _, pulled = await api.call(
        "POST",
        "/api/message",
        token=bob.token,
        json={"user_id": bob.id, "send_start": 0, "send_end": 0, "start": 1, "end": 21},
    )
    assert [m["seq"] for m in pulled] == list(range(2, 22))
    assert [bytes(m["content"]) for m in pulled] == [f"n{i}".encode() for i in range(20)]
    first = pulled[0]
    assert list(first) == [
        "send_id",
        "receiver_id",
        "local_id",
        "server_id",
        "create_time",
        "send_time",
        "seq",
        "msg_type",
        "content_type",
        "content",
        "is_read",
        "group_id",
        "platform",
        "avatar",
        "nickname",
        "related_msg_id",
        "send_seq",
    ]
    assert first["related_msg_id"] is None and first["avatar"] == "" and first["platform"] == 0

    # A partial range, and the sender's own outbox with seq zeroed.
    _, part = await api.call(
        "POST",
        "/message",
        token=bob.token,
        json={"user_id": bob.id, "send_start": 0, "send_end": 0, "start": 5, "end": 8},
    )
    assert [m["seq"] for m in part] == [6, 7, 8]
    _, sent = await api.call(
        "POST",
        "/message",
        token=alice.token,
        json={"user_id": alice.id, "send_start": 10, "send_end": 20, "start": 0, "end": 0},
    )
    assert [m["send_seq"] for m in sent] == list(range(11, 21))
    assert all(m["seq"] == 0 for m in sent)

    # The client deletes what it has processed.
    await api.call(
        "DELETE", "/message", token=bob.token, json={"user_id": bob.id, "msg_id": [1, 2]}
    )
    _, rest = await api.call(
        "POST",
        "/message",
        token=bob.token,
        json={"user_id": bob.id, "send_start": 0, "send_end": 0, "start": 0, "end": 20},
    )
    assert [m["seq"] for m in rest] == list(range(3, 21))
    await a.close()


async def test_a_pull_longer_than_a_page_streams_whole_and_in_order(
    api: Api, session: aiohttp.ClientSession
) -> None:
    """The server reads and writes a pull page by page (256 copies): a range of several
    pages, both boxes at once, comes back whole, each copy once, oldest first; ``limit``
    (opt-in paging) still caps it."""
    alice, bob = await alice_and_bob(api)
    a = await Socket.connect(session, alice)
    b = await Socket.connect(session, bob)
    for i in range(300):
        await a.send(receiver_id=bob.id, local_id=f"p{i}", content=f"a{i}".encode())
        await b.send(receiver_id=alice.id, local_id=f"q{i}", content=f"b{i}".encode())
    for sock in (a, b):
        for _ in range(300):
            await sock.recv_until(lambda m: m["msg_type"] == 24)
    body = {"user_id": bob.id, "start": 0, "end": 301, "send_start": 0, "send_end": 300}
    _, pulled = await api.call("POST", "/api/message", token=bob.token, json=body)
    assert len(pulled) == 601  # the friendship notice, 300 received, 300 sent
    keys = [(m["send_time"], m["seq"] or m["send_seq"], 0 if m["seq"] else 1) for m in pulled]
    assert keys == sorted(keys) and len(set(keys)) == 601
    assert sorted(m["seq"] for m in pulled if m["seq"]) == list(range(1, 302))
    assert [m["send_seq"] for m in pulled if not m["seq"]] == list(range(1, 301))
    _, capped = await api.call("POST", "/api/message", token=bob.token, json={**body, "limit": 300})
    assert capped == pulled[:300]
    await a.close()
    await b.close()


async def test_resend_is_idempotent(api: Api, session: aiohttp.ClientSession) -> None:
    alice, bob = await alice_and_bob(api)
    a = await Socket.connect(session, alice)
    b = await Socket.connect(session, bob)
    await a.send(receiver_id=bob.id, local_id="same", msg_type=0, content=b"once")
    first = await a.recv_until(lambda m: m["msg_type"] == 24)
    await b.recv_until(lambda m: m["msg_type"] == 0)
    await a.send(receiver_id=bob.id, local_id="same", msg_type=0, content=b"once")
    second = await a.recv_until(lambda m: m["msg_type"] == 24)
    assert (second["server_id"], second["send_time"], second["send_seq"]) == (
        first["server_id"],
        first["send_time"],
        first["send_seq"],
    )
    with_other = await api.call("GET", f"/message/seq/{bob.id}", token=bob.token)
    assert with_other[1]["seq"] == 2  # nothing new stored
    # An empty local_id is never deduplicated (calls, reads).
    await a.send(receiver_id=bob.id, local_id="", msg_type=0, content=b"x")
    await a.send(receiver_id=bob.id, local_id="", msg_type=0, content=b"x")
    acks = [await a.recv_until(lambda m: m["msg_type"] == 24) for _ in range(2)]
    assert [x["send_seq"] for x in acks] == [2, 3]
    _, seqs = await api.call("GET", f"/message/seq/{bob.id}", token=bob.token)
    assert seqs["seq"] == 4
    await a.close()
    await b.close()


async def test_multi_device_echo_and_acks(api: Api, session: aiohttp.ClientSession) -> None:
    alice, bob = await alice_and_bob(api)
    desktop = await Socket.connect(session, alice, platform=0)
    mobile = await Socket.connect(session, alice, platform=1)
    await desktop.send(
        receiver_id=bob.id, local_id="d1", msg_type=0, content=b"from desktop", platform=0
    )
    ack = await desktop.recv_until(lambda m: m["msg_type"] == 24)
    echo = await mobile.recv_until(lambda m: m["msg_type"] == 0)
    assert echo["seq"] == 0 and echo["send_seq"] == ack["send_seq"] == 1
    assert echo["content"] == b"from desktop"
    mobile_ack = await mobile.recv_until(lambda m: m["msg_type"] == 24)
    assert mobile_ack["send_seq"] == 1
    await desktop.close()
    await mobile.close()


async def test_knock_off_and_bad_tokens(api: Api, session: aiohttp.ClientSession) -> None:
    alice, bob = await alice_and_bob(api)
    first = await Socket.connect(session, alice, platform=1)
    second = await Socket.connect(session, alice, platform=1)
    assert await first.expect_close() == 4001
    # The new connection survives the knock-off and works, both ways.
    await second.send(receiver_id=bob.id, local_id="k", msg_type=0, content=b"still here")
    assert (await second.recv_until(lambda m: m["msg_type"] == 24))["send_seq"] == 1
    b = await Socket.connect(session, bob)
    await b.send(receiver_id=alice.id, local_id="back", msg_type=0, content=b"to the new one")
    got = await second.recv_until(lambda m: m["msg_type"] == 0)
    assert got["content"] == b"to the new one"
    await b.close()

    garbage = await Socket.connect(session, alice, token="not-a-token")
    assert await garbage.expect_close() == 4002
    # Bob's valid token used on Alice's URL.
    url = f"{alice.ws_addr}/{alice.id}/conn/{alice.id}/0/{bob.token}"
    stolen = Socket(await session.ws_connect(url))
    assert await stolen.expect_close() == 4002
    # A refresh token is not an access token.
    refresh = await Socket.connect(session, alice, token=alice.refresh_token)
    assert await refresh.expect_close() == 4002
    await second.close()


async def test_forged_send_id_and_unknown_receiver_get_error_acks(
    api: Api, session: aiohttp.ClientSession
) -> None:
    alice, bob = await alice_and_bob(api)
    a = await Socket.connect(session, alice)
    await a.send(send_id=bob.id, receiver_id=alice.id, local_id="f", msg_type=0, content=b"x")
    err = await a.recv_until(lambda m: m["msg_type"] == 24)
    assert err["content_type"] == 9 and b"send_id" in err["content"] and err["local_id"] == "f"
    await a.send(receiver_id="nobody", local_id="g", msg_type=0, content=b"x")
    err = await a.recv_until(lambda m: m["msg_type"] == 24)
    assert err["content_type"] == 9 and err["local_id"] == "g"
    for kind in (7, 8, 12, 24, 25, 26, 27, 2, 10):
        await a.send(receiver_id=bob.id, local_id=f"t{kind}", msg_type=kind)
        err = await a.recv_until(lambda m: m["msg_type"] == 24)
        assert err["content_type"] == 9, kind
    _, seqs = await api.call("GET", f"/message/seq/{bob.id}", token=bob.token)
    assert seqs == {"seq": 1, "send_seq": 0}
    await a.close()
