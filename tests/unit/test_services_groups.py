"""GroupService's permission rules over in-process fakes (``tests/fakes.py``): who may
create with whom, invite, update, remove, leave, dismiss and post, and who each change's
notice goes to."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sandcat.config import LimitsConfig
from sandcat.domain import GroupRole
from sandcat.errors import BadRequest, Forbidden, NotFound
from sandcat.protocol.msg import MsgType
from sandcat.services.groups import GroupService
from sandcat.services.messages import MessageRefused
from tests.clock import FakeClock
from tests.fakes import FakeFriends, FakeGroups, FakeLog, FakeUsers, group_service


@dataclass
class World:
    log: FakeLog
    store: FakeGroups
    friends: FakeFriends
    groups: GroupService
    limits: LimitsConfig

    async def group(self, owner: str, *members: str) -> str:
        """A group of ``owner``'s friends; the log forgets its invitation."""
        self.friends.befriend(owner, *members)
        invitation = await self.groups.create(
            user_id=owner, name="g", avatar="", member_ids=list(members)
        )
        self.log.submissions.clear()
        assert invitation.info is not None
        return invitation.info.id

    def last(self) -> tuple[int, str, list[str], frozenset[str] | None]:
        """The last notice: its type, actor, receivers and the members it installs."""
        sub = self.log.submissions[-1]
        return sub.msg.msg_type, sub.msg.send_id, sorted(sub.receivers), sub.members


@pytest.fixture
def world() -> World:
    clock, log, users = FakeClock(), FakeLog(), FakeUsers()
    users.add("owner", "admin", "ann", "bob", "carol", "dave")
    store, friends, limits = FakeGroups(users), FakeFriends(users), LimitsConfig()
    groups = group_service(users, friends, clock, store=store, log=log, limits=limits)
    return World(log, store, friends, groups, limits)


async def test_only_friends_are_put_into_a_new_group(world: World) -> None:
    world.friends.befriend("owner", "ann")
    with pytest.raises(BadRequest, match="not friends: bob"):
        await world.groups.create(user_id="owner", name="g", avatar="", member_ids=["ann", "bob"])
    assert world.store.groups == {} and world.log.submissions == []
    invitation = await world.groups.create(
        user_id="owner", name=" g ", avatar="", member_ids=["ann", "ann", " "]
    )
    assert invitation.info is not None and invitation.info.name == "g"
    assert [m.user_id for m in invitation.members] == ["owner", "ann"]
    assert world.last() == (
        MsgType.GROUP_INVITATION,
        "owner",
        ["ann"],
        frozenset({"owner", "ann"}),
    )
    world.limits.group_invite_strangers = True
    invitation = await world.groups.create(
        user_id="owner", name="g2", avatar="", member_ids=["bob", "nobody"]
    )
    assert [m.user_id for m in invitation.members] == ["owner", "bob"]  # users only
    assert world.last()[2] == ["bob"]


async def test_members_invite_their_friends_and_everyone_hears_of_it(world: World) -> None:
    group_id = await world.group("owner", "ann")
    with pytest.raises(Forbidden):
        await world.groups.invite("bob", group_id, ["carol"])
    with pytest.raises(NotFound):
        await world.groups.invite("ann", "no-such-group", ["carol"])
    with pytest.raises(BadRequest, match="not friends: carol"):
        await world.groups.invite("ann", group_id, ["carol"])
    with pytest.raises(BadRequest, match="already a member"):
        await world.groups.invite("ann", group_id, ["owner"])
    world.friends.befriend("ann", "carol")
    await world.groups.invite("ann", group_id, ["carol", "owner"])
    assert world.last() == (
        MsgType.GROUP_INVITE_NEW,
        "ann",
        ["carol", "owner"],
        frozenset({"owner", "ann", "carol"}),
    )


async def test_only_the_owner_and_admins_update_the_group(world: World) -> None:
    group_id = await world.group("owner", "admin", "ann")
    world.store.roles[group_id]["admin"] = GroupRole.ADMIN
    with pytest.raises(Forbidden):
        await world.groups.update(
            "ann", group_id, name="x", avatar="", description="", announcement=""
        )
    with pytest.raises(Forbidden):
        await world.groups.update(
            "bob", group_id, name="x", avatar="", description="", announcement=""
        )
    info = await world.groups.update(
        "admin", group_id, name="new", avatar="", description="about", announcement=""
    )
    assert (info.name, info.description, info.avatar) == ("new", "about", "")
    assert world.last()[:3] == (MsgType.GROUP_UPDATE, "admin", ["ann", "owner"])
    with pytest.raises(BadRequest, match="description"):
        await world.groups.update(
            "owner",
            group_id,
            name="",
            avatar="",
            description="x" * (world.limits.text_bytes + 1),
            announcement="",
        )


async def test_removal_follows_the_roles(world: World) -> None:
    group_id = await world.group("owner", "admin", "ann", "bob")
    world.store.roles[group_id]["admin"] = GroupRole.ADMIN
    with pytest.raises(Forbidden):  # a plain member removes nobody
        await world.groups.remove("ann", group_id, ["bob"])
    with pytest.raises(Forbidden, match="owner cannot be removed"):
        await world.groups.remove("admin", group_id, ["owner"])
    with pytest.raises(BadRequest, match="leave"):
        await world.groups.remove("admin", group_id, ["admin"])
    with pytest.raises(BadRequest, match="none of the listed"):
        await world.groups.remove("admin", group_id, ["carol"])
    await world.groups.remove("admin", group_id, ["bob"])
    assert world.last() == (
        MsgType.GROUP_REMOVE_MEMBER,
        "admin",
        ["ann", "bob", "owner"],  # the removed member hears of it too
        frozenset({"owner", "admin", "ann"}),
    )
    world.store.roles[group_id]["ann"] = GroupRole.ADMIN
    with pytest.raises(Forbidden, match="only the owner can remove an admin"):
        await world.groups.remove("admin", group_id, ["ann"])
    await world.groups.remove("owner", group_id, ["ann"])
    assert sorted(world.store.roles[group_id]) == ["admin", "owner"]


async def test_members_leave_and_only_the_owner_dismisses(world: World) -> None:
    group_id = await world.group("owner", "ann", "bob")
    with pytest.raises(BadRequest, match="dismiss"):
        await world.groups.leave("owner", group_id)
    with pytest.raises(Forbidden):
        await world.groups.leave("carol", group_id)
    await world.groups.leave("ann", group_id)
    assert world.last() == (
        MsgType.GROUP_MEMBER_EXIT,
        "ann",
        ["bob", "owner"],
        frozenset({"owner", "bob"}),
    )
    with pytest.raises(Forbidden):
        await world.groups.dismiss("bob", group_id)
    await world.groups.dismiss("owner", group_id)
    assert world.last() == (MsgType.GROUP_DISMISS, "owner", ["bob"], frozenset())
    with pytest.raises(NotFound):
        await world.groups.info("owner", group_id)


async def test_only_members_read_the_group_and_post_to_it(world: World) -> None:
    group_id = await world.group("owner", "ann", "bob")
    with pytest.raises(Forbidden):
        await world.groups.info("carol", group_id)
    with pytest.raises(Forbidden):
        await world.groups.members("carol", group_id, ["ann"])
    assert [m.user_id for m in await world.groups.members("ann", group_id, ["bob"])] == ["bob"]
    receivers, _ = await world.groups.recipients(group_id, "ann")
    assert sorted(receivers) == ["bob", "owner"]
    with pytest.raises(MessageRefused, match="not a member"):
        await world.groups.recipients(group_id, "carol")
    with pytest.raises(MessageRefused, match="no such group"):
        await world.groups.recipients("no-such-group", "ann")
    # A removal reaches the cached member set: the removed member may no longer post.
    await world.groups.remove("owner", group_id, ["bob"])
    with pytest.raises(MessageRefused, match="not a member"):
        await world.groups.recipients(group_id, "bob")
    assert (await world.groups.recipients(group_id, "ann"))[0] == ["owner"]
