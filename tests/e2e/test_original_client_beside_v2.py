"""The original web client beside every feature of protocol v2 (docs/protocol.md, "Protocol
v2"): while the same user's v2 device gets an event for each of them (conversations,
devices, friends, groups, a bot), the original client's connection gets binary ``Msg``
frames of the original types and content types only, and never a text frame. Runs against
the embedded server and (``SANDCAT_E2E_TARGET=distributed``) the topology."""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from tests import wire
from tests.client import Api, Socket, User, alice_and_bob, apply_friend, create_group
from tests.e2e.test_bots import Admin, new_bot
from tests.e2e.test_bots import admin as bot_admin  # noqa: F401 (a fixture, used by name)

#: The original protocol's ``MsgType`` and ``ContentType`` values.
ORIGINAL_MSG_TYPES = range(28)
ORIGINAL_CONTENT_TYPES = range(10)


class Recorder:
    """An original client's socket whose every frame is kept, in order."""

    def __init__(self, sock: Socket) -> None:
        self.sock = sock
        self.frames: list[dict[str, Any]] = []

    async def take(self, pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        while True:
            frame = await self.sock.recv(timeout=10)
            self.frames.append(frame)
            if pred(frame):
                return frame

    async def settle(self, user: User) -> None:
        """Every frame written before an empty Read's ack is recorded."""
        await self.sock.send(msg_type=23, content=wire.read_payload([], user.id))
        await self.take(lambda m: m["msg_type"] == 24 and m["local_id"] == "")


async def _login(api: Api, user: User) -> User:
    """Another device of ``user`` (a login of the web page)."""
    password = base64.b64encode(user.password.encode()).decode().rstrip("=")
    body = {"account": user.email, "password": password, "platform": "web", "client": "test"}
    _, answer = await api.call("POST", "/api/user/login", json=body)
    assert list(answer) == ["user", "token", "refresh_token", "ws_addr"]  # the original's
    return dataclasses.replace(user, token=answer["token"], refresh_token=answer["refresh_token"])


async def test_the_original_client_gets_only_original_frames_while_v2_features_run(
    api: Api, session: aiohttp.ClientSession, request: pytest.FixtureRequest
) -> None:
    admin: Admin = request.getfixturevalue("bot_admin")
    alice, bob = await alice_and_bob(api)
    carol = await api.new_user("carol", "carol@example.com")
    original = Recorder(await Socket.connect(session, alice))
    await original.settle(alice)
    phone = await _login(api, alice)
    v2 = await Socket.connect(session, phone, platform=1, v2=True)
    await v2.event("hello")
    await v2.ready(phone)

    # Conversations: a message read by the original client's Read frame, then flags.
    from_bob = await Socket.connect(session, bob)
    await from_bob.send(send_id=bob.id, receiver_id=alice.id, local_id="b1", content=b"hi")
    got = await original.take(lambda m: m["msg_type"] == 0 and m["send_id"] == bob.id)
    await original.sock.send(msg_type=23, content=wire.read_payload([got["seq"]], alice.id))
    await v2.event("conversation.updated", lambda d: d["id"] == bob.id and d["unread"] == 0)
    await api.call("PUT", f"/api/conversation/{bob.id}", token=alice.token, json={"muted": True})
    await v2.event("conversation.updated", lambda d: d["muted"])
    await api.call("POST", f"/api/conversation/{bob.id}/read", token=alice.token)

    # Devices: a third login, then its remote logout.
    laptop = await _login(api, alice)
    added = await v2.event("device.added")
    await api.call("DELETE", f"/api/user/devices/{added['id']}", token=alice.token)
    assert (await v2.event("device.removed"))["ids"] == [added["id"]]
    await api.call("GET", "/api/user/devices", token=laptop.token, expect=401)

    # Friends: carol's request, read, then agreed; a remark.
    fs = await apply_friend(api, carol, alice)
    await original.take(lambda m: m["msg_type"] == 10)
    await api.call("PUT", f"/api/friend/{fs['fs_id']}/read", token=alice.token)
    await api.call(
        "PUT",
        "/api/friend/agree",
        token=alice.token,
        json={"fs_id": fs["fs_id"], "resp_msg": None, "resp_remark": None},
    )
    await v2.event("friend.updated", lambda d: d["action"] == "agreed")
    await api.call(
        "PUT",
        "/api/friend/remark",
        token=alice.token,
        json={"user_id": alice.id, "friend_id": carol.id, "remark": "Caz"},
    )
    await v2.event("friend.updated", lambda d: d["action"] == "remark")

    # Groups: one made by alice on another device.
    group = await create_group(api, alice, [bob.id, carol.id], name="three")
    await v2.event("group.updated", lambda d: d["group_id"] == group["info"]["id"])

    # A bot: befriended over its API, then it writes to alice.
    bot = await new_bot(admin, "", auto_accept=False)
    asked = await apply_friend(api, alice, User(bot["id"], "", ""))
    headers = {"Authorization": f"Bearer {bot['token']}"}
    agree = f"{api.base}/api/bot/friend/{asked['fs_id']}/agree"
    async with session.put(agree, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
    send = {"receiver_id": alice.id, "content": "hello from a bot"}
    async with session.post(f"{api.base}/api/bot/message", json=send, headers=headers) as resp:
        assert resp.status == 200, await resp.text()
    await original.take(lambda m: m["msg_type"] == 0 and m["send_id"] == bot["id"])

    await original.settle(alice)
    assert original.sock.events_seen() == [], "a text frame reached the original client"
    unknown = [
        (m["msg_type"], m["content_type"])
        for m in original.frames
        if m["msg_type"] not in ORIGINAL_MSG_TYPES
        or m["content_type"] not in ORIGINAL_CONTENT_TYPES
    ]
    assert unknown == [], "frames the original client does not know"
    for sock in (original.sock, v2, from_bob):
        await sock.close()
