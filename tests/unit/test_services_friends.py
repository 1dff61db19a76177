"""FriendService's permission rules over in-process fakes (``tests/fakes.py``): who may ask,
answer, delete and rename, the re-apply cool-down, and the notices each step submits."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sandcat.config import LimitsConfig
from sandcat.errors import BadRequest, Forbidden, NotFound, TooManyRequests
from sandcat.protocol.msg import MsgType
from sandcat.services.friends import FriendService
from tests.clock import FakeClock
from tests.fakes import PENDING, FakeFriends, FakeLog, FakeUsers, friend_service


@dataclass
class World:
    clock: FakeClock
    log: FakeLog
    store: FakeFriends
    friends: FriendService
    limits: LimitsConfig

    async def apply(self, user_id: str, friend_id: str, **text: str | None) -> str:
        request = await self.friends.apply(
            user_id=user_id,
            friend_id=friend_id,
            apply_msg=text.get("apply_msg"),
            req_remark=text.get("req_remark"),
            source=text.get("source") or "search",
        )
        return request.fs_id


@pytest.fixture
def world() -> World:
    clock, log, users = FakeClock(), FakeLog(), FakeUsers()
    users.add("alice", "bob", "carol")
    store = FakeFriends(users)
    limits = LimitsConfig()
    friends = friend_service(users, clock, store=store, log=log, limits=limits)
    return World(clock, log, store, friends, limits)


async def test_apply_refuses_oneself_unknown_users_friends_and_long_texts(world: World) -> None:
    with pytest.raises(BadRequest, match="yourself"):
        await world.apply("alice", "alice")
    with pytest.raises(NotFound):
        await world.apply("alice", "nobody")
    with pytest.raises(BadRequest, match="apply_msg"):
        await world.apply("alice", "bob", apply_msg="x" * (world.limits.remark_chars + 1))
    await world.friends.agree("bob", await world.apply("alice", "bob"), None, None)
    with pytest.raises(BadRequest, match="already friends"):
        await world.apply("alice", "bob")
    with pytest.raises(BadRequest, match="already friends"):
        await world.apply("bob", "alice")


async def test_a_request_notifies_its_target_once(world: World) -> None:
    fs_id = await world.apply("alice", "bob", apply_msg="hi", req_remark="Bobby")
    [notice] = world.log.submissions
    assert notice.msg.msg_type == MsgType.FRIEND_APPLY_REQ
    assert (notice.msg.send_id, notice.receivers) == ("alice", ["bob"])
    assert not notice.outbox and not notice.push_self
    # Asking again while it is pending answers the request as it stands: no second notice.
    again = await world.friends.apply(
        user_id="alice", friend_id="bob", apply_msg="hi?", req_remark=None, source="search"
    )
    assert (again.fs_id, again.status, again.remark) == (fs_id, PENDING, "Bobby")
    assert len(world.log.submissions) == 1
    assert [r.fs_id for r in await world.friends.pending("bob")] == [fs_id]
    assert await world.friends.pending("alice") == []


async def test_only_the_target_answers_a_pending_request(world: World) -> None:
    fs_id = await world.apply("alice", "bob")
    for outsider in ("alice", "carol"):
        with pytest.raises(Forbidden):
            await world.friends.agree(outsider, fs_id, None, None)
        with pytest.raises(Forbidden):
            await world.friends.deny(outsider, fs_id, None)
    with pytest.raises(NotFound):
        await world.friends.agree("bob", "no-such-request", None, None)
    requester = await world.friends.agree("bob", fs_id, "welcome", "Ali")
    assert (requester.friend_id, requester.remark) == ("alice", "Ali")
    assert world.log.kinds() == [MsgType.FRIEND_APPLY_REQ, MsgType.FRIEND_APPLY_RESP]
    assert world.log.submissions[-1].receivers == ["alice"]
    assert await world.friends.are_friends("alice", "bob")
    assert await world.friends.are_friends("bob", "alice")
    with pytest.raises(BadRequest, match="no longer pending"):
        await world.friends.agree("bob", fs_id, None, None)
    with pytest.raises(BadRequest, match="no longer pending"):
        await world.friends.deny("bob", fs_id, None)


async def test_a_denied_requester_waits_for_the_cool_down(world: World) -> None:
    fs_id = await world.apply("alice", "bob")
    await world.friends.deny("bob", fs_id, "no")
    assert world.log.kinds() == [MsgType.FRIEND_APPLY_REQ]  # a denial pushes nothing
    cool_down = world.limits.friend_reapply_cooldown_seconds
    world.clock.advance(cool_down - 10)
    with pytest.raises(TooManyRequests) as refused:
        await world.apply("alice", "bob")
    assert refused.value.retry_after == 10
    assert len(world.log.submissions) == 1
    # bob may still ask alice: the cool-down is per direction.
    await world.apply("bob", "alice")
    world.clock.advance(10)  # a denial exactly as old as the cool-down still stands
    with pytest.raises(TooManyRequests):
        await world.apply("alice", "bob")
    world.clock.advance(0.001)
    assert await world.apply("alice", "bob") == fs_id  # the same request, pending again
    assert world.log.kinds()[-1] == MsgType.FRIEND_APPLY_REQ
    assert len(world.log.submissions) == 3


async def test_delete_and_remark_need_a_friendship(world: World) -> None:
    with pytest.raises(BadRequest):
        await world.friends.delete("alice", "", "fs")
    with pytest.raises(NotFound):
        await world.friends.delete("alice", "bob", "fs")
    with pytest.raises(NotFound):
        await world.friends.set_remark("alice", "bob", "B")
    fs_id = await world.apply("alice", "bob")
    with pytest.raises(NotFound):  # asked is not befriended
        await world.friends.set_remark("alice", "bob", "B")
    await world.friends.agree("bob", fs_id, None, None)
    with pytest.raises(BadRequest):
        await world.friends.set_remark("alice", "bob", "")
    with pytest.raises(BadRequest):
        await world.friends.set_remark("alice", "bob", "x" * (world.limits.remark_chars + 1))
    await world.friends.set_remark("alice", "bob", "B")
    assert world.store.rows[("alice", "bob")][1] == "B"
    with pytest.raises(NotFound):  # carol is nobody's friend
        await world.friends.delete("carol", "bob", fs_id)
    await world.friends.delete("bob", "alice", fs_id)
    assert world.log.kinds()[-1] == MsgType.FRIEND_DELETE
    assert world.log.submissions[-1].receivers == ["alice"]
    assert not await world.friends.are_friends("alice", "bob")
    with pytest.raises(NotFound):
        await world.friends.delete("alice", "bob", fs_id)
