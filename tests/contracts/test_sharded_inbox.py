"""The MongoDB inbox's own behaviour: idempotent writes, collection naming and routing under
hybrid sharding (proved by listening to the commands sent), the month index written only
when it changes, late copies across a month's end, indexes and the cleaner."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.monitoring import (
    CommandFailedEvent,
    CommandListener,
    CommandStartedEvent,
    CommandSucceededEvent,
)

from sandcat._native import collection_name, month_of, shard_of
from sandcat.adapters.mongo.cleaner import clean_inbox, except_type_codes
from sandcat.adapters.mongo.inbox import SEQ_INDEX_COLLECTION, SINGLE_COLLECTION, MongoInbox
from sandcat.config import MongoCleanConfig
from sandcat.protocol.msg import Msg
from tests.contracts.conftest import OpenMongo

SHARDS = 4
DAY = 86_400_000
APR_20 = int(dt.datetime(2024, 4, 20, tzinfo=dt.UTC).timestamp() * 1000)
APR_END = int(dt.datetime(2024, 5, 1, tzinfo=dt.UTC).timestamp() * 1000)
MAY_10 = int(dt.datetime(2024, 5, 10, tzinfo=dt.UTC).timestamp() * 1000)
JUN_10 = int(dt.datetime(2024, 6, 10, tzinfo=dt.UTC).timestamp() * 1000)


def inbox_collection(user_id: str, send_time_ms: int, user_shards: int) -> str:
    """Where a copy belongs, from the single shard keys (the writer names a batch at once)."""
    return collection_name(month_of(send_time_ms), shard_of(user_id, user_shards))


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

    def index_writes(self) -> int:
        return sum(1 for cmd, name in self.seen if cmd == "insert" and name == SEQ_INDEX_COLLECTION)

    def index_updates(self) -> int:
        return sum(1 for cmd, name in self.seen if cmd == "update" and name == SEQ_INDEX_COLLECTION)


async def marks(db: AsyncDatabase[dict[str, Any]], owner: str) -> set[tuple[int, int, int]]:
    """(box, month, seq) of every mark of ``owner`` in the month index."""
    docs = await db[SEQ_INDEX_COLLECTION].find({"o": owner}).to_list()
    return {(d["b"], d["m"], d["s"]) for d in docs}


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


async def test_a_batch_is_one_unordered_insert_that_skips_stored_copies(
    open_mongo: OpenMongo,
) -> None:
    """The msg-server's batch of many owners is one ``insert`` command (unordered): copies
    already stored (a replayed batch) are skipped wherever they sit, the others still land."""
    listener = Commands()
    async with open_mongo(listeners=[listener]) as db:
        inbox = MongoInbox(db=db, use_sharding=False)
        await inbox.start()
        users = [f"owner{i}" for i in range(40)]
        first = [received(u, 1, MAY_10) for u in users[::2]]
        await inbox.insert_copies(first)
        listener.seen.clear()
        batch = [received(u, 1, MAY_10) for u in users] + [sent(u, 1, MAY_10) for u in users]
        await inbox.insert_copies(batch)
        assert listener.seen == [("insert", SINGLE_COLLECTION)]
        assert await db[SINGLE_COLLECTION].count_documents({}) == 80
        for user in users:
            pulled = await inbox.pull(user, 0, 10, 0, 10, 0)
            assert sorted((m.seq, m.send_id == user) for m in pulled) == [(0, True), (1, False)]


async def test_unsharded_copies_share_one_collection(open_mongo: OpenMongo) -> None:
    async with open_mongo() as db:
        inbox = MongoInbox(db=db, use_sharding=False)
        await inbox.start()
        index = await db[SINGLE_COLLECTION].index_information()
        assert index["owner_box_seq"]["unique"]
        await inbox.insert_copies(three_months("alice") + three_months("bob"))
        assert await db.list_collection_names() == [SINGLE_COLLECTION]


async def test_copies_store_only_what_they_cannot_be_read_back_without(
    open_mongo: OpenMongo,
) -> None:
    """A group copy keeps no ``receiver_id`` (its group's id), no copy keeps ``seq``,
    ``is_read`` (a copy is stored unread) or unset fields; every field reads back, and a copy
    written in the full layout (every field stored, as before) reads back the same."""
    group = Msg(
        send_id="carol",
        receiver_id="g1",
        local_id="l1",
        server_id="s1",
        create_time=MAY_10 - 5,
        send_time=MAY_10,
        seq=7,
        msg_type=1,
        content_type=2,
        content=b"hi",
        group_id="g1",
        send_seq=3,
    )
    chat = group.copy(receiver_id="alice", group_id="", msg_type=0, related_msg_id="r0", seq=8)
    async with open_mongo() as db:
        inbox = MongoInbox(db=db, use_sharding=False)
        await inbox.start()
        await inbox.insert_copies(
            [
                ("alice", 0, group),
                ("carol", 1, group.copy(seq=0)),
                ("bob", 0, chat),
                ("erin", 0, chat.copy(is_read=True)),
            ]
        )
        base = {"_id", "owner_id", "box", "box_seq", "local_id", "server_id", "create_time"}
        base |= {"send_time", "content_type", "content", "send_id", "msg_type"}
        stored = {
            (d["owner_id"], d["box"]): set(d) for d in await db[SINGLE_COLLECTION].find().to_list()
        }
        assert stored == {
            ("alice", 0): base | {"group_id", "send_seq"},
            ("carol", 1): base | {"group_id"},
            ("bob", 0): base | {"receiver_id", "send_seq", "related_msg_id"},
            ("erin", 0): base | {"receiver_id", "send_seq", "related_msg_id"},
        }
        assert await inbox.pull("erin", 0, 10, 0, 0, 0) == [chat]
        assert await inbox.pull("alice", 0, 10, 0, 0, 0) == [group]
        assert await inbox.pull("carol", 0, 0, 0, 10, 0) == [group.copy(seq=0)]
        assert await inbox.pull("bob", 0, 10, 0, 0, 0) == [chat]
        assert await inbox.mark_read("bob", [8]) == 1
        assert await inbox.pull("bob", 0, 10, 0, 0, 0) == [chat.copy(is_read=True)]
        assert await inbox.origins("alice", [7]) == {("carol", "g1")}
        assert await inbox.origins("bob", [8]) == {("carol", "")}

        full = {"owner_id": "dave", "box": 0, "box_seq": 8, "seq": 8, "is_read": False}
        full |= {"local_id": "l1", "server_id": "s1", "create_time": MAY_10 - 5}
        full |= {"send_time": MAY_10, "content_type": 2, "content": b"hi", "send_id": "carol"}
        full |= {"receiver_id": "alice", "send_seq": 3, "msg_type": 0, "group_id": ""}
        full |= {"related_msg_id": "r0"}
        await db[SINGLE_COLLECTION].insert_one(full)
        assert await inbox.pull("dave", 0, 10, 0, 0, 0) == [chat]
        assert await inbox.origins("dave", [8]) == {("carol", "")}


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
        ((9, 20), (2, 20), ("2024-06",)),  # above every stored seq: only the newest month
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


async def test_the_month_index_is_written_only_when_an_owner_enters_a_month(
    open_mongo: OpenMongo,
) -> None:
    alice, bob = two_users_in_different_shards()
    listener = Commands()
    async with open_mongo(listeners=[listener]) as db:
        inbox = MongoInbox(db=db, use_sharding=True, user_shards=SHARDS)
        await inbox.insert_copies([received(alice, 1, APR_20), sent(alice, 1, APR_20)])
        assert listener.index_writes() == 1  # one insert for both boxes of a new owner
        listener.seen.clear()
        for seq in range(2, 6):  # the rest of April: no index write at all
            await inbox.insert_copies(
                [received(alice, seq, APR_20 + seq), sent(alice, seq, APR_20)]
            )
        assert listener.index_writes() == 0
        assert listener.collections("insert") == {inbox_collection(alice, APR_20, SHARDS)}
        await inbox.insert_copies([received(alice, 6, MAY_10), received(bob, 1, MAY_10)])
        assert listener.index_writes() == 1  # alice enters May, bob is new: one command
        assert await marks(db, alice) == {(0, 202404, 1), (1, 202404, 1), (0, 202405, 6)}
        listener.seen.clear()
        await inbox.insert_copies([received(alice, 7, MAY_10 + 1), received(bob, 2, MAY_10 + 1)])
        assert listener.index_writes() == 0
        # another process (cold cache) writes the index once per owner, then stops
        other = MongoInbox(db=db, use_sharding=True, user_shards=SHARDS)
        await other.insert_copies([received(alice, 8, MAY_10 + 2)])
        await other.insert_copies([received(alice, 9, MAY_10 + 3)])
        assert listener.index_writes() == 1
        assert listener.index_updates() == 0  # marks are only ever inserted
        assert await marks(db, alice) == {
            (0, 202404, 1),
            (1, 202404, 1),
            (0, 202405, 6),
            (0, 202405, 8),  # harmless: May's first stays 6
        }
        pulled = await other.pull(alice, 0, 100, 0, 100, 0)
        assert [m.seq for m in pulled if m.seq] == list(range(1, 10))
        assert [m.send_seq for m in pulled if not m.seq] == list(range(1, 6))


async def test_owners_the_bounded_cache_forgot_are_marked_again(open_mongo: OpenMongo) -> None:
    listener = Commands()
    owners = [f"u{i}" for i in range(40)]
    async with open_mongo(listeners=[listener]) as db:
        inbox = MongoInbox(db=db, use_sharding=True, user_shards=SHARDS, index_cache_size=10)
        await inbox.insert_copies([received(o, 1, APR_20) for o in owners])
        assert listener.index_writes() == 1
        assert await db[SEQ_INDEX_COLLECTION].count_documents({}) == 40
        listener.seen.clear()
        await inbox.insert_copies([received(o, 2, APR_20 + 1) for o in owners])
        assert listener.index_writes() == 1  # only 10 owners are still cached: 30 marks
        assert await db[SEQ_INDEX_COLLECTION].count_documents({}) == 70
        listener.seen.clear()
        # the last ten marked (least recently used out first)
        await inbox.insert_copies([received(o, 3, APR_20 + 2) for o in owners[20:30]])
        assert listener.index_writes() == 0
        for n, owner in enumerate(owners):
            want = [1, 2, 3] if 20 <= n < 30 else [1, 2]
            assert [m.seq for m in await inbox.pull(owner, 0, 9, 0, 0, 0)] == want


async def test_a_late_copy_of_the_previous_month_is_still_pulled(open_mongo: OpenMongo) -> None:
    """seq 3 is sent in May by one server; seq 4 was stamped a moment before May by another,
    so it belongs to April although its seq is higher than May's first."""
    alice, _ = two_users_in_different_shards()
    listener = Commands()
    async with open_mongo(listeners=[listener]) as db:
        first = MongoInbox(db=db, use_sharding=True, user_shards=SHARDS)
        second = MongoInbox(db=db, use_sharding=True, user_shards=SHARDS)
        await first.insert_copies([received(alice, s, APR_20 + s) for s in (1, 2)])
        await second.insert_copies([received(alice, 2, APR_20 + 2)])  # learns April
        await first.insert_copies([received(alice, 3, APR_END + 5)])  # May's first
        # another process, still believing April is the newest, relies on the late window
        await second.insert_copies([received(alice, 4, APR_END - 1)])
        assert await marks(db, alice) == {(0, 202404, s) for s in (1, 2, 4)} | {(0, 202405, 3)}
        # the same process knows May is newer: an older month's copy always widens April
        await first.insert_copies([received(alice, 5, APR_END - 7_200_000)])
        await first.insert_copies([received(alice, s, MAY_10 + s) for s in (6, 7)])
        april = inbox_collection(alice, APR_20, SHARDS)
        may = inbox_collection(alice, MAY_10, SHARDS)
        for reader in (first, second, MongoInbox(db=db, use_sharding=True, user_shards=SHARDS)):
            listener.seen.clear()
            got = [m.seq for m in await reader.pull(alice, 2, 5, 0, 0, 0)]
            assert got == [5, 4, 3]  # send_time order
            assert listener.collections("find") == {april, may, SEQ_INDEX_COLLECTION}
            listener.seen.clear()
            got = [m.seq for m in await reader.pull(alice, 5, 7, 0, 0, 0)]
            assert got == [6, 7]
            assert listener.collections("find") == {may, SEQ_INDEX_COLLECTION}


async def test_concurrent_writers_keep_every_copy_reachable(open_mongo: OpenMongo) -> None:
    alice, bob = two_users_in_different_shards()
    async with open_mongo() as db:
        inboxes = [MongoInbox(db=db, use_sharding=True, user_shards=SHARDS) for _ in range(3)]
        times = [APR_20, MAY_10, JUN_10]
        copies = [
            received(user, seq, times[(seq - 1) // 10] + seq)
            for user in (alice, bob)
            for seq in range(1, 31)
        ]
        # every writer gets every third batch, in no particular order of months
        batches = [copies[i : i + 4] for i in range(0, len(copies), 4)]
        await asyncio.gather(
            *(
                asyncio.gather(
                    *(inboxes[n % 3].insert_copies(b) for n, b in enumerate(batches) if n % 3 == k)
                )
                for k in range(3)
            )
        )
        for user in (alice, bob):
            for low in range(0, 30, 7):
                got = [m.seq for m in await inboxes[0].pull(user, low, low + 9, 0, 0, 0)]
                assert got == list(range(low + 1, min(low + 9, 30) + 1))


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
        assert 202404 in {m for _, m, _ in await marks(db, alice)}  # bob's April remains
        later = await inbox.clean_inbox(JUN_10 + 2 * DAY, 30, frozenset())
        assert later.dropped == [inbox_collection(bob, APR_20, SHARDS)]
        assert {m for _, m, _ in await marks(db, alice)} == {202405, 202406}


def test_except_types_take_the_originals_names() -> None:
    names = ["MsgTypeGroupInvitation", "MsgTypeFriendApplyReq", "GROUP_UPDATE", "13"]
    assert except_type_codes(names) == {2, 10, 9, 13}
    with pytest.raises(ValueError, match="MsgTypeNope"):
        except_type_codes(["MsgTypeNope"])
