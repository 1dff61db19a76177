"""Friends over real sockets: apply, agree, deny, delete, remark, sync, and the chat policy."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from tests import wire
from tests.client import Api, CodeBook, Socket, User, apply_friend, befriend, pull
from tests.conftest import StartServer

FRIEND_KEYS = [
    "fs_id",
    "friend_id",
    "account",
    "name",
    "avatar",
    "gender",
    "age",
    "region",
    "status",
    "remark",
    "email",
    "source",
    "signature",
    "create_time",
    "update_time",
]
FRIENDSHIP_KEYS = [
    "fs_id",
    "user_id",
    "name",
    "avatar",
    "gender",
    "age",
    "region",
    "status",
    "apply_msg",
    "source",
    "create_time",
    "account",
    "remark",
    "email",
]


async def _seqs(api: Api, user: User) -> dict[str, int]:
    _, body = await api.call("GET", f"/api/message/seq/{user.id}", token=user.token)
    return dict(body)


async def _apply(api: Api, requester: User, target: User, **extra: Any) -> dict[str, Any]:
    body = {
        "user_id": requester.id,
        "friend_id": target.id,
        "apply_msg": "hello there",
        "req_remark": "my bob",
        "source": "search",
        "platform": 0,
        **extra,
    }
    _, fs = await api.call("POST", "/api/friend", token=requester.token, json=body)
    return dict(fs)


async def _chat(sock: Socket, to: User, local_id: str) -> dict[str, Any]:
    await sock.send(receiver_id=to.id, local_id=local_id, msg_type=0, content=b"hi")
    return await sock.recv_until(lambda m: m["msg_type"] == 24 and m["local_id"] == local_id)


async def test_apply_agree_then_chat(api: Api, session: aiohttp.ClientSession) -> None:
    alice = await api.new_user("alice", "alice@example.com")
    bob = await api.new_user("bob", "bob@example.com")
    a = await Socket.connect(session, alice)
    b = await Socket.connect(session, bob)

    fs = await _apply(api, alice, bob)
    assert list(fs) == FRIENDSHIP_KEYS
    assert fs["user_id"] == bob.id and fs["name"] == "bob" and fs["account"] == bob.id
    assert fs["status"] == 0 and fs["remark"] == "my bob" and fs["source"] == "search"
    assert fs["apply_msg"] is None and fs["email"] is None and len(fs["fs_id"]) == 21

    note = await b.recv_until(lambda m: m["msg_type"] == 10)
    assert note["send_id"] == alice.id and note["receiver_id"] == bob.id
    assert note["seq"] == 1 and note["send_seq"] == 0 and len(note["server_id"]) == 21
    assert wire.decode_friendship_with_user(note["content"]) == {
        "fs_id": fs["fs_id"],
        "user_id": alice.id,
        "name": "alice",
        "avatar": "avatar1.png",
        "gender": "",
        "age": 0,
        "region": None,
        "status": 0,
        "apply_msg": "hello there",
        "source": "search",
        "create_time": fs["create_time"],
        "account": alice.id,
        "remark": None,
        "email": None,
    }
    _, pending = await api.call("GET", f"/api/friend/{bob.id}/apply", token=bob.token)
    assert [p["fs_id"] for p in pending] == [fs["fs_id"]] and pending[0]["user_id"] == alice.id

    # Not friends yet: refused with an error ack, nothing stored or delivered.
    refused = await _chat(a, bob, "early")
    assert refused["content_type"] == 9 and b"not your friend" in refused["content"]
    assert await _seqs(api, bob) == {"seq": 1, "send_seq": 0}

    _, friend = await api.call(
        "PUT",
        "/api/friend/agree",
        token=bob.token,
        json={"fs_id": fs["fs_id"], "resp_msg": "welcome", "resp_remark": "my alice"},
    )
    assert list(friend) == FRIEND_KEYS
    assert friend["friend_id"] == alice.id and friend["status"] == 1
    assert friend["remark"] == "my alice" and friend["email"] == alice.email
    resp = await a.recv_until(lambda m: m["msg_type"] == 11)
    assert resp["seq"] == 1 and resp["send_id"] == bob.id and resp["receiver_id"] == alice.id
    accepted = wire.decode_friend(resp["content"])
    assert accepted["friend_id"] == bob.id and accepted["status"] == 1
    assert accepted["remark"] == "my bob" and accepted["email"] == bob.email
    assert accepted["fs_id"] == fs["fs_id"] and accepted["name"] == "bob"
    _, pending = await api.call("GET", f"/api/friend/{bob.id}/apply", token=bob.token)
    assert pending == []

    ok = await _chat(a, bob, "now")
    assert ok["content_type"] != 9 and ok["send_seq"] == 1
    got = await b.recv_until(lambda m: m["msg_type"] == 0)
    assert got["seq"] == 2 and got["send_id"] == alice.id
    assert (await _chat(b, alice, "back"))["send_seq"] == 1
    assert (await a.recv_until(lambda m: m["msg_type"] == 0))["seq"] == 2

    # Agreeing twice, or by the requester, is refused.
    _, err = await api.call(
        "PUT",
        "/friend/agree",
        token=bob.token,
        json={"fs_id": fs["fs_id"], "resp_msg": None, "resp_remark": None},
        expect=400,
    )
    assert err["kind"] == "BadRequest" and "pending" in err["details"]
    _, err = await api.call(
        "POST",
        "/api/friend",
        token=alice.token,
        json={"user_id": alice.id, "friend_id": bob.id, "source": "x"},
        expect=400,
    )
    assert "already friends" in err["details"]
    await a.close()
    await b.close()


async def test_deny_pushes_nothing_and_reapply_waits(
    api: Api, session: aiohttp.ClientSession
) -> None:
    alice = await api.new_user("alice", "alice@example.com")
    bob = await api.new_user("bob", "bob@example.com")
    fs = await _apply(api, alice, bob)
    deny = {"fs_id": fs["fs_id"], "resp_msg": "no thanks"}
    _, err = await api.call("PUT", "/api/friend/deny", token=alice.token, json=deny, expect=403)
    assert err["kind"] == "BadRequest" and "sent to" in err["details"]
    await api.call("PUT", "/api/friend/deny", token=bob.token, json=deny)
    assert await _seqs(api, alice) == {"seq": 0, "send_seq": 0}  # nothing stored for Alice
    assert await _seqs(api, bob) == {"seq": 1, "send_seq": 0}  # only the request itself
    _, pending = await api.call("GET", f"/friend/{bob.id}/apply", token=bob.token)
    assert pending == []
    _, synced = await api.call("GET", f"/friend/{bob.id}/0", token=bob.token)
    assert [(f["fs_id"], f["status"]) for f in synced["fs"]] == [(fs["fs_id"], 2)]
    await api.call(
        "PUT",
        "/api/friend/agree",
        token=bob.token,
        json={"fs_id": fs["fs_id"], "resp_msg": None, "resp_remark": None},
        expect=400,
    )
    a = await Socket.connect(session, alice)
    assert (await _chat(a, bob, "denied"))["content_type"] == 9

    # Applying again within the cool-down is refused: no renewed request, no push.
    err = await apply_friend(api, alice, bob, apply_msg="please?", expect=429)
    assert err["kind"] == "BadRequest" and "denied" in err["details"]
    _, pending = await api.call("GET", f"/friend/{bob.id}/apply", token=bob.token)
    assert pending == []
    assert await _seqs(api, bob) == {"seq": 1, "send_seq": 0}
    await a.close()


async def test_delete_refuses_chat(api: Api, session: aiohttp.ClientSession) -> None:
    alice = await api.new_user("alice", "alice@example.com")
    bob = await api.new_user("bob", "bob@example.com")
    fs_id = await befriend(api, alice, bob)
    a = await Socket.connect(session, alice)
    b = await Socket.connect(session, bob)
    assert (await _chat(a, bob, "m1"))["content_type"] != 9
    await b.recv_until(lambda m: m["msg_type"] == 0)

    body = {"user_id": alice.id, "friend_id": bob.id, "fs_id": fs_id}
    await api.call("DELETE", "/api/friend", token=bob.token, json=body, expect=401)
    await api.call("DELETE", "/api/friend", token=alice.token, json=body)
    gone = await b.recv_until(lambda m: m["msg_type"] == 13)
    assert gone["send_id"] == alice.id and gone["content"] == b"" and gone["seq"] == 3
    await api.call("DELETE", "/api/friend", token=alice.token, json=body, expect=404)

    for sock, peer, local_id in ((a, bob, "m2"), (b, alice, "m3")):
        refused = await _chat(sock, peer, local_id)
        assert refused["content_type"] == 9 and b"not your friend" in refused["content"]
    # Call signalling follows the same rule.
    await a.send(receiver_id=bob.id, local_id="call", msg_type=14, content_type=7)
    call = await a.recv_until(lambda m: m["msg_type"] == 24 and m["local_id"] == "call")
    assert call["content_type"] == 9
    assert await _seqs(api, bob) == {"seq": 3, "send_seq": 0}
    _, synced = await api.call("GET", f"/api/friend/{bob.id}/0", token=bob.token)
    assert [(f["friend_id"], f["status"]) for f in synced["friends"]] == [(alice.id, 4)]
    await a.close()
    await b.close()


async def test_remark_and_sync_since(api: Api) -> None:
    alice = await api.new_user("alice", "alice@example.com")
    bob = await api.new_user("bob", "bob@example.com")
    carol = await api.new_user("carol", "carol@example.com")
    await befriend(api, alice, bob)
    _, synced = await api.call("GET", f"/api/friend/{alice.id}/0", token=alice.token)
    assert [list(f) for f in synced["friends"]] == [FRIEND_KEYS]
    assert synced["friends"][0]["friend_id"] == bob.id and synced["fs"] == []
    mark = synced["friends"][0]["update_time"]
    _, later = await api.call("GET", f"/api/friend/{alice.id}/{mark}", token=alice.token)
    assert later == {"friends": [], "fs": []}

    remark = {"user_id": alice.id, "friend_id": bob.id, "remark": "Bobby"}
    await api.call("PUT", "/api/friend/remark", token=alice.token, json=remark)
    _, later = await api.call("GET", f"/api/friend/{alice.id}/{mark - 1}", token=alice.token)
    assert [(f["friend_id"], f["remark"]) for f in later["friends"]] == [(bob.id, "Bobby")]
    for bad, status in (({"remark": ""}, 400), ({"friend_id": carol.id}, 404)):
        await api.call(
            "PUT", "/api/friend/remark", token=alice.token, json={**remark, **bad}, expect=status
        )
    # Requests to the user are part of the sync, with the requester's profile.
    await _apply(api, carol, alice)
    _, later = await api.call("GET", f"/friend/{alice.id}/{mark}", token=alice.token)
    assert [(f["user_id"], f["status"], f["name"]) for f in later["fs"]] == [(carol.id, 0, "carol")]
    await api.call("GET", f"/friend/{alice.id}/not-a-time", token=alice.token, expect=400)
    await api.call("GET", f"/friend/{bob.id}/0", token=alice.token, expect=401)

    _, info = await api.call("GET", f"/api/friend/query/{bob.id}", token=alice.token)
    assert list(info) == [
        "id",
        "name",
        "avatar",
        "gender",
        "age",
        "region",
        "account",
        "signature",
        "email",
    ]
    assert info["id"] == bob.id and info["name"] == "bob"
    await api.call("GET", "/api/friend/query/nobody", token=alice.token, expect=404)


async def test_offline_notifications_are_pulled(api: Api) -> None:
    alice = await api.new_user("alice", "alice@example.com")
    bob = await api.new_user("bob", "bob@example.com")
    fs = await _apply(api, alice, bob)
    await api.call(
        "PUT",
        "/api/friend/agree",
        token=bob.token,
        json={"fs_id": fs["fs_id"], "resp_msg": None, "resp_remark": None},
    )
    (request,) = await pull(api, bob, start=0, end=1)
    assert request["msg_type"] == 10 and request["seq"] == 1
    assert wire.decode_friendship_with_user(bytes(request["content"]))["user_id"] == alice.id
    (answer,) = await pull(api, alice, start=0, end=1)
    assert answer["msg_type"] == 11 and answer["send_id"] == bob.id
    assert wire.decode_friend(bytes(answer["content"]))["friend_id"] == bob.id
    # The client acknowledges processed friend notifications by deleting them.
    await api.call(
        "DELETE", "/api/message", token=bob.token, json={"user_id": bob.id, "msg_id": [1]}
    )
    assert await pull(api, bob, start=0, end=1) == []


async def test_apply_checks(api: Api) -> None:
    alice = await api.new_user("alice", "alice@example.com")
    bob = await api.new_user("bob", "bob@example.com")
    base = {"user_id": alice.id, "friend_id": bob.id, "source": "search"}
    await api.call("POST", "/api/friend", token=bob.token, json=base, expect=401)
    await api.call("POST", "/api/friend", json=base, expect=401)
    await api.call(
        "POST", "/api/friend", token=alice.token, json={**base, "friend_id": alice.id}, expect=400
    )
    await api.call(
        "POST", "/api/friend", token=alice.token, json={**base, "friend_id": "nobody"}, expect=404
    )
    await api.call("POST", "/api/friend", token=alice.token, json={"user_id": alice.id}, expect=400)
    _, err = await api.call(
        "POST", "/api/friend", token=alice.token, json={**base, "apply_msg": "x" * 257}, expect=400
    )
    assert "longer than 256" in err["details"]
    await api.call(
        "PUT",
        "/friend/agree",
        token=bob.token,
        json={"fs_id": "nope", "resp_msg": None},
        expect=404,
    )


@pytest.mark.embedded_only
async def test_remark_chars_limit(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    async with start_server(limits__remark_chars=5) as srv:
        api = Api(session, f"http://127.0.0.1:{srv.api_port}", codes)
        alice = await api.new_user("alice", "alice@example.com")
        bob = await api.new_user("bob", "bob@example.com")
        await befriend(api, alice, bob)
        remark = {"user_id": alice.id, "friend_id": bob.id, "remark": "x" * 6}
        _, err = await api.call("PUT", "/friend/remark", token=alice.token, json=remark, expect=400)
        assert err == {"kind": "BadRequest", "details": "remark is longer than 5 characters"}
        await api.call(
            "PUT", "/friend/remark", token=alice.token, json={**remark, "remark": "x" * 5}
        )


@pytest.mark.embedded_only
async def test_strangers_may_chat_when_allowed(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    async with start_server(server__allow_stranger_messages=True) as srv:
        api = Api(session, f"http://127.0.0.1:{srv.api_port}", codes)
        alice = await api.new_user("alice", "alice@example.com")
        bob = await api.new_user("bob", "bob@example.com")
        a = await Socket.connect(session, alice)
        b = await Socket.connect(session, bob)
        assert (await _chat(a, bob, "hello"))["send_seq"] == 1
        assert (await b.recv_until(lambda m: m["msg_type"] == 0))["seq"] == 1
        await a.close()
        await b.close()
