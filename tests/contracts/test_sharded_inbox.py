"""The MongoDB inbox's own behaviour: idempotent writes, collection naming and routing under
hybrid sharding (proved by listening to the commands sent), indexes and the cleaner."""

from __future__ import annotations

import datetime as dt

import pytest
from pymongo.monitoring import (
    CommandFailedEvent,
    CommandListener,
    CommandStartedEvent,
    CommandSucceededEvent,
)

from sandcat._native import inbox_collection, shard_of
from sandcat.adapters.mongo.inbox import SEQ_INDEX_COLLECTION, SINGLE_COLLECTION, MongoInbox
from sandcat.config import MongoCleanConfig
from sandcat.jobs.inbox_cleaner import clean_inbox, except_type_codes
from sandcat.protocol.msg import Msg
from tests.contracts.conftest import OpenMongo

SHARDS = 4
DAY = 86_400_000
APR_20 = int(dt.datetime(2024, 4, 20, tzinfo=dt.UTC).timestamp() * 1000)
MAY_10 = int(dt.datetime(2024, 5, 10, tzinfo=dt.UTC).timestamp() * 1000)
JUN_10 = int(dt.datetime(2024, 6, 10, tzinfo=dt.UTC).timestamp() * 1000)


class Commands(CommandListener):
    """Records (command, collection) of every data command."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def started(self, event: CommandStartedEvent) -> None:
        if event.command_name in {"find", "delete", "update", "insert"}:
            self.seen.append((event.command_name, str(event.command[event.command_name])))

    def succeeded(self, event: CommandSucceededEvent) -> None:
        pass

    def failed(self, event: CommandFailedEvent) -> None:
        pass

    def collections(self, command: str) -> set[str]:
        return {name for cmd, name in self.seen if cmd == command}


def two_users_in_different_shards() -> tuple[str, str]:
    users = [f"user{i}" for i in range(50)]
    first = users[0]
    other = next(u for u in users if shard_of(u, SHARDS) != shard_of(first, SHARDS))
    return first, other


def received(owner: str, seq: int, t: int, msg_type: int = 0) -> tuple[str, int, Msg]:
    msg = Msg(
        send_id="someone",
        receiver_id=owner,
        local_id=f"l{seq}",
        server_id=f"s-{owner}-{seq}",
        send_time=t,
        create_time=t,
        seq=seq,
        msg_type=msg_type,
        content=b"x",
        send_seq=seq,
    )
    return owner, 0, msg


def sent(owner: str, send_seq: int, t: int) -> tuple[str, int, Msg]:
    msg = Msg(
        send_id=owner,
        receiver_id="someone",
        local_id=f"o{send_seq}",
        server_id=f"o-{owner}-{send_seq}",
        send_time=t,
        create_time=t,
        content=b"y",
        send_seq=send_seq,
    )
    return owner, 1, msg


def three_months(user: str) -> list[tuple[str, int, Msg]]:
    """seq 1-3 in April, 4-6 in May, 7-9 in June; send_seq 1 in April, 2 in June."""
    copies = [received(user, s, APR_20 + s) for s in (1, 2, 3)]
    copies += [received(user, s, MAY_10 + s) for s in (4, 5, 6)]
    copies += [received(user, s, JUN_10 + s) for s in (7, 8, 9)]
    return [*copies, sent(user, 1, APR_20 + 50), sent(user, 2, JUN_10 + 50)]


@pytest.mark.parametrize("sharding", [False, True])
async def test_reinserting_copies_stores_nothing_new(open_mongo: OpenMongo, sharding: bool) -> None:
    async with open_mongo() as db:
        inbox = MongoInbox(db=db, use_sharding=sharding, user_shards=SHARDS)
        await inbox.start()
        copies = three_months("alice")
        await inbox.insert_copies(copies)
        await inbox.insert_copies([*copies[2:5], received("alice", 10, JUN_10 + 10)])
        pulled = await inbox.pull("alice", 0, 100, 0, 100, 0)
        assert [m.seq for m in pulled if m.seq] == list(range(1, 11))
        assert len(pulled) == 12


async def test_unsharded_copies_share_one_collection(open_mongo: OpenMongo) -> None:
    async with open_mongo() as db:
        inbox = MongoInbox(db=db, use_sharding=False)
        await inbox.start()
        index = await db[SINGLE_COLLECTION].index_information()
        assert index["owner_box_seq"]["unique"]
        await inbox.insert_copies(three_months("alice") + three_months("bob"))
        assert await db.list_collection_names() == [SINGLE_COLLECTION]


async def test_sharded_copies_land_in_month_and_shard_collections(open_mongo: OpenMongo) -> None:
    alice, bob = two_users_in_different_shards()
    async with open_mongo() as db:
        inbox = MongoInbox(db=db, use_sharding=True, user_shards=SHARDS)
        await inbox.insert_copies(three_months(alice) + three_months(bob))
        expected = {
            inbox_collection(user, t, SHARDS)
            for user in (alice, bob)
            for t in (APR_20, MAY_10, JUN_10)
        }
        assert len(expected) == 6
        assert set(await db.list_collection_names()) == expected | {SEQ_INDEX_COLLECTION}
        name = inbox_collection(alice, MAY_10, SHARDS)
        assert name == f"msg_box_202405_{shard_of(alice, SHARDS):02d}"
        assert await db[name].count_documents({}) == 3
        assert (await db[name].index_information())["owner_box_seq"]["unique"]
        restarted = MongoInbox(db=db, use_sharding=True, user_shards=SHARDS)
        await restarted.start()  # indexes of existing collections, idempotently
        assert len(await restarted.pull(alice, 0, 100, 0, 100, 0)) == 11


@pytest.mark.parametrize(
    ("rng", "sent_rng", "months"),
    [
        ((5, 9), (0, 0), ("2024-05", "2024-06")),  # across the May/June boundary
        ((6, 9), (0, 0), ("2024-06",)),  # seq 6 is May's last: excluded by (start, end]
        ((0, 2), (0, 0), ("2024-04",)),
        ((0, 0), (1, 2), ("2024-06",)),  # send_seq 2 only
        ((3, 4), (0, 1), ("2024-04", "2024-05")),
        ((9, 20), (2, 20), ()),  # nothing stored there: no inbox collection is read
    ],
)
async def test_a_pull_reads_only_the_collections_that_hold_the_range(
    open_mongo: OpenMongo,
    rng: tuple[int, int],
    sent_rng: tuple[int, int],
    months: tuple[str, ...],
) -> None:
    alice, bob = two_users_in_different_shards()
    listener = Commands()
    async with open_mongo(listeners=[listener]) as db:
        inbox = MongoInbox(db=db, use_sharding=True, user_shards=SHARDS)
        await inbox.insert_copies(three_months(alice) + three_months(bob))
        listener.seen.clear()
        pulled = await inbox.pull(alice, *rng, *sent_rng, 0)
        month_time = {"2024-04": APR_20, "2024-05": MAY_10, "2024-06": JUN_10}
        expected = {inbox_collection(alice, month_time[m], SHARDS) for m in months}
        assert listener.collections("find") == expected | {SEQ_INDEX_COLLECTION}
        assert [m.seq for m in pulled if m.seq] == list(range(rng[0] + 1, min(rng[1], 9) + 1))
        assert [m.send_seq for m in pulled if not m.seq] == list(
            range(sent_rng[0] + 1, min(sent_rng[1], 2) + 1)
        )


async def test_deletes_and_read_marks_route_the_same_way(open_mongo: OpenMongo) -> None:
    alice, bob = two_users_in_different_shards()
    listener = Commands()
    async with open_mongo(listeners=[listener]) as db:
        inbox = MongoInbox(db=db, use_sharding=True, user_shards=SHARDS)
        await inbox.insert_copies(three_months(alice) + three_months(bob))
        listener.seen.clear()
        assert await inbox.mark_read(alice, [5, 7]) == 2
        assert listener.collections("update") == {
            inbox_collection(alice, MAY_10, SHARDS),
            inbox_collection(alice, JUN_10, SHARDS),
        }
        listener.seen.clear()
        assert await inbox.delete_received(alice, [1, 2]) == 2
        assert listener.collections("delete") == {inbox_collection(alice, APR_20, SHARDS)}
        pulled = await inbox.pull(alice, 0, 100, 0, 0, 0)
        assert [(m.seq, m.is_read) for m in pulled if m.seq in (3, 5, 7)] == [
            (3, False),
            (5, True),
            (7, True),
        ]
        assert len(await inbox.pull(bob, 0, 100, 0, 100, 0)) == 11


async def test_cleaner_single_collection_in_milliseconds(open_mongo: OpenMongo) -> None:
    async with open_mongo() as db:
        inbox = MongoInbox(db=db, use_sharding=False)
        await inbox.start()
        copies = three_months("alice")
        copies.append(received("alice", 20, APR_20, msg_type=2))  # a group invitation
        await inbox.insert_copies(copies)
        clean = MongoCleanConfig(period=30, except_types=("MsgTypeGroupInvitation",))
        report = await clean_inbox(inbox, clean, JUN_10)  # cutoff: May 11th
        assert report.deleted == 7  # April: 4 copies (not the invitation), May 10th: 3
        assert report.dropped == []
        left = await inbox.pull("alice", 0, 100, 0, 100, 0)
        assert [m.seq for m in left if m.seq] == [20, 7, 8, 9]
        assert [m.send_seq for m in left if not m.seq] == [2]


async def test_cleaner_drops_expired_month_collections(open_mongo: OpenMongo) -> None:
    alice, bob = two_users_in_different_shards()
    async with open_mongo() as db:
        inbox = MongoInbox(db=db, use_sharding=True, user_shards=SHARDS)
        await inbox.insert_copies(three_months(alice) + three_months(bob))
        await inbox.insert_copies([received(bob, 20, APR_20, msg_type=10)])  # kept type
        report = await inbox.clean_inbox(JUN_10 + 2 * DAY, 30, except_type_codes(["10"]))
        # cutoff May 12th: April goes, except bob's kept copy; May 10th's copies go
        assert report.deleted == 2 * 4 + 2 * 3
        assert report.dropped == [inbox_collection(alice, APR_20, SHARDS)]
        names = set(await db.list_collection_names())
        assert inbox_collection(bob, APR_20, SHARDS) in names
        assert inbox_collection(alice, MAY_10, SHARDS) in names  # emptied, month not over
        assert [m.seq for m in await inbox.pull(alice, 0, 100, 0, 100, 0) if m.seq] == [7, 8, 9]
        assert [m.seq for m in await inbox.pull(bob, 0, 100, 0, 0, 0)] == [20, 7, 8, 9]
        index = await db[SEQ_INDEX_COLLECTION].find_one({"_id": alice})
        assert index is not None and "202404" in index["m"]  # bob's April collection remains
        later = await inbox.clean_inbox(JUN_10 + 2 * DAY, 30, frozenset())
        assert later.dropped == [inbox_collection(bob, APR_20, SHARDS)]
        index = await db[SEQ_INDEX_COLLECTION].find_one({"_id": alice})
        assert index is not None and sorted(index["m"]) == ["202405", "202406"]


def test_except_types_take_the_originals_names() -> None:
    names = ["MsgTypeGroupInvitation", "MsgTypeFriendApplyReq", "GROUP_UPDATE", "13"]
    assert except_type_codes(names) == {2, 10, 9, 13}
    with pytest.raises(ValueError, match="MsgTypeNope"):
        except_type_codes(["MsgTypeNope"])
