"""``DeviceService`` over the fakes: families, rotation, reuse, the cap, tokens from before
devices; ``FriendService.mark_read`` and the events friend and group operations send the
actor (multi-device consistency)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from sandcat.config import LimitsConfig, ServerConfig
from sandcat.errors import Forbidden, NotFound, UnAuthorized
from sandcat.services.auth import ACCESS, REFRESH, Claims, TokenService
from sandcat.services.devices import DeviceInfo, DeviceService
from tests.clock import FakeClock
from tests.fakes import (
    FakeDevices,
    FakeEvents,
    FakeFriends,
    FakeLog,
    FakeUsers,
    friend_service,
    group_service,
)


def _at(data: object, *keys: str) -> object:
    """``data[key][key]...`` of an event's JSON-shaped data."""
    for key in keys:
        assert isinstance(data, dict)
        data = data[key]
    return data


@dataclass
class World:
    clock: FakeClock
    tokens: TokenService
    store: FakeDevices
    events: FakeEvents
    devices: DeviceService


def _world(grace_seconds: float) -> World:
    tokens, store, events = TokenService(ServerConfig(), "s" * 32), FakeDevices(), FakeEvents()
    clock = FakeClock()
    devices = DeviceService(
        devices=store,
        tokens=tokens,
        ender=events,
        events=events,
        clock=clock,
        limits=LimitsConfig(devices_per_user=2),
        reuse_grace_seconds=grace_seconds,
    )
    return World(clock, tokens, store, events, devices)


@pytest.fixture
def world() -> World:
    return _world(30)


async def _active(world: World, claims: Claims) -> bool:
    return await world.store.is_active(claims.user_id, claims.device_id)


async def test_rotation_and_the_reuse_of_a_spent_token(world: World) -> None:
    access, first = await world.devices.start("ann", 0, DeviceInfo(platform="web"))
    claims = world.tokens.verify(access, ACCESS)
    assert claims.device_id and world.events.names("ann") == ["device.added"]
    assert await _active(world, claims)
    second = await world.devices.refresh(world.tokens.verify(first, REFRESH), True, "10.0.0.2")
    assert world.tokens.verify(second, REFRESH).device_id == claims.device_id
    await world.devices.refresh(world.tokens.verify(second, REFRESH), False, "10.0.0.2")
    world.clock.advance(31)  # past the reuse grace
    with pytest.raises(UnAuthorized, match="already used"):
        await world.devices.refresh(world.tokens.verify(first, REFRESH), False, "10.0.0.3")
    assert world.events.ended_devices == [("ann", claims.device_id)]
    assert not await _active(world, claims)
    with pytest.raises(UnAuthorized, match="logged out"):  # gone: no second removal
        await world.devices.refresh(world.tokens.verify(second, REFRESH), True, "10.0.0.2")
    assert world.events.ended_devices == [("ann", claims.device_id)]


async def test_the_cap_logs_out_the_least_recently_seen(world: World) -> None:
    ids = []
    for _ in range(3):
        access, _ = await world.devices.start("ann", 0, DeviceInfo())
        ids.append(world.tokens.verify(access, ACCESS).device_id)
        world.clock.advance(1)
    assert world.events.ended_devices == [("ann", ids[0])]
    assert sorted(d.id for d in await world.devices.of_user("ann")) == sorted(ids[1:])
    # Logins in one millisecond: the cap never takes the new device.
    for _ in range(3):
        access, _ = await world.devices.start("ann", 0, DeviceInfo())
        newest = world.tokens.verify(access, ACCESS).device_id
        assert await _active(world, world.tokens.verify(access, ACCESS))
        assert newest in {d.id for d in await world.devices.of_user("ann")}


async def test_tokens_from_before_devices_keep_the_generation_check_alone(world: World) -> None:
    legacy = world.tokens.issue("ann", REFRESH, 0)
    claims = world.tokens.verify(legacy, REFRESH)
    assert claims.device_id == ""
    access = await world.devices.refresh(claims, False, "10.0.0.1")
    assert world.tokens.verify(access, ACCESS).device_id == ""
    assert world.store.rows == {}


async def test_the_previous_token_replayed_within_the_grace_gets_the_current_one(
    world: World,
) -> None:
    """Two tabs renew with one token a moment apart (or a client retries a renewal whose
    answer it lost): both end up holding the family's current token, which still rotates."""
    access, first = await world.devices.start("ann", 0, DeviceInfo())
    device = world.tokens.verify(access, ACCESS).device_id
    tab_a = await world.devices.refresh(world.tokens.verify(first, REFRESH), True, "a")
    world.clock.advance(29)
    tab_b = await world.devices.refresh(world.tokens.verify(first, REFRESH), True, "b")
    a, b = world.tokens.verify(tab_a, REFRESH), world.tokens.verify(tab_b, REFRESH)
    assert (b.token_id, b.device_id) == (a.token_id, device) and b.exp >= a.exp
    world.clock.advance(1)  # the window is counted from the rotation: 30 s, not 30 from now
    again = await world.devices.refresh(world.tokens.verify(first, REFRESH), False, "b")
    assert world.tokens.verify(again, ACCESS).device_id == device
    # The current token rotates as usual; the other tab's copy is now the previous one.
    next_a = world.tokens.verify(await world.devices.refresh(a, True, "a"), REFRESH)
    next_b = world.tokens.verify(await world.devices.refresh(b, True, "b"), REFRESH)
    assert next_a.token_id == next_b.token_id != a.token_id
    assert world.events.ended_devices == [] and len(world.store.rows) == 1
    # Two rotations back is theft at any time.
    with pytest.raises(UnAuthorized, match="already used"):
        await world.devices.refresh(world.tokens.verify(first, REFRESH), True, "c")
    assert world.events.ended_devices == [("ann", device)]


async def test_the_grace_ends_and_zero_is_strict() -> None:
    for grace, wait in ((30, 30.001), (0, 0)):
        world = _world(grace)
        _, first = await world.devices.start("ann", 0, DeviceInfo())
        spent = world.tokens.verify(first, REFRESH)
        current = await world.devices.refresh(spent, True, "a")
        world.clock.advance(wait)
        with pytest.raises(UnAuthorized, match="already used"):
            await world.devices.refresh(spent, True, "b")
        assert world.store.rows == {}
        with pytest.raises(UnAuthorized, match="logged out"):
            await world.devices.refresh(world.tokens.verify(current, REFRESH), True, "a")


async def test_friend_operations_tell_the_actor_and_mark_read_is_the_receivers() -> None:
    clock, users, events = FakeClock(), FakeUsers(), FakeEvents()
    users.add("ann", "bob")
    friends = friend_service(users, clock, events=events)
    request = await friends.apply(
        user_id="bob", friend_id="ann", apply_msg="hi", req_remark=None, source="search"
    )
    assert [(u, d["action"]) for u, _, d in events.emitted] == [("bob", "applied")]
    with pytest.raises(Forbidden):
        await friends.mark_read("bob", request.fs_id)
    with pytest.raises(NotFound):
        await friends.mark_read("ann", "nope")
    assert [fs.fs_id for fs in (await friends.since("ann", 0))[1]] == [request.fs_id]
    await friends.mark_read("ann", request.fs_id)
    assert (await friends.since("ann", 0))[1] == []
    assert [fs.fs_id for fs in await friends.pending("ann")] == [request.fs_id]
    assert events.emitted[-1] == (
        "ann",
        "friend.updated",
        {"action": "read", "fs_id": request.fs_id},
    )


async def test_every_group_operation_tells_only_the_actor() -> None:
    clock, log, users, events = FakeClock(), FakeLog(), FakeUsers(), FakeEvents()
    users.add("ann", "bob", "cy")
    friends = FakeFriends(users)
    friends.befriend("ann", "bob", "cy")
    groups = group_service(users, friends, clock, events=events, log=log)
    invitation = await groups.create(user_id="ann", name="g", avatar="", member_ids=["bob"])
    assert invitation.info is not None
    group_id = invitation.info.id
    await groups.invite("ann", group_id, ["cy"])
    await groups.update("ann", group_id, name="h", avatar="", description="", announcement="")
    await groups.remove("ann", group_id, ["cy"])
    await groups.leave("bob", group_id)
    await groups.dismiss("ann", group_id)
    told = [(user, data["action"]) for user, name, data in events.emitted]
    assert told == [
        ("ann", "created"),
        ("ann", "invited"),
        ("ann", "updated"),
        ("ann", "removed"),
        ("bob", "left"),
        ("ann", "dismissed"),
    ]
    assert {name for _, name, _ in events.emitted} == {"group.updated"}
    assert all(data["group_id"] == group_id for _, _, data in events.emitted)
    assert events.emitted[1][2]["members"] == ["cy"]
    assert _at(events.emitted[2][2], "group", "name") == "h"


async def test_answers_deletions_and_remarks_tell_the_actor() -> None:
    clock, users, events = FakeClock(), FakeUsers(), FakeEvents()
    users.add("ann", "bob", "cy")
    friends = friend_service(users, clock, events=events)
    to_ann = await friends.apply(
        user_id="bob", friend_id="ann", apply_msg=None, req_remark=None, source="s"
    )
    from_cy = await friends.apply(
        user_id="cy", friend_id="ann", apply_msg=None, req_remark=None, source="s"
    )
    events.emitted.clear()
    friend = await friends.agree("ann", to_ann.fs_id, None, None)
    await friends.deny("ann", from_cy.fs_id, None)
    await friends.set_remark("ann", "bob", "Bobby")
    await friends.delete("ann", "bob", to_ann.fs_id)
    told = [(user, data["action"]) for user, _, data in events.emitted]
    assert told == [("ann", "agreed"), ("ann", "denied"), ("ann", "remark"), ("ann", "deleted")]
    assert _at(events.emitted[0][2], "friend", "friend_id") == friend.friend_id == "bob"
    assert events.emitted[2][2] == {"action": "remark", "friend_id": "bob", "remark": "Bobby"}
