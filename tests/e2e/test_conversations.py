"""Server-side conversations (docs/protocol.md, "Conversations"): kept by the message stores
as they store, listed (whole or since a time), flagged, read by a Read frame or over HTTP;
a change reaches the user's v2 devices as ``conversation.updated``. Runs against the
embedded server and, with ``SANDCAT_E2E_TARGET=distributed``, the distributed topology
(where the msg-server stores after the ack: the listings are waited for)."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests import wire
from tests.client import (
    Api,
    Socket,
    User,
    alice_and_bob,
    alice_and_two_friends,
    create_group,
    until,
)


async def _conversations(api: Api, user: User, since: int = 0) -> dict[str, dict[str, Any]]:
    _, body = await api.call("GET", f"/api/conversation?since={since}", token=user.token)
    return {conv["id"]: conv for conv in body["conversations"]}


async def _seq_reaches(api: Api, user: User, peer: str, seq: int) -> None:
    async def reached() -> bool:
        conv = (await _conversations(api, user)).get(peer)
        return conv is not None and conv["seq"] >= seq

    await until(reached, what=f"{user.id}: conversation with {peer} at seq {seq}")


async def _chat(sock: Socket, sender: User, to: str, texts: list[bytes], **extra: Any) -> None:
    """Send each text (its ``local_id`` is the text) and wait for its ack."""
    for text in texts:
        local = text.decode()

        def acked(m: dict[str, Any], local: str = local) -> bool:
            return bool(m["msg_type"] == 24 and m["local_id"] == local)

        await sock.send(send_id=sender.id, receiver_id=to, local_id=local, content=text, **extra)
        await sock.recv_until(acked)


async def test_one_to_one_counts_unread_and_a_read_frame_reaches_the_other_device(
    api: Api, session: aiohttp.ClientSession
) -> None:
    alice, bob = await alice_and_bob(api)
    before = await _conversations(api, bob)
    assert before[alice.id]["seq"] == 0 and before[alice.id]["last"] is None
    a = await Socket.connect(session, alice)
    phone = await Socket.connect(session, bob, platform=1, v2=True)
    desk = await Socket.connect(session, bob)  # the original client: no events
    await _chat(a, alice, bob.id, [b"one", b"two", "thr\u00e9e".encode()], content_type=1)
    await _seq_reaches(api, bob, alice.id, 3)
    conv = (await _conversations(api, bob))[alice.id]
    assert conv["kind"] == "single" and conv["unread"] == 3 and conv["read_seq"] == 0
    assert conv["last"]["preview"] == "thr\u00e9e" and conv["last"]["send_id"] == alice.id
    assert conv["last"]["content_type"] == 1 and conv["last"]["server_id"]
    # Sending marks the sender's own conversation read.
    mine = (await _conversations(api, alice))[bob.id]
    assert mine["seq"] == 3 and mine["unread"] == 0

    seqs = [(await desk.recv_until(lambda m: m["msg_type"] == 0))["seq"] for _ in range(3)]
    await desk.send(msg_type=23, content=wire.read_payload(seqs[:2], bob.id))
    event = await phone.event("conversation.updated", lambda d: d["id"] == alice.id)
    assert event["unread"] == 0 and event["read_seq"] == 3
    assert (await _conversations(api, bob))[alice.id]["unread"] == 0
    await desk.ready(bob)
    assert desk.events_seen() == []
    for sock in (a, phone, desk):
        await sock.close()


async def test_flags_and_incremental_sync(api: Api, session: aiohttp.ClientSession) -> None:
    alice, bob = await alice_and_bob(api)
    stranger = await api.new_user("carol", "carol@example.com")
    _, first = await api.call("GET", "/api/conversation", token=alice.token)
    assert [c["id"] for c in first["conversations"]] == [bob.id]
    later = await _conversations(api, alice, since=first["sync_time"] + 60_000)
    assert later == {}
    phone = await Socket.connect(session, alice, platform=1, v2=True)
    _, conv = await api.call(
        "PUT", f"/api/conversation/{bob.id}", token=alice.token, json={"pinned": True}
    )
    assert conv["pinned"] and not conv["muted"] and not conv["hidden"]
    event = await phone.event("conversation.updated", lambda d: d["pinned"])
    assert event["id"] == bob.id
    _, conv = await api.call(
        "PUT",
        f"/api/conversation/{bob.id}",
        token=alice.token,
        json={"muted": True, "hidden": True, "pinned": None},
    )
    assert conv["pinned"] and conv["muted"] and conv["hidden"]
    changed = await _conversations(api, alice, since=first["sync_time"])
    assert changed[bob.id]["update_time"] > 0 and changed[bob.id]["muted"]
    # Bob's side is his own.
    theirs = (await _conversations(api, bob))[alice.id]
    assert not (theirs["pinned"] or theirs["muted"] or theirs["hidden"])

    for body in ({}, {"pinned": "yes"}):
        await api.call(
            "PUT", f"/api/conversation/{bob.id}", token=alice.token, json=body, expect=400
        )
    await api.call(
        "PUT",
        f"/api/conversation/{stranger.id}",
        token=alice.token,
        json={"pinned": True},
        expect=404,
    )
    await api.call("POST", f"/api/conversation/{stranger.id}/read", token=alice.token, expect=404)
    await api.call("GET", "/api/conversation?since=soon", token=alice.token, expect=400)
    await api.call("GET", "/api/conversation", expect=401)
    await phone.close()


async def test_group_unread_per_member_and_read_over_http(
    api: Api, session: aiohttp.ClientSession
) -> None:
    alice, bob, carol = await alice_and_two_friends(api)
    gid = (await create_group(api, alice, [bob.id, carol.id], name="trio"))["info"]["id"]
    a = await Socket.connect(session, alice)
    await _chat(a, alice, gid, [b"g1", b"g2", b"g3"], msg_type=1, group_id=gid)
    for member in (bob, carol):
        await _seq_reaches(api, member, gid, 3)
    conv = (await _conversations(api, bob))[gid]
    assert conv["kind"] == "group" and conv["unread"] == 3
    assert conv["last"]["preview"] == "g3"
    assert (await _conversations(api, alice))[gid]["unread"] == 0

    _, read = await api.call("POST", f"/api/conversation/{gid}/read", token=bob.token)
    assert read["unread"] == 0 and read["read_seq"] == 3
    _, partly = await api.call(
        "POST", f"/api/conversation/{gid}/read", token=carol.token, json={"seq": 1}
    )
    assert partly["unread"] == 2
    # A read never goes back.
    _, same = await api.call(
        "POST", f"/api/conversation/{gid}/read", token=bob.token, json={"seq": 1}
    )
    assert same["unread"] == 0
    await _chat(a, alice, gid, [b"g4"], msg_type=1, group_id=gid)
    await _seq_reaches(api, bob, gid, 4)
    assert (await _conversations(api, bob))[gid]["unread"] == 1
    assert (await _conversations(api, carol))[gid]["unread"] == 3
    await a.close()


async def test_a_new_member_has_nothing_unread_from_before_the_join(
    api: Api, session: aiohttp.ClientSession
) -> None:
    alice, bob, carol = await alice_and_two_friends(api)
    gid = (await create_group(api, alice, [bob.id], name="duo"))["info"]["id"]
    a = await Socket.connect(session, alice)
    await _chat(a, alice, gid, [b"g1", b"g2"], msg_type=1, group_id=gid)
    await _seq_reaches(api, bob, gid, 2)
    invite = {"user_id": alice.id, "group_id": gid, "members": [carol.id]}
    await api.call("PUT", "/api/group/invite", token=alice.token, json=invite)
    conv = (await _conversations(api, carol))[gid]
    assert (conv["seq"], conv["read_seq"], conv["unread"]) == (2, 2, 0)
    assert (await _conversations(api, bob))[gid]["unread"] == 2
    await _chat(a, alice, gid, [b"g3"], msg_type=1, group_id=gid)
    await _seq_reaches(api, carol, gid, 3)
    assert (await _conversations(api, carol))[gid]["unread"] == 1
    await a.close()


async def test_a_hidden_conversation_comes_back_with_a_new_message(
    api: Api, session: aiohttp.ClientSession
) -> None:
    alice, bob = await alice_and_bob(api)
    b = await Socket.connect(session, bob)
    await _chat(b, bob, alice.id, [b"first"])
    await _seq_reaches(api, alice, bob.id, 1)
    _, conv = await api.call(
        "PUT", f"/api/conversation/{bob.id}", token=alice.token, json={"hidden": True}
    )
    assert conv["hidden"]
    _, listing = await api.call("GET", "/api/conversation", token=alice.token)
    assert [c["hidden"] for c in listing["conversations"]] == [True]
    await _chat(b, bob, alice.id, [b"again"])
    await _seq_reaches(api, alice, bob.id, 2)
    back = (await _conversations(api, alice, since=listing["sync_time"]))[bob.id]
    assert not back["hidden"] and back["unread"] == 2
    # Reading it does not hide it again; hiding it again does, until the next message.
    _, read = await api.call("POST", f"/api/conversation/{bob.id}/read", token=alice.token)
    assert not read["hidden"] and read["unread"] == 0
    _, again = await api.call(
        "PUT", f"/api/conversation/{bob.id}", token=alice.token, json={"hidden": True}
    )
    assert again["hidden"]
    await b.close()
