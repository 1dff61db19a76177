"""``FriendStore`` and ``GroupStore``: SQLite (embedded) and PostgreSQL behave alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from sandcat.adapters.embedded.social import SqliteFriendStore, SqliteGroupStore
from sandcat.adapters.embedded.users import SqliteUserStore
from sandcat.adapters.postgres.social import PostgresFriendStore, PostgresGroupStore
from sandcat.adapters.postgres.users import PostgresUserStore
from sandcat.domain import UserRecord
from sandcat.ports import FriendStore, GroupStore, UserStore
from sandcat.protocol.payloads import Friend, FriendshipWithUser, GroupInfo
from tests.contracts.conftest import OpenPg, OpenSqlite

PENDING, ACCEPTED, REJECTED, DELETED = 0, 1, 2, 4
OWNER, ADMIN, MEMBER = 0, 1, 2


@dataclass
class Social:
    users: UserStore
    friends: FriendStore
    groups: GroupStore

    async def add_users(self, *ids: str, deleted: bool = False) -> None:
        for uid in ids:
            await self.users.insert_user(
                UserRecord(
                    id=uid,
                    name=f"name-{uid}",
                    account=f"acc-{uid}",
                    password="p",
                    salt="s",
                    avatar=f"{uid}.png",
                    gender="m",
                    age=20,
                    region="r",
                    email=f"{uid}@example.com",
                    signature=f"sig-{uid}",
                    create_time=1,
                    update_time=1,
                    is_delete=deleted,
                )
            )


@pytest.fixture(params=["sqlite", "postgres"])
async def social(
    request: pytest.FixtureRequest, open_sqlite: OpenSqlite, open_pg: OpenPg
) -> AsyncIterator[Social]:
    if request.param == "sqlite":
        async with open_sqlite() as db:
            yield Social(SqliteUserStore(db), SqliteFriendStore(db), SqliteGroupStore(db))
    else:
        async with open_pg() as pool:
            yield Social(
                PostgresUserStore(pool=pool),
                PostgresFriendStore(pool=pool),
                PostgresGroupStore(pool=pool),
            )


async def request_friend(s: Social, new_id: str, frm: str, to: str, now: int = 100) -> str:
    fs_id = await try_request(s, new_id, frm, to, now, renew_rejected_before=now)
    assert fs_id is not None
    return fs_id


async def try_request(
    s: Social, new_id: str, frm: str, to: str, now: int, *, renew_rejected_before: int
) -> str | None:
    return await s.friends.upsert_request(
        new_id=new_id,
        user_id=frm,
        friend_id=to,
        apply_msg=f"hello from {frm}",
        req_remark=f"{to} as {frm} calls them",
        source="search",
        now_ms=now,
        renew_rejected_before=renew_rejected_before,
    )


def friend_view(
    fs_id: str, uid: str, remark: str | None, status: int, t: tuple[int, int]
) -> Friend:
    return Friend(
        fs_id=fs_id,
        friend_id=uid,
        account=f"acc-{uid}",
        name=f"name-{uid}",
        avatar=f"{uid}.png",
        gender="m",
        age=20,
        region="r",
        status=status,
        remark=remark,
        email=f"{uid}@example.com",
        source="search",
        signature=f"sig-{uid}",
        create_time=t[0],
        update_time=t[1],
    )


async def test_a_request_is_created_then_renewed_with_the_same_id(social: Social) -> None:
    await social.add_users("a", "b")
    assert await request_friend(social, "fs1", "a", "b") == "fs1"
    request = await social.friends.get_request("fs1")
    assert request is not None
    assert (request.user_id, request.friend_id, request.status) == ("a", "b", PENDING)
    assert (request.apply_msg, request.req_remark, request.source) == (
        "hello from a",
        "b as a calls them",
        "search",
    )
    assert await social.friends.reject_request("fs1", "no", 150)
    assert await request_friend(social, "fs2", "a", "b", now=200) == "fs1"
    renewed = await social.friends.get_request("fs1")
    assert renewed is not None
    assert (renewed.status, renewed.create_time, renewed.update_time) == (PENDING, 200, 200)
    assert await social.friends.get_request("fs2") is None


async def test_a_pending_or_recently_rejected_request_is_left_as_it_is(social: Social) -> None:
    await social.add_users("a", "b")
    assert await request_friend(social, "fs1", "a", "b", now=100) == "fs1"
    assert await try_request(social, "fs2", "a", "b", 150, renew_rejected_before=150) is None
    assert await social.friends.reject_request("fs1", "no", 200)
    # Rejected at 200: a re-apply renews it only when the cool-down ends before now.
    assert await try_request(social, "fs3", "a", "b", 250, renew_rejected_before=200) is None
    request = await social.friends.get_request("fs1")
    assert request is not None
    assert (request.status, request.create_time, request.update_time) == (REJECTED, 100, 200)
    assert await try_request(social, "fs4", "a", "b", 300, renew_rejected_before=201) == "fs1"
    for unused in ("fs2", "fs3", "fs4"):
        assert await social.friends.get_request(unused) is None


async def test_accept_makes_both_directions_friends_once(social: Social) -> None:
    await social.add_users("a", "b")
    fs_id = await request_friend(social, "fs1", "a", "b")
    assert not await social.friends.are_friends("a", "b")
    accepted = await social.friends.accept_request(fs_id, "ok", "a as b calls them", 300)
    assert accepted == (
        friend_view(fs_id, "a", "a as b calls them", ACCEPTED, (300, 300)),
        friend_view(fs_id, "b", "b as a calls them", ACCEPTED, (300, 300)),
    )
    assert await social.friends.are_friends("a", "b")
    assert await social.friends.are_friends("b", "a")
    assert await social.friends.accept_request(fs_id, "again", None, 400) is None
    assert not await social.friends.reject_request(fs_id, "late", 400)
    request = await social.friends.get_request(fs_id)
    assert request is not None and request.status == ACCEPTED


async def test_a_rejected_request_cannot_be_accepted(social: Social) -> None:
    await social.add_users("a", "b")
    fs_id = await request_friend(social, "fs1", "a", "b")
    assert await social.friends.reject_request(fs_id, "no", 200)
    assert not await social.friends.reject_request(fs_id, "no", 200)
    assert await social.friends.accept_request(fs_id, None, None, 300) is None
    assert not await social.friends.are_friends("a", "b")
    assert await social.friends.accept_request("unknown", None, None, 300) is None


async def test_delete_ends_both_directions(social: Social) -> None:
    await social.add_users("a", "b", "c")
    fs_id = await request_friend(social, "fs1", "a", "b")
    await social.friends.accept_request(fs_id, None, "remark", 200)
    assert not await social.friends.delete_friend("a", "c", fs_id, 300)  # not this pair
    assert not await social.friends.delete_friend("a", "b", "other-fs", 300)
    assert await social.friends.delete_friend("b", "a", fs_id, 300)
    assert not await social.friends.are_friends("a", "b")
    assert not await social.friends.are_friends("b", "a")
    assert not await social.friends.delete_friend("a", "b", fs_id, 400)
    request = await social.friends.get_request(fs_id)
    assert request is not None and (request.status, request.update_time) == (DELETED, 300)
    changed = await social.friends.friends_since("a", 250)
    assert [(f.friend_id, f.status, f.update_time) for f in changed] == [("b", DELETED, 300)]


async def test_remarks_and_friend_sync_by_time(social: Social) -> None:
    await social.add_users("a", "b", "c", "d")
    for n, other in enumerate(("b", "c", "d")):
        fs_id = await request_friend(social, f"fs-{other}", "a", other)
        await social.friends.accept_request(fs_id, None, None, 100 * (n + 1))
    assert await social.friends.set_remark("a", "c", "see", 500)
    assert not await social.friends.set_remark("b", "c", "strangers", 500)
    assert [f.friend_id for f in await social.friends.friends_since("a", 0)] == ["b", "d", "c"]
    since = await social.friends.friends_since("a", 250)
    assert [(f.friend_id, f.remark, f.update_time) for f in since] == [
        ("d", "d as a calls them", 300),
        ("c", "see", 500),
    ]
    assert await social.friends.friends_since("a", 500) == []


async def test_deleted_users_drop_out_of_friend_lists_and_requests(social: Social) -> None:
    await social.add_users("a", "b")
    await social.add_users("gone", deleted=True)
    fs_id = await request_friend(social, "fs1", "a", "gone")
    await social.friends.accept_request(fs_id, None, None, 100)
    await request_friend(social, "fs2", "gone", "b")
    assert await social.friends.friends_since("a", 0) == []
    assert await social.friends.requests_to("b", since_ms=0, pending_only=False) == []


async def test_requests_to_a_user_show_the_requester(social: Social) -> None:
    await social.add_users("a", "b", "c")
    await request_friend(social, "fs-a", "a", "c", now=100)
    await request_friend(social, "fs-b", "b", "c", now=200)
    await social.friends.reject_request("fs-b", None, 300)
    expected_a = FriendshipWithUser(
        fs_id="fs-a",
        user_id="a",
        name="name-a",
        avatar="a.png",
        gender="m",
        age=20,
        region="r",
        status=PENDING,
        apply_msg="hello from a",
        source="search",
        create_time=100,
        account="acc-a",
        remark=None,
        email=None,
    )
    assert await social.friends.requests_to("c", since_ms=0, pending_only=True) == [expected_a]
    every = await social.friends.requests_to("c", since_ms=0, pending_only=False)
    assert [(r.fs_id, r.status) for r in every] == [("fs-a", PENDING), ("fs-b", REJECTED)]
    later = await social.friends.requests_to("c", since_ms=150, pending_only=False)
    assert [r.fs_id for r in later] == ["fs-b"]
    assert await social.friends.requests_to("a", since_ms=0, pending_only=False) == []


def group_info(gid: str = "g1", owner: str = "o") -> GroupInfo:
    return GroupInfo(
        id=gid,
        owner=owner,
        name="team",
        avatar="g.png",
        description="about",
        announcement="news",
        create_time=1000,
        update_time=1000,
    )


async def test_create_group_keeps_only_real_users_with_the_owner_first(social: Social) -> None:
    # byte order puts "B" before "a"; a locale collation would not
    await social.add_users("o", "a", "B")
    await social.add_users("gone", deleted=True)
    members = await social.groups.create_group(group_info(), ["a", "ghost", "o", "gone", "B"])
    assert [(m.user_id, m.role) for m in members] == [("o", OWNER), ("B", MEMBER), ("a", MEMBER)]
    first = members[1]
    assert (first.group_id, first.group_name, first.avatar, first.joined_at) == (
        "g1",
        "name-B",
        "B.png",
        1000,
    )
    assert (first.age, first.region, first.gender, first.remark, first.signature) == (
        20,
        "r",
        "m",
        None,
        "sig-B",
    )
    assert await social.groups.get_group("g1") == group_info()
    assert await social.groups.get_group("nope") is None
    assert await social.groups.member_roles("g1") == {"o": OWNER, "a": MEMBER, "B": MEMBER}
    assert await social.groups.member_role("g1", "o") == OWNER
    assert await social.groups.member_role("g1", "ghost") is None
    assert await social.groups.member_roles("nope") == {}


async def test_members_add_and_remove(social: Social) -> None:
    await social.add_users("o", "a", "b", "c")
    await social.groups.create_group(group_info(), ["o", "a"])
    added = await social.groups.add_members("g1", ["c", "a", "ghost", "b", "c"], 2000)
    assert added == ["c", "b"]
    assert await social.groups.add_members("g1", ["b"], 3000) == []
    members = await social.groups.members("g1")
    assert [(m.user_id, m.joined_at) for m in members] == [
        ("o", 1000),
        ("a", 1000),
        ("b", 2000),
        ("c", 2000),
    ]
    chosen = await social.groups.members("g1", ["c", "a", "ghost"])
    assert [m.user_id for m in chosen] == ["a", "c"]
    assert await social.groups.remove_members("g1", ["b", "ghost", "a"]) == ["b", "a"]
    assert await social.groups.remove_members("g1", ["b"]) == []
    assert set(await social.groups.member_roles("g1")) == {"o", "c"}


async def test_update_keeps_empty_fields_and_delete_removes_everything(social: Social) -> None:
    await social.add_users("o", "a")
    await social.groups.create_group(group_info(), ["o", "a"])
    updated = await social.groups.update_group(
        "g1", name="renamed", avatar="", description="", announcement="new", now_ms=5000
    )
    expected = GroupInfo(
        id="g1",
        owner="o",
        name="renamed",
        avatar="g.png",
        description="about",
        announcement="new",
        create_time=1000,
        update_time=5000,
    )
    assert updated == expected
    assert await social.groups.get_group("g1") == expected
    missing = await social.groups.update_group(
        "nope", name="x", avatar="", description="", announcement="", now_ms=1
    )
    assert missing is None
    await social.groups.delete_group("g1")
    assert await social.groups.get_group("g1") is None
    assert await social.groups.member_roles("g1") == {}
    assert await social.groups.members("g1") == []
