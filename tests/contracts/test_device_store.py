"""``DeviceStore`` and ``FriendshipReads``: SQLite (embedded) and PostgreSQL alike: one use
of a refresh jti wins, removals are seen at once (the SQLite store's cache included), the
least recently seen devices go past the cap."""

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
from sandcat.ports import Device, DeviceStore, FriendshipReads, FriendStore
from tests.contracts.conftest import OpenPg, OpenSqlite


@dataclass
class Stores:
    devices: DeviceStore
    reads: FriendshipReads
    friends: FriendStore


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
            for user_id in ("ann", "bob"):
                await SqliteUserStore(db).insert_user(_user(user_id))
            yield Stores(SqliteDeviceStore(db), SqliteFriendshipReads(db), SqliteFriendStore(db))
    else:
        async with open_pg() as pool:
            for user_id in ("ann", "bob"):
                await PostgresUserStore(pool=pool).insert_user(_user(user_id))
            yield Stores(
                PostgresDeviceStore(pool=pool),
                PostgresFriendshipReads(pool=pool),
                PostgresFriendStore(pool=pool),
            )


async def test_one_use_of_a_refresh_jti_wins(stores: Stores) -> None:
    devices = stores.devices
    assert await devices.add_device(_device("d1"), "j1", keep=10) == []
    uses = await asyncio.gather(
        *(devices.use_refresh("ann", "d1", "j1", f"next{i}", "10.0.0.2", 2000) for i in range(8))
    )
    assert uses.count(True) == 1
    winner = f"next{uses.index(True)}"
    assert not await devices.use_refresh("ann", "d1", "j1", "again", "x", 3000)  # spent
    assert not await devices.use_refresh("bob", "d1", winner, "x", "x", 3000)  # not bob's
    assert await devices.use_refresh("ann", "d1", winner, winner, "10.0.0.3", 4000)  # same jti
    [seen] = await devices.devices("ann")
    assert (seen.address, seen.first_seen, seen.last_seen) == ("10.0.0.3", 1000, 4000)


async def test_removal_is_seen_at_once_and_only_the_owner_removes(stores: Stores) -> None:
    devices = stores.devices
    for device_id in ("d1", "d2", "d3"):
        await devices.add_device(_device(device_id), device_id, keep=10)
    await devices.add_device(_device("b1", "bob"), "b1", keep=10)
    assert await devices.is_active("ann", "d1") and not await devices.is_active("bob", "d1")
    assert await devices.remove("bob", ["d1"]) == []
    assert await devices.remove("ann", ["d1", "b1", "zz"]) == ["d1"]
    assert not await devices.is_active("ann", "d1")
    assert sorted(await devices.remove("ann", keep="d2")) == ["d3"]
    assert [d.id for d in await devices.devices("ann")] == ["d2"]
    assert await devices.remove("ann") == ["d2"]
    assert await devices.devices("ann") == [] and await devices.is_active("bob", "b1")


async def test_a_login_past_the_cap_removes_the_least_recently_seen(stores: Stores) -> None:
    devices = stores.devices
    for i in range(3):
        assert await devices.add_device(_device(f"d{i}", seen=1000 + i), f"j{i}", keep=3) == []
    await devices.use_refresh("ann", "d0", "j0", "j0", "x", 5000)  # d1 is now the oldest
    assert await devices.add_device(_device("d3", seen=6000), "j3", keep=3) == ["d1"]
    assert [d.id for d in await devices.devices("ann")] == ["d3", "d0", "d2"]
    assert not await devices.is_active("ann", "d1")
    # The new device is never the one to go, whatever its clock says.
    assert await devices.add_device(_device("d4", seen=1), "j4", keep=3) == ["d2"]
    assert await devices.is_active("ann", "d4")


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
