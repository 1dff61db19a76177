"""Bad input on the routes of conversations, devices and bots: each malformed body, wrong
type, out-of-range value or unknown id gets its documented status and error kind
(docs/protocol.md), and nothing it carries is stored; a NUL character (which PostgreSQL
cannot store) is refused alike in both modes, on every route and in a WebSocket ``Msg``.
``tests/fuzz`` sends random input to the same routes and checks only that no answer is a
500."""

from __future__ import annotations

from typing import Any

import aiohttp

from tests.client import Api, Socket, User, alice_and_bob


async def _error(api: Api, method: str, path: str, token: str, body: Any, status: int) -> str:
    """The error kind of a call expected to fail with ``status``."""
    if isinstance(body, bytes):
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        async with api.session.request(method, api.base + path, data=body, headers=headers) as r:
            assert r.status == status, (method, path, body, r.status, await r.text())
            answer = await r.json()
    else:
        _, answer = await api.call(method, path, token=token, json=body, expect=status)
    assert isinstance(answer, dict) and isinstance(answer.get("kind"), str), answer
    return str(answer["kind"])


async def _conversation(api: Api, user: User, peer: str) -> dict[str, Any]:
    _, body = await api.call("GET", "/api/conversation", token=user.token)
    return next(conv for conv in body["conversations"] if conv["id"] == peer)


async def test_conversation_routes_refuse_bad_input(api: Api) -> None:
    alice, bob = await alice_and_bob(api)
    before = await _conversation(api, alice, bob.id)
    put = f"/api/conversation/{bob.id}"
    read = f"/api/conversation/{bob.id}/read"
    for body in (b"{", b"[]", b'"pinned"', {}, {"pinned": "yes"}, {"muted": 1}):
        assert await _error(api, "PUT", put, alice.token, body, 400) in {
            "BodyParsing",
            "BadRequest",
        }, body
    for seq in (-1, -(2**63), "3", 1.5, True, 2**64):
        assert await _error(api, "POST", read, alice.token, {"seq": seq}, 400) in {
            "BodyParsing",
            "BadRequest",
        }, seq
    # Superscript two and Arabic-Indic one are digits to str.isdigit: only ASCII is a time.
    for bad in ("-1", "abc", "1" * 19, "1e3", "%C2%B2", "%D9%A1", "+1", " 1"):
        path = f"/api/conversation?since={bad}"
        assert await _error(api, "GET", path, alice.token, None, 400) == "BadRequest", bad
    # Unknown ids, and a user who is neither a friend nor a group of alice's: 404.
    carol = await api.new_user("carol", "carol@example.com")
    for peer in ("nobody", carol.id, alice.id):
        path = f"/api/conversation/{peer}"
        assert await _error(api, "PUT", path, alice.token, {"pinned": True}, 404) == "NotFound"
        assert await _error(api, "POST", path + "/read", alice.token, None, 404) == "NotFound"
    # Nothing of it was stored: the conversation is as it was.
    after = await _conversation(api, alice, bob.id)
    assert (after["read_seq"], after["unread"], after["pinned"], after["muted"]) == (
        before["read_seq"],
        before["unread"],
        before["pinned"],
        before["muted"],
    )
    assert after["read_seq"] >= 0


async def test_device_and_friendship_read_routes_refuse_unknown_ids(api: Api) -> None:
    alice, _ = await alice_and_bob(api)
    for device in ("nothing", "..", "x" * 300):
        path = f"/api/user/devices/{device}"
        assert await _error(api, "DELETE", path, alice.token, None, 404) == "NotFound", device
    for fs_id in ("nothing", "x" * 300):
        path = f"/api/friend/{fs_id}/read"
        assert await _error(api, "PUT", path, alice.token, None, 404) == "NotFound", fs_id
    _, devices = await api.call("GET", "/api/user/devices", token=alice.token)
    assert len(devices) == 1 and devices[0]["current"]


async def test_a_nul_character_in_a_path_or_a_body_is_400(api: Api) -> None:
    """PostgreSQL cannot store U+0000 in text: refused at the edge in both modes, not
    answered 500 ``DbError`` by the distributed stores."""
    alice, bob = await alice_and_bob(api)
    for method, path in (
        ("PUT", "/api/conversation/%00"),
        ("POST", "/api/conversation/a%00/read"),
        ("DELETE", "/api/user/devices/%00"),
        ("PUT", "/api/friend/%00/read"),
        ("GET", "/api/user/%00"),
        ("GET", "/api/friend/query/%00"),
    ):
        flags = {"pinned": True} if method == "PUT" else None
        assert await _error(api, method, path, alice.token, flags, 400) == "PathParsing", path
    bodies: tuple[tuple[str, str, dict[str, Any]], ...] = (
        ("PUT", "/api/friend/agree", {"fs_id": "\u0000"}),
        ("PUT", "/api/friend/deny", {"fs_id": "x", "resp_msg": "a\u0000"}),
        ("PUT", "/api/user", {"id": alice.id, "name": "a", "avatar": "", "gender": "\u0000"}),
        (
            "PUT",
            "/api/friend/remark",
            {"user_id": alice.id, "friend_id": bob.id, "remark": ["nested \u0000"]},
        ),
    )
    for method, path, body in bodies:
        assert await _error(api, method, path, alice.token, body, 400) == "BodyParsing", path
    # A backslash followed by "u0000" is text, not a NUL character.
    remark = {"user_id": alice.id, "friend_id": bob.id, "remark": "\\u0000"}
    await api.call("PUT", "/api/friend/remark", token=alice.token, json=remark)


async def test_a_msg_with_a_nul_character_gets_an_error_ack_not_a_retry(
    api: Api, session: aiohttp.ClientSession
) -> None:
    alice, bob = await alice_and_bob(api)
    sock = await Socket.connect(session, alice)
    for field in ("local_id", "nickname", "avatar"):
        fields = {"local_id": f"nul-{field}", field: f"nul-{field}\u0000"}
        await sock.send(send_id=alice.id, receiver_id=bob.id, content=b"x", **fields)
        ack = await sock.recv_until(lambda m: m["msg_type"] == 24, timeout=20)
        assert ack["content_type"] == 9, (field, ack)
        assert b"NUL" in ack["content"], (field, ack["content"])
    # A FriendshipReceived frame names a friend request by its id in ``content``.
    await sock.send(send_id=alice.id, msg_type=27, local_id="fs-nul", content=b"fs\x00id")
    ack = await sock.recv_until(lambda m: m["local_id"] == "fs-nul", timeout=20)
    assert ack["content_type"] == 9 and b"not marked read" in ack["content"], ack
    await sock.send(send_id=alice.id, receiver_id=bob.id, local_id="clean", content=b"ok")
    ack = await sock.recv_until(lambda m: m["local_id"] == "clean", timeout=20)
    assert ack["msg_type"] == 24 and ack["content_type"] != 9
    await sock.close()
