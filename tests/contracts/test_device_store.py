"""``DeviceStore`` and ``FriendshipReads``: SQLite (embedded) and PostgreSQL alike: one use
of a refresh jti wins, the previous jti within the reuse grace gets the current one,
removals are seen at once (the SQLite store's cache included, and the user store's session
state), the least recently seen devices go past the cap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from sandcat.adapters.embedded.devices import SqliteDeviceStore, SqliteFriendshipReads
from sandcat.adapters.embedded.social import SqliteFriendStore
from sandcat.adapters.embedded.users import SqliteUserStore
from sandcat.adapters.postgres.devices import PostgresDeviceStore, PostgresFriendshipReads
from sandcat.adapters.postgres.social import PostgresFriendStore
from sandcat.adapters.postgres.users import PostgresUserStore
from sandcat.domain import UserRecord
from sandcat.ports import Device, DeviceStore, FriendshipReads, FriendStore, UserStore
from tests.contracts.conftest import OpenPg, OpenSqlite


@dataclass
class Stores:
    devices: DeviceStore
    reads: FriendshipReads
    friends: FriendStore
    users: UserStore


def _user(user_id: str) -> UserRecord:
    return UserRecord(
        id=user_id, name=user_id, account=user_id, password="", salt="", avatar="a.png"
    )


def _device(device_id: str, user_id: str = "ann", seen: int = 1000) -> Device:
    return Device(device_id, user_id, "web", "page", "UA", "10.0.0.1", seen, seen)


@pytest.fixture(params=["sqlite", "postgres"])
async def stores(
    request: pytest.FixtureRequest, open_sqlite: OpenSqlite, open_pg: OpenPg
) -> AsyncIterator[Stores]:
    if request.param == "sqlite":
        async with open_sqlite() as db:
            devices = SqliteDeviceStore(db)
            users = SqliteUserStore(db, devices)
            for user_id in ("ann", "bob"):
                await users.insert_user(_user(user_id))
            yield Stores(devices, SqliteFriendshipReads(db), SqliteFriendStore(db), users)
    else:
        async with open_pg() as pool:
            pg_users = PostgresUserStore(pool=pool)
            for user_id in ("ann", "bob"):
                await pg_users.insert_user(_user(user_id))
            yield Stores(
                PostgresDeviceStore(pool=pool),
                PostgresFriendshipReads(pool=pool),
                PostgresFriendStore(pool=pool),
                pg_users,
            )


async def _active(stores: Stores, user_id: str, device_id: str) -> bool:
    """Whether a token check would find the device (``UserStore.session_state``)."""
    return (await stores.users.session_state(user_id, device_id))[1]


async def test_one_use_of_a_refresh_jti_wins(stores: Stores) -> None:
    devices = stores.devices
    assert await devices.add_device(_device("d1"), "j1", keep=10) == []
    uses = await asyncio.gather(
        *(devices.use_refresh("ann", "d1", "j1", f"next{i}", "10.0.0.2", 2000, 0) for i in range(8))
    )
    [winner] = [use for use in uses if use is not None]
    assert winner.startswith("next")
    assert await devices.use_refresh("ann", "d1", "j1", "again", "x", 3000, 0) is None  # spent
    assert await devices.use_refresh("bob", "d1", winner, "x", "x", 3000, 0) is None  # not bob's
    same = await devices.use_refresh("ann", "d1", winner, winner, "10.0.0.3", 4000, 0)
    assert same == winner
    [seen] = await devices.devices("ann")
    assert (seen.address, seen.first_seen, seen.last_seen) == ("10.0.0.3", 1000, 4000)


async def test_the_previous_jti_within_the_grace_gets_the_current_one(stores: Stores) -> None:
    devices = stores.devices
    await devices.add_device(_device("d1"), "j1", keep=10)
    assert await devices.use_refresh("ann", "d1", "j1", "j2", "a", 10_000, 5000) == "j2"
    # Replays of j1 up to 5 s after its rotation, rotating or not, get j2 and change nothing
    # else: the window stays counted from the rotation.
    assert await devices.use_refresh("ann", "d1", "j1", "j3", "b", 12_000, 5000) == "j2"
    assert await devices.use_refresh("ann", "d1", "j1", "j1", "b", 15_000, 5000) == "j2"
    assert await devices.use_refresh("bob", "d1", "j1", "j3", "b", 15_000, 5000) is None
    assert await devices.use_refresh("ann", "d1", "j1", "j3", "b", 15_001, 5000) is None
    assert await devices.use_refresh("ann", "d1", "j1", "j3", "b", 15_000, 0) is None  # strict
    [seen] = await devices.devices("ann")
    assert (seen.address, seen.last_seen) == ("b", 15_000)
    # j2 rotates as usual: j1 is now two back, j2 the previous one.
    assert await devices.use_refresh("ann", "d1", "j2", "j4", "a", 16_000, 5000) == "j4"
    assert await devices.use_refresh("ann", "d1", "j1", "j5", "a", 16_000, 5000) is None
    assert await devices.use_refresh("ann", "d1", "j2", "j5", "a", 16_000, 5000) == "j4"
    # A rotation that raced a replay: of concurrent uses of the current jti one rotates,
    # the others (now replays of the previous one) get what it rotated to.
    uses = await asyncio.gather(
        *(devices.use_refresh("ann", "d1", "j4", f"n{i}", "a", 17_000, 5000) for i in range(8))
    )
    assert len(set(uses)) == 1 and str(uses[0]).startswith("n")


async def test_the_session_state_reads_generation_and_device_at_once(
    stores: Stores,
) -> None:
    users = stores.users
    await stores.devices.add_device(_device("d1"), "j1", keep=10)
    await stores.devices.add_device(_device("b1", "bob"), "b1", keep=10)
    assert await users.session_state("ann", "d1") == (0, True)
    assert await users.session_state("ann", "b1") == (0, False)  # bob's
    assert await users.session_state("nobody", "d1") == (0, False)
    await users.revoke_tokens("ann")
    assert await stores.devices.remove("ann", ["d1"]) == ["d1"]
    assert await users.session_state("ann", "d1") == (1, False)
    assert await users.session_state("ann", "zz") == (1, False)


async def test_removal_is_seen_at_once_and_only_the_owner_removes(stores: Stores) -> None:
    devices = stores.devices
    for device_id in ("d1", "d2", "d3"):
        await devices.add_device(_device(device_id), device_id, keep=10)
    await devices.add_device(_device("b1", "bob"), "b1", keep=10)
    assert await _active(stores, "ann", "d1") and not await _active(stores, "bob", "d1")
    assert await devices.remove("bob", ["d1"]) == []
    assert await devices.remove("ann", ["d1", "b1", "zz"]) == ["d1"]
    assert not await _active(stores, "ann", "d1")
    assert sorted(await devices.remove("ann", keep="d2")) == ["d3"]
    assert [d.id for d in await devices.devices("ann")] == ["d2"]
    assert await devices.remove("ann") == ["d2"]
    assert await devices.devices("ann") == [] and await _active(stores, "bob", "b1")


async def test_a_login_past_the_cap_removes_the_least_recently_seen(stores: Stores) -> None:
    devices = stores.devices
    for i in range(3):
        assert await devices.add_device(_device(f"d{i}", seen=1000 + i), f"j{i}", keep=3) == []
    await devices.use_refresh("ann", "d0", "j0", "j0", "x", 5000, 0)  # d1 is now the oldest
    assert await devices.add_device(_device("d3", seen=6000), "j3", keep=3) == ["d1"]
    assert [d.id for d in await devices.devices("ann")] == ["d3", "d0", "d2"]
    assert not await _active(stores, "ann", "d1")
    # The new device is never the one to go, whatever its clock says.
    assert await devices.add_device(_device("d4", seen=1), "j4", keep=3) == ["d2"]
    assert await _active(stores, "ann", "d4")


async def test_a_read_request_leaves_the_unread_listing_until_it_changes(stores: Stores) -> None:
    friends = stores.friends

    async def unread() -> list[str]:
        found = await friends.requests_to("ann", since_ms=0, pending_only=False, unread_only=True)
        return [fs.fs_id for fs in found]

    fs_id = await friends.upsert_request(
        new_id="fs1",
        user_id="bob",
        friend_id="ann",
        apply_msg="hi",
        req_remark=None,
        source="search",
        now_ms=1000,
        renew_rejected_before=0,
    )
    assert fs_id == "fs1" and await unread() == ["fs1"]
    await stores.reads.mark_read("fs1", "ann", 1000)
    await stores.reads.mark_read("fs1", "ann", 500)  # an older read does not lower it
    assert await unread() == []
    listed = await friends.requests_to("ann", since_ms=0, pending_only=True)
    assert [fs.fs_id for fs in listed] == ["fs1"]
    assert await friends.accept_request("fs1", None, None, 2000) is not None
    assert await unread() == ["fs1"]
