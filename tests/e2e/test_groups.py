"""Groups over real sockets: create, invite, fan-out, permissions, remove, exit, dismiss."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sandcat.adapters.embedded.sqlite import SqliteDatabase
from tests import wire
from tests.client import Api, CodeBook, Socket, User, befriend, befriend_all, create_group, pull
from tests.conftest import StartServer

INFO_KEYS = [
    "id",
    "owner",
    "name",
    "avatar",
    "description",
    "announcement",
    "create_time",
    "update_time",
]
MEMBER_KEYS = [
    "age",
    "group_id",
    "user_id",
    "group_name",
    "avatar",
    "joined_at",
    "region",
    "gender",
    "remark",
    "signature",
    "role",
]


async def _users(api: Api, *names: str) -> list[User]:
    return [await api.new_user(name, f"{name}@example.com") for name in names]


async def _create(api: Api, owner: User, members: list[str], name: str = "trio") -> dict[str, Any]:
    return await create_group(api, owner, members, name=name, avatar="group.png")


async def _seq(api: Api, user: User) -> int:
    _, body = await api.call("GET", f"/api/message/seq/{user.id}", token=user.token)
    return int(body["seq"])


async def _post(sock: Socket, group_id: str, local_id: str, text: bytes = b"hey") -> dict[str, Any]:
    await sock.send(
        receiver_id=group_id, group_id=group_id, local_id=local_id, msg_type=1, content=text
    )
    return await sock.recv_until(lambda m: m["msg_type"] == 24 and m["local_id"] == local_id)


def _of(kind: int) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["msg_type"] == kind


async def test_group_lifecycle(api: Api, session: aiohttp.ClientSession) -> None:
    alice, bob, carol = await _users(api, "alice", "bob", "carol")
    await befriend_all(api, alice, [bob, carol])  # seq 1 of each: the friend notification
    a, b, c = [await Socket.connect(session, u) for u in (alice, bob, carol)]

    invitation = await _create(api, alice, [bob.id, carol.id, ""])
    info = invitation["info"]
    gid = info["id"]
    assert list(invitation) == ["info", "members"] and list(info) == INFO_KEYS
    assert info["owner"] == alice.id and info["name"] == "trio" and len(gid) == 21
    assert [list(m) for m in invitation["members"]] == [MEMBER_KEYS] * 3
    roles = {m["user_id"]: m["role"] for m in invitation["members"]}
    assert roles == {alice.id: 0, bob.id: 2, carol.id: 2}  # blank ids are dropped

    for sock in (b, c):
        note = await sock.recv_until(_of(2))
        assert note["send_id"] == alice.id and note["receiver_id"] == gid == note["group_id"]
        assert note["seq"] == 2 and note["send_seq"] == 0
        assert wire.decode_group_invitation(note["content"]) == invitation
    _, seqs = await api.call("GET", f"/message/seq/{alice.id}", token=alice.token)
    assert seqs == {"seq": 2, "send_seq": 1}  # the creator's outbox copy of the invitation

    # Group messages: each member but the sender gets it with their own next seq.
    for i, (sock, sender) in enumerate(((b, bob), (c, carol), (b, bob))):
        ack = await _post(sock, gid, f"g{i}", f"msg {i}".encode())
        assert ack["content_type"] != 9 and ack["group_id"] == gid
        for other, peer in ((a, alice), (b, bob), (c, carol)):
            if peer is sender:
                continue
            got = await other.recv_until(_of(1))
            assert got["content"] == f"msg {i}".encode() and got["send_id"] == sender.id
            assert got["receiver_id"] == gid and got["send_seq"] == 0
    assert [await _seq(api, u) for u in (alice, bob, carol)] == [5, 3, 4]

    # A plain member may neither remove nor update: refused, nothing changes, nobody hears.
    remove_bob = {"user_id": carol.id, "group_id": gid, "mem_id": [bob.id]}
    _, err = await api.call(
        "DELETE", "/group/member", token=carol.token, json=remove_bob, expect=403
    )
    assert err["kind"] == "BadRequest" and "owner or an admin" in err["details"]
    update = {
        "id": gid,
        "name": "renamed",
        "avatar": "",
        "description": "about us",
        "announcement": "",
        "update_time": 0,
    }
    await api.call("PUT", f"/group/{carol.id}", token=carol.token, json=update, expect=403)
    await api.call(
        "DELETE",
        "/group",
        token=bob.token,
        json={"user_id": bob.id, "group_id": gid, "is_dismiss": True},
        expect=403,
    )
    assert [await _seq(api, u) for u in (alice, bob, carol)] == [5, 3, 4]

    # The owner updates: members get type 9 with the new GroupInfo.
    _, updated = await api.call("PUT", f"/api/group/{alice.id}", token=alice.token, json=update)
    assert updated["name"] == "renamed" and updated["description"] == "about us"
    assert updated["avatar"] == "group.png" and list(updated) == INFO_KEYS
    for sock in (b, c):
        assert wire.decode_group_info((await sock.recv_until(_of(9)))["content"]) == updated

    # The owner removes Carol: Bob and Carol get type 5 listing her; then Carol gets nothing.
    remove_carol = {"user_id": alice.id, "group_id": gid, "mem_id": [carol.id]}
    await api.call("DELETE", "/api/group/member", token=alice.token, json=remove_carol)
    for sock in (b, c):
        assert wire.decode_strings((await sock.recv_until(_of(5)))["content"]) == [carol.id]
    carol_seq = await _seq(api, carol)
    assert (await _post(b, gid, "after-remove"))["content_type"] != 9
    assert (await a.recv_until(_of(1)))["local_id"] == "after-remove"
    refused = await _post(c, gid, "carol-posts")
    assert refused["content_type"] == 9 and b"not a member" in refused["content"]
    await api.call("GET", f"/group/member/{carol.id}/{gid}", token=carol.token, expect=403)
    await api.call("DELETE", "/group/member", token=alice.token, json=remove_carol, expect=400)

    # Bob leaves: Alice gets type 4 from him; after that Bob gets nothing.
    await api.call(
        "DELETE",
        "/api/group",
        token=bob.token,
        json={"user_id": bob.id, "group_id": gid, "is_dismiss": False},
    )
    left = await a.recv_until(_of(4))
    assert left["send_id"] == bob.id and left["group_id"] == gid and left["content"] == b""
    bob_seq = await _seq(api, bob)
    assert (await _post(a, gid, "alone"))["content_type"] != 9
    assert (await _seq(api, bob), await _seq(api, carol)) == (bob_seq, carol_seq)

    # Dismiss: the owner only; afterwards the group accepts no messages.
    await api.call(
        "PUT",
        "/api/group/invite",
        token=alice.token,
        json={"user_id": alice.id, "group_id": gid, "members": [bob.id]},
    )
    assert wire.decode_strings((await b.recv_until(_of(3)))["content"]) == [bob.id]
    await api.call(
        "DELETE",
        "/api/group",
        token=alice.token,
        json={"user_id": alice.id, "group_id": gid, "is_dismiss": True},
    )
    gone = await b.recv_until(_of(6))
    assert gone["send_id"] == alice.id and gone["group_id"] == gid
    refused = await _post(a, gid, "too-late")
    assert refused["content_type"] == 9 and b"no such group" in refused["content"]
    await api.call("GET", f"/group/{alice.id}/{gid}", token=alice.token, expect=404)
    for sock in (a, b, c):
        await sock.close()


async def test_invite_and_reads(api: Api, session: aiohttp.ClientSession) -> None:
    alice, bob, carol, dave = await _users(api, "alice", "bob", "carol", "dave")
    await befriend(api, alice, bob)
    await befriend(api, bob, carol)  # Carol's seq 1
    gid = (await _create(api, alice, [bob.id]))["info"]["id"]
    b = await Socket.connect(session, bob)
    assert (await _post(b, gid, "before-carol"))["content_type"] != 9

    invite = {"user_id": bob.id, "group_id": gid, "members": [carol.id, carol.id, ""]}
    await api.call("PUT", "/group/invite", token=bob.token, json=invite)  # any member may invite
    await api.call("PUT", "/group/invite", token=bob.token, json=invite, expect=400)
    await api.call(
        "PUT",
        "/group/invite",
        token=dave.token,
        json={**invite, "user_id": dave.id, "members": [dave.id]},
        expect=403,
    )
    await api.call(
        "PUT", "/group/invite", token=alice.token, json={**invite, "user_id": bob.id}, expect=401
    )

    # Carol's inbox starts with the invitation: nothing sent before she joined.
    (joined,) = await pull(api, carol, start=1, end=10)
    assert joined["msg_type"] == 3 and joined["send_id"] == bob.id and joined["seq"] == 2
    assert wire.decode_strings(bytes(joined["content"])) == [carol.id]
    assert [m["msg_type"] for m in await pull(api, alice, start=1, end=10)] == [1, 3]

    _, info = await api.call("GET", f"/api/group/{carol.id}/{gid}", token=carol.token)
    assert list(info) == INFO_KEYS and info["id"] == gid
    _, both = await api.call("GET", f"/api/group/member/{carol.id}/{gid}", token=carol.token)
    assert list(both) == ["group", "members"] and both["group"] == info
    assert [m["user_id"] for m in both["members"]] == [alice.id, bob.id, carol.id]
    _, some = await api.call(
        "POST",
        "/api/group/member",
        token=carol.token,
        json={"user_id": carol.id, "group_id": gid, "mem_ids": [bob.id]},
    )
    assert [(m["user_id"], m["group_name"], m["role"]) for m in some] == [(bob.id, "bob", 2)]
    for path in (f"/group/{dave.id}/{gid}", f"/group/member/{dave.id}/{gid}"):
        await api.call("GET", path, token=dave.token, expect=403)
    await api.call(
        "POST",
        "/group/member",
        token=dave.token,
        json={"user_id": dave.id, "group_id": gid, "mem_ids": []},
        expect=403,
    )
    await api.call("GET", f"/group/{dave.id}/nope", token=dave.token, expect=404)
    await api.call("GET", f"/group/{dave.id}/{gid}", token=carol.token, expect=401)
    # The owner cannot leave (only dismiss) and cannot be removed.
    await api.call(
        "DELETE",
        "/group",
        token=alice.token,
        json={"user_id": alice.id, "group_id": gid, "is_dismiss": False},
        expect=400,
    )
    await b.close()


async def test_offline_members_pull_by_seq(api: Api, session: aiohttp.ClientSession) -> None:
    alice, bob, carol = await _users(api, "alice", "bob", "carol")
    await befriend_all(api, alice, [bob, carol])  # seq 1 of each: the friend notification
    gid = (await _create(api, alice, [bob.id, carol.id]))["info"]["id"]
    a = await Socket.connect(session, alice)
    for i in range(5):
        await _post(a, gid, f"o{i}", f"offline {i}".encode())
    for user in (bob, carol):
        assert await _seq(api, user) == 7
        pulled = await pull(api, user, start=1, end=7)
        assert [m["seq"] for m in pulled] == list(range(2, 8))
        assert [m["msg_type"] for m in pulled] == [2, 1, 1, 1, 1, 1]
        assert [bytes(m["content"]) for m in pulled[1:]] == [
            f"offline {i}".encode() for i in range(5)
        ]
        assert all(m["group_id"] == gid and m["send_id"] == alice.id for m in pulled)
    # The sender's own devices sync the sent copies by send_seq (seq zeroed).
    sent = await pull(api, alice, start=0, end=0, send_start=0, send_end=6)
    assert [(m["msg_type"], m["send_seq"], m["seq"]) for m in sent] == [(2, 1, 0)] + [
        (1, n, 0) for n in range(2, 7)
    ]
    await a.close()


async def test_sender_other_platform_gets_group_copy(
    api: Api, session: aiohttp.ClientSession
) -> None:
    alice, bob = await _users(api, "alice", "bob")
    await befriend(api, alice, bob)
    gid = (await _create(api, alice, [bob.id]))["info"]["id"]
    desktop = await Socket.connect(session, alice, platform=0)
    mobile = await Socket.connect(session, alice, platform=1)
    ack = await _post(desktop, gid, "multi")
    echo = await mobile.recv_until(_of(1))
    assert echo["seq"] == 0 and echo["send_seq"] == ack["send_seq"] == 2
    await desktop.close()
    await mobile.close()


@pytest.mark.embedded_only
async def test_group_limits(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    async with start_server(limits__group_members=3, limits__name_chars=10) as srv:
        api = Api(session, f"http://127.0.0.1:{srv.api_port}", codes)
        alice, bob, carol, dave = await _users(api, "alice", "bob", "carol", "dave")
        await befriend_all(api, alice, [bob, carol, dave])
        body = {"id": "", "owner": alice.id, "avatar": "", "group_name": "ok", "members_id": []}
        _, err = await api.call(
            "POST",
            f"/group/{alice.id}",
            token=alice.token,
            expect=400,
            json={**body, "members_id": [bob.id, carol.id, dave.id]},
        )
        assert err == {"kind": "BadRequest", "details": "at most 3 user ids per request"}
        _, err = await api.call(
            "POST",
            f"/group/{alice.id}",
            token=alice.token,
            expect=400,
            json={**body, "group_name": "x" * 11},
        )
        assert "longer than 10" in err["details"]
        await api.call(
            "POST",
            f"/group/{alice.id}",
            token=alice.token,
            expect=401,
            json={**body, "owner": bob.id},
        )
        gid = (await _create(api, alice, [bob.id, carol.id], name="ok"))["info"]["id"]
        _, err = await api.call(
            "PUT",
            "/group/invite",
            token=alice.token,
            expect=400,
            json={"user_id": alice.id, "group_id": gid, "members": [dave.id]},
        )
        assert err["details"] == "a group has at most 3 members"


@pytest.mark.embedded_only
async def test_fan_out_costs_one_write_whatever_the_size(
    start_server: StartServer,
    session: aiohttp.ClientSession,
    codes: CodeBook,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A message to 1,000 members: one batched write, no member-list read once cached."""
    # The members are rows, not users who could accept a friend request: strangers allowed.
    # The bots' supervisor reads the bot list every third of the lease: a long lease keeps
    # its reads (it runs once, at start) out of the rounds counted below.
    async with start_server(limits__group_invite_strangers=True, bots__lease_seconds=3600) as srv:
        api = Api(session, f"http://127.0.0.1:{srv.api_port}", codes)
        (owner,) = await _users(api, "owner")
        # Bulk members straight into the users table (the public API would need 999 codes).
        ids = [f"member-{i:04d}-xxxxxxxxx" for i in range(999)]
        with sqlite3.connect(tmp_path / "data" / "sandcat.db") as conn:
            conn.executemany(
                "INSERT INTO users (id, name, account, password, salt, avatar, create_time, "
                "update_time) VALUES (?, ?, ?, '', '', 'avatar1.png', 1, 1)",
                [(uid, uid[:11], uid) for uid in ids],
            )
        gid = (await _create(api, owner, ids[:1], name="big"))["info"]["id"]
        await api.call(
            "PUT",
            "/group/invite",
            token=owner.token,
            json={"user_id": owner.id, "group_id": gid, "members": ids[1:]},
        )
        sock = await Socket.connect(session, owner)

        calls = {"write": 0, "read": 0}

        def counting(name: str, real: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
            async def wrapper(self: SqliteDatabase, fn: Callable[..., Any]) -> Any:
                calls[name] += 1
                return await real(self, fn)

            return wrapper

        monkeypatch.setattr(SqliteDatabase, "write", counting("write", SqliteDatabase.write))
        monkeypatch.setattr(SqliteDatabase, "read", counting("read", SqliteDatabase.read))
        for round_, reads in ((1, 1), (2, 0)):  # the first message loads the member set once
            calls.update(write=0, read=0)
            ack = await _post(sock, gid, f"big-{round_}")
            assert ack["content_type"] != 9  # acked after its one write: the counts are final
            assert calls == {"write": 1, "read": reads}, round_
        monkeypatch.undo()

        with sqlite3.connect(tmp_path / "data" / "sandcat.db") as conn:
            rows = conn.execute(
                "SELECT box, COUNT(*), COUNT(DISTINCT owner_id), MIN(seq), MAX(seq) FROM inbox "
                "WHERE message_id = (SELECT id FROM messages WHERE server_id = ?) "
                "GROUP BY box ORDER BY box",
                (ack["server_id"],),
            ).fetchall()
            stored = conn.execute(
                "SELECT COUNT(*) FROM messages WHERE server_id = ?", (ack["server_id"],)
            ).fetchone()
        assert stored == (1,)  # the message itself once, whatever the group's size
        # 999 member copies at each member's own next seq (4 for the one who also got the
        # invitation, 3 for the others),
        # and the sender's outbox copy.
        assert rows == [(0, 999, 999, 3, 4), (1, 1, 1, 4, 4)]
        await sock.close()


@pytest.mark.embedded_only
async def test_big_group_invitation_carries_a_bounded_member_list(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook, tmp_path: Path
) -> None:
    """Creating a 300-member group: the response lists everyone, each member's stored
    notification carries the first 100 (not 300 times 300 entries)."""
    async with start_server(limits__group_invite_strangers=True) as srv:
        api = Api(session, f"http://127.0.0.1:{srv.api_port}", codes)
        (owner,) = await _users(api, "owner")
        ids = [f"member-{i:04d}-xxxxxxxxx" for i in range(299)]
        with sqlite3.connect(tmp_path / "data" / "sandcat.db") as conn:
            conn.executemany(
                "INSERT INTO users (id, name, account, password, salt, avatar, create_time, "
                "update_time) VALUES (?, ?, ?, '', '', 'avatar1.png', 1, 1)",
                [(uid, uid[:11], uid) for uid in ids],
            )
        made = await _create(api, owner, ids, name="crowd")
        assert len(made["members"]) == 300
        with sqlite3.connect(tmp_path / "data" / "sandcat.db") as conn:
            (content,) = conn.execute(
                "SELECT m.content FROM inbox AS i JOIN messages AS m ON m.id = i.message_id "
                "WHERE i.owner_id = ? AND m.msg_type = 2",
                (ids[0],),
            ).fetchone()
        invitation = wire.decode_group_invitation(bytes(content))
        assert len(invitation["members"]) == 100 and invitation["info"]["name"] == "crowd"


async def test_only_friends_can_be_put_into_a_group(api: Api) -> None:
    """Group fan-out needs consent: a stranger is neither made a member at creation nor
    invited later (400, nothing stored for them); once a friend, they can be."""
    alice, bob, eve = await _users(api, "alice", "bob", "eve")
    await befriend(api, alice, bob)
    body = {"id": "", "owner": alice.id, "avatar": "", "group_name": "g", "members_id": []}
    _, err = await api.call(
        "POST",
        f"/api/group/{alice.id}",
        token=alice.token,
        json={**body, "members_id": [bob.id, eve.id]},
        expect=400,
    )
    assert err["kind"] == "BadRequest" and eve.id in err["details"] and bob.id not in err["details"]
    _, err = await api.call(
        "POST",
        f"/api/group/{alice.id}",
        token=alice.token,
        json={**body, "members_id": ["no-such-user"]},
        expect=400,
    )
    assert "no-such-user" in err["details"]
    gid = (await _create(api, alice, [bob.id]))["info"]["id"]
    for inviter in (alice, bob):  # Bob is a member and Alice's friend, not Eve's
        _, err = await api.call(
            "PUT",
            "/api/group/invite",
            token=inviter.token,
            json={"user_id": inviter.id, "group_id": gid, "members": [eve.id]},
            expect=400,
        )
        assert err["kind"] == "BadRequest" and eve.id in err["details"]
    assert await _seq(api, eve) == 0  # nothing was ever stored for her
    _, both = await api.call("GET", f"/api/group/member/{alice.id}/{gid}", token=alice.token)
    assert [m["user_id"] for m in both["members"]] == [alice.id, bob.id]

    await befriend(api, eve, bob)  # Eve's seq 1
    await api.call(
        "PUT",
        "/api/group/invite",
        token=bob.token,
        json={"user_id": bob.id, "group_id": gid, "members": [eve.id]},
    )
    (joined,) = await pull(api, eve, start=1, end=10)
    assert joined["msg_type"] == 3 and joined["group_id"] == gid
