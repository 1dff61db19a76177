"""Devices (docs/protocol.md, "Devices"): each login a device with its own refresh-token
family, remote logout, log out everywhere else, rotation, reuse detection and its grace,
logout and password change; multi-device consistency (friend and group operations reach
the actor's other v2 devices) and the friendship read status. Protocol only: the same tests run
against the distributed topology (SANDCAT_E2E_TARGET=distributed), where the two logins of
a user land on different gateways."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
from typing import Any

import aiohttp
import pytest

from sandcat.server import Running
from sandcat.services.users import UserService
from tests.client import Api, CodeBook, Socket, User, apply_friend, befriend, create_group
from tests.conftest import StartServer


async def _device(api: Api, user: User, platform: str = "", client: str = "") -> User:
    """Log ``user`` in once more (a new device); the copy holds that device's tokens."""
    password = base64.b64encode(user.password.encode()).decode().rstrip("=")
    _, body = await api.call(
        "POST",
        "/api/user/login",
        json={"account": user.email, "password": password, "platform": platform, "client": client},
    )
    assert list(body) == ["user", "token", "refresh_token", "ws_addr"]  # unchanged answer
    return dataclasses.replace(
        user, token=body["token"], refresh_token=body["refresh_token"], ws_addr=body["ws_addr"]
    )


async def _devices(api: Api, user: User) -> list[dict[str, Any]]:
    _, devices = await api.call("GET", "/api/user/devices", token=user.token)
    return list(devices)


async def _current(api: Api, user: User) -> str:
    return str(next(d["id"] for d in await _devices(api, user) if d["current"]))


def _claim(token: str, name: str) -> str:
    """A claim of a token's payload, readable after its device is gone; the payload segment
    is standard base64 without padding."""
    payload = token.split(".")[1]
    return str(json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))[name])


def _did(user: User) -> str:
    """The device id in the user's access token (the payload's ``did``)."""
    return _claim(user.token, "did")


async def _refused(api: Api, user: User, session: aiohttp.ClientSession) -> None:
    """Every token of ``user``'s device is refused: HTTP, refresh both ways, WebSocket."""
    await api.call("GET", f"/api/user/{user.id}", token=user.token, expect=401)
    for flag in ("false", "true"):
        await api.call("GET", f"/api/user/refresh_token/{user.refresh_token}/{flag}", expect=401)
    sock = await Socket.connect(session, user, token=user.token)
    assert await sock.expect_close() == 4002


async def test_each_login_is_a_device_and_a_remote_logout_ends_only_that_one(
    api: Api, session: aiohttp.ClientSession
) -> None:
    alice = await api.new_user("alice", "alice@example.com")
    bob = await api.new_user("bob", "bob@example.com")
    phone = await _device(api, alice, platform="android", client="sandcat app")
    laptop = await _device(api, alice, platform="web", client="web page")
    devices = await _devices(api, laptop)
    assert len(devices) == 3  # new_user's login too
    assert [d["current"] for d in devices].count(True) == 1
    mine = next(d for d in devices if d["current"])
    assert mine["id"] == _did(laptop)
    assert (mine["platform"], mine["client"], mine["address"]) == ("web", "web page", "127.0.0.1")
    assert mine["user_agent"].startswith("Python") and mine["first_seen"] <= mine["last_seen"]
    phone_id = await _current(api, phone)
    assert phone_id in {d["id"] for d in devices} and phone_id != mine["id"]

    on_phone = await Socket.connect(session, phone, platform=1)
    on_laptop = await Socket.connect(session, laptop, platform=0, v2=True)
    await on_laptop.ready(laptop)
    await api.call("DELETE", f"/api/user/devices/{phone_id}", token=laptop.token)
    assert await on_phone.expect_close() == 4002
    removed = await on_laptop.event("device.removed")
    assert removed == {"ids": [phone_id]}
    await _refused(api, phone, session)
    # The other devices are untouched: the laptop's socket, tokens and refreshes work.
    await on_laptop.ready(laptop)
    await api.call("GET", f"/api/user/{alice.id}", token=laptop.token)
    await api.call("GET", f"/api/user/refresh_token/{laptop.refresh_token}/false")
    await api.call("GET", f"/api/user/{alice.id}", token=alice.token)
    assert phone_id not in {d["id"] for d in await _devices(api, laptop)}
    # Twice, or someone else's device: 404; no token: 401.
    await api.call("DELETE", f"/api/user/devices/{phone_id}", token=laptop.token, expect=404)
    _, err = await api.call(
        "DELETE", f"/api/user/devices/{mine['id']}", token=bob.token, expect=404
    )
    assert err["kind"] == "NotFound"
    await api.call("GET", "/api/user/devices", expect=401)
    await api.call("GET", f"/api/user/{alice.id}", token=laptop.token)
    await on_laptop.close()


async def test_refresh_rotation_spends_the_token_and_its_reuse_ends_the_device(
    api: Api, session: aiohttp.ClientSession
) -> None:
    alice = await api.new_user("alice", "alice@example.com")
    other = await _device(api, alice)
    first = alice.refresh_token
    # false: an access token, nothing spent (the original client does this again and again)
    for _ in range(2):
        _, access = await api.call("GET", f"/api/user/refresh_token/{first}/false")
        await api.call("GET", f"/api/user/{alice.id}", token=access)
    _, second = await api.call("GET", f"/user/refresh_token/{first}/true")
    assert isinstance(second, str) and second.count(".") == 2 and second != first
    _, third = await api.call("GET", f"/user/refresh_token/{second}/true")
    assert _claim(third, "jti") not in {_claim(first, "jti"), _claim(second, "jti")}
    _, access = await api.call("GET", f"/user/refresh_token/{third}/false")
    device_id = await _current(api, dataclasses.replace(alice, token=access))
    # A token spent two rotations back (outside any reuse grace): theft assumed, the whole
    # family (device) is logged out.
    sock = await Socket.connect(session, dataclasses.replace(alice, token=access))
    await sock.ready(alice)
    _, err = await api.call("GET", f"/user/refresh_token/{first}/true", expect=401)
    assert "already used" in err["details"]
    assert await sock.expect_close() == 4002
    for token in (third, second, first):
        await api.call("GET", f"/user/refresh_token/{token}/false", expect=401)
    await api.call("GET", f"/api/user/{alice.id}", token=access, expect=401)
    await api.call("GET", f"/api/user/{alice.id}", token=alice.token, expect=401)
    assert device_id not in {d["id"] for d in await _devices(api, other)}
    await api.call("GET", f"/user/refresh_token/{other.refresh_token}/false")  # untouched


async def test_tabs_renewing_with_one_refresh_token_all_stay_signed_in(
    api: Api, session: aiohttp.ClientSession
) -> None:
    """Within the reuse grace (30 s by default, long against this test) the token spent last
    gets the device's current one: two tabs sharing one token renew with it at once, and a
    client retries a renewal whose answer it lost; none of them logs the device out."""
    alice = await api.new_user("alice", "alice@example.com")
    shared = alice.refresh_token
    sock = await Socket.connect(session, alice)
    await sock.ready(alice)
    answers = await asyncio.gather(
        *(api.call("GET", f"/user/refresh_token/{shared}/true") for _ in range(2))
    )
    _, retried = await api.call("GET", f"/user/refresh_token/{shared}/true")
    tabs = [token for _, token in answers] + [retried]
    current = {_claim(token, "jti") for token in tabs}
    assert len(current) == 1 and _claim(shared, "jti") not in current
    for token in (*tabs, shared):  # the spent one still gets access tokens in the grace
        _, access = await api.call("GET", f"/user/refresh_token/{token}/false")
        await api.call("GET", f"/api/user/{alice.id}", token=access)
    # Every tab renews on: the first rotates, the others (the same jti) get what it got.
    renewed = [(await api.call("GET", f"/user/refresh_token/{tab}/true"))[1] for tab in tabs]
    assert len({_claim(token, "jti") for token in renewed}) == 1
    assert _claim(renewed[0], "jti") not in current
    assert [d["id"] for d in await _devices(api, alice)] == [_did(alice)]
    await sock.ready(alice)
    # The shared token is two rotations back now: theft, the device is logged out.
    _, err = await api.call("GET", f"/user/refresh_token/{shared}/true", expect=401)
    assert "already used" in err["details"]
    assert await sock.expect_close() == 4002
    for token in renewed:
        await api.call("GET", f"/user/refresh_token/{token}/false", expect=401)


@pytest.mark.embedded_only
async def test_a_zero_grace_is_strict(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    """``auth.refresh_reuse_grace_seconds: 0``: the token spent a moment ago logs the device
    out, as any spent one does."""
    async with start_server(auth__refresh_reuse_grace_seconds=0) as srv:
        api = Api(session, f"http://127.0.0.1:{srv.api_port}", codes)
        alice = await api.new_user("alice", "alice@example.com")
        _, current = await api.call("GET", f"/user/refresh_token/{alice.refresh_token}/true")
        _, err = await api.call(
            "GET", f"/user/refresh_token/{alice.refresh_token}/true", expect=401
        )
        assert "already used" in err["details"]
        await _refused(api, dataclasses.replace(alice, refresh_token=current), session)


async def test_log_out_everywhere_else(api: Api, session: aiohttp.ClientSession) -> None:
    alice = await api.new_user("alice", "alice@example.com")
    others = [await _device(api, alice) for _ in range(2)]
    # One connection per platform and user (0 and 1): one of the others has a socket.
    sockets = [await Socket.connect(session, others[0], platform=1)]
    here = await Socket.connect(session, alice, platform=0)
    mine = await _current(api, alice)
    _, body = await api.call("POST", "/api/user/devices/logout-others", token=alice.token)
    assert sorted(body["removed"]) == sorted(_did(user) for user in others)
    for sock in sockets:
        assert await sock.expect_close() == 4002
    for user in others:
        await _refused(api, user, session)
    assert [d["id"] for d in await _devices(api, alice)] == [mine]
    await here.ready(alice)
    _, body = await api.call("POST", "/api/user/devices/logout-others", token=alice.token)
    assert body == {"removed": []}
    await here.close()


async def test_logout_and_a_password_change_end_every_device(
    api: Api, session: aiohttp.ClientSession
) -> None:
    alice = await api.new_user("alice", "alice@example.com")
    phone = await _device(api, alice)
    await api.call("DELETE", f"/api/user/logout/{alice.id}", token=alice.token)
    await _refused(api, phone, session)
    laptop = await _device(api, alice)
    tablet = await _device(api, alice)
    assert len(await _devices(api, laptop)) == 2
    await api.call("POST", "/api/user/mail/send", json={"email": alice.email})
    code = await api.codes.wait(alice.email)
    pwd = base64.b64encode(b"new-pass-2").decode().rstrip("=")
    await api.call(
        "PUT",
        "/api/user/pwd",
        json={"user_id": alice.id, "email": alice.email, "pwd": pwd, "code": code},
    )
    for user in (laptop, tablet):
        await _refused(api, user, session)
    alice.password = "new-pass-2"
    fresh = await _device(api, alice)
    assert [d["current"] for d in await _devices(api, fresh)] == [True]


async def test_friend_and_group_operations_reach_the_actors_other_v2_devices(
    api: Api, session: aiohttp.ClientSession
) -> None:
    alice = await api.new_user("alice", "alice@example.com")
    bob = await api.new_user("bob", "bob@example.com")
    carol = await api.new_user("carol", "carol@example.com")
    phone = await _device(api, alice)
    here = await Socket.connect(session, alice, platform=0, v2=True)
    there = await Socket.connect(session, phone, platform=1, v2=True)
    original = await Socket.connect(session, bob)  # the original client: no text frame
    for sock, user in ((here, alice), (there, phone)):
        await sock.ready(user)

    async def both(name: str, action: str) -> dict[str, Any]:
        seen = [await s.event(name, lambda d: d["action"] == action) for s in (here, there)]
        assert seen[0] == seen[1]
        return seen[0]

    request = await apply_friend(api, alice, bob)
    applied = await both("friend.updated", "applied")
    assert applied["request"]["fs_id"] == request["fs_id"]
    assert applied["request"]["user_id"] == bob.id
    await original.recv_until(lambda m: m["msg_type"] == 10)
    await api.call(
        "PUT",
        "/api/friend/agree",
        token=bob.token,
        json={"fs_id": request["fs_id"], "resp_msg": None, "resp_remark": None},
    )
    await api.call(
        "PUT",
        "/api/friend/remark",
        token=phone.token,
        json={"user_id": alice.id, "friend_id": bob.id, "remark": "Bobby"},
    )
    assert (await both("friend.updated", "remark"))["remark"] == "Bobby"
    await befriend(api, alice, carol)
    group = await create_group(api, alice, [bob.id], name="trio")
    group_id = group["info"]["id"]
    created = await both("group.updated", "created")
    assert (created["group_id"], created["group"]["name"]) == (group_id, "trio")
    await api.call(
        "PUT",
        "/api/group/invite",
        token=alice.token,
        json={"user_id": alice.id, "group_id": group_id, "members": [carol.id]},
    )
    assert (await both("group.updated", "invited"))["members"] == [carol.id]
    await api.call(
        "PUT",
        f"/api/group/{alice.id}",
        token=phone.token,
        json={
            "id": group_id,
            "name": "four",
            "avatar": "",
            "description": "",
            "announcement": "",
        },
    )
    assert (await both("group.updated", "updated"))["group"]["name"] == "four"
    await api.call(
        "DELETE",
        "/api/group/member",
        token=alice.token,
        json={"user_id": alice.id, "group_id": group_id, "mem_id": [carol.id]},
    )
    assert (await both("group.updated", "removed"))["members"] == [carol.id]
    await api.call(
        "DELETE",
        "/api/group",
        token=alice.token,
        json={"user_id": alice.id, "group_id": group_id, "is_dismiss": True},
    )
    assert (await both("group.updated", "dismissed"))["group_id"] == group_id
    # Bob, on the original protocol, got his Msg notifications and never a text frame.
    await original.recv_until(lambda m: m["msg_type"] == 6)  # GroupDismiss
    await original.ready(bob)
    assert original.events_seen() == []
    for sock in (here, there, original):
        await sock.close()


async def test_a_read_friend_request_is_not_delivered_again_by_the_sync(
    api: Api, session: aiohttp.ClientSession
) -> None:
    alice = await api.new_user("alice", "alice@example.com")
    carol = await api.new_user("carol", "carol@example.com")
    request = await apply_friend(api, carol, alice)
    fs_id = request["fs_id"]
    sync = f"/api/friend/{alice.id}/0"

    async def synced() -> list[str]:
        _, body = await api.call("GET", sync, token=alice.token)
        return [fs["fs_id"] for fs in body["fs"]]

    assert await synced() == [fs_id]
    await api.call("PUT", f"/api/friend/{fs_id}/read", token=carol.token, expect=403)
    await api.call("PUT", "/api/friend/nope/read", token=alice.token, expect=404)
    await api.call("PUT", f"/api/friend/{fs_id}/read", expect=401)
    await api.call("PUT", f"/api/friend/{fs_id}/read", token=alice.token)
    assert await synced() == []
    _, pending = await api.call("GET", f"/api/friend/{alice.id}/apply", token=alice.token)
    assert [fs["fs_id"] for fs in pending] == [fs_id]  # still waiting for an answer
    await api.call(
        "PUT",
        "/api/friend/agree",
        token=alice.token,
        json={"fs_id": fs_id, "resp_msg": None, "resp_remark": None},
    )
    assert await synced() == [fs_id]  # it changed: delivered again
    # The same over the WebSocket: a FriendshipReceived frame (type 27) naming the request.
    sock = await Socket.connect(session, alice)
    await sock.send(send_id=alice.id, msg_type=27, local_id="fs-read", content=fs_id.encode())
    ack = await sock.recv_until(lambda m: m["local_id"] == "fs-read")
    assert ack["msg_type"] == 24
    assert await synced() == []
    await sock.send(send_id=alice.id, msg_type=27, local_id="fs-nope", content=b"nope")
    refused = await sock.recv_until(lambda m: m["local_id"] == "fs-nope")
    assert b"not marked read" in refused["content"]
    await sock.close()


@pytest.mark.embedded_only
async def test_a_remote_logout_during_the_sockets_token_check_still_closes_it(
    api: Api,
    session: aiohttp.ClientSession,
    server: Running,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gateway checks a token, then registers the connection: a logout of that device
    landing between the two (when nothing registered could be closed yet) closes the socket
    with 4002 once it registers, instead of leaving a logged-out device connected."""
    alice = await api.new_user("alice", "alice@example.com")
    phone = await _device(api, alice, platform="android")
    checking, logged_out = asyncio.Event(), asyncio.Event()
    real_session = UserService.session

    async def held(self: UserService, token: str) -> Any:
        claims = await real_session(self, token)
        if token == phone.token and not logged_out.is_set():
            checking.set()
            await logged_out.wait()  # the check passed; the logout lands before registering
        return claims

    monkeypatch.setattr(UserService, "session", held)
    opening = asyncio.ensure_future(Socket.connect(session, phone, token=phone.token))
    await asyncio.wait_for(checking.wait(), 5)
    await api.call("DELETE", f"/api/user/devices/{_did(phone)}", token=alice.token)
    logged_out.set()
    sock = await opening
    assert await sock.expect_close() == 4002
    await _refused(api, phone, session)
