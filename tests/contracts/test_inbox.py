"""The inbox read side: the embedded SQLite inbox and MongoDB (single collection and hybrid
sharding) return, delete and mark the same copies alike."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import pytest

from sandcat.adapters.embedded.messages import SqliteInbox, SqliteMessageLog
from sandcat.adapters.embedded.sqlite import SqliteDatabase
from sandcat.adapters.mongo.inbox import MongoInbox
from sandcat.domain import Submission
from sandcat.ports import InboxStore, InboxWriter, PullCursor, pull_cursor
from sandcat.protocol.msg import Msg
from tests.contracts.conftest import OpenMongo, OpenSqlite

RECEIVED, SENT = 0, 1
MAY_31 = int(dt.datetime(2024, 5, 31, 23, 59, tzinfo=dt.UTC).timestamp() * 1000)


class SqliteCopies:
    """Writes copies into the embedded inbox through the embedded message log itself (its own
    rows and seqs), so a change of the writer's row layout shows here. Each message becomes
    one submission to its received copies' owners (and the sender's outbox when it has a
    sent copy), in send_time order; the seqs the log allocates must be those the copies
    were planned with."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._log = SqliteMessageLog(db)

    async def insert_copies(self, copies: Sequence[tuple[str, int, Msg]]) -> None:
        messages: dict[str, tuple[Msg, list[tuple[str, int]], int]] = {}
        for owner, box, m in copies:
            msg, receivers, send_seq = messages.get(m.server_id, (m, [], 0))
            if box == SENT:
                send_seq = m.send_seq
            else:
                receivers.append((owner, m.seq))
            messages[m.server_id] = (msg, receivers, send_seq)
        self._log.start()
        try:
            # In send_time order, as they were sent (ties in the order of ``copies``).
            for msg, receivers, send_seq in sorted(
                messages.values(), key=lambda planned: planned[0].send_time
            ):
                stored = await self._log.submit(
                    Submission(
                        msg=msg.copy(seq=0, send_seq=0),
                        receivers=[owner for owner, _ in receivers],
                        outbox=send_seq > 0,
                        push_self=False,
                    )
                )
                assert stored.receiver_seqs == receivers, msg.server_id
                assert stored.ack.send_seq == send_seq, msg.server_id
        finally:
            await self._log.stop()


@dataclass
class Inbox:
    reader: InboxStore
    writer: InboxWriter


@pytest.fixture(params=["sqlite", "mongo-single", "mongo-sharded"])
async def inbox(
    request: pytest.FixtureRequest, open_sqlite: OpenSqlite, open_mongo: OpenMongo
) -> AsyncIterator[Inbox]:
    if request.param == "sqlite":
        async with open_sqlite() as db:
            yield Inbox(SqliteInbox(db), SqliteCopies(db))
        return
    async with open_mongo() as mdb:
        mongo = MongoInbox(db=mdb, use_sharding=request.param == "mongo-sharded", user_shards=4)
        await mongo.start()
        yield Inbox(mongo, mongo)


def chat(frm: str, to: str, seq: int, send_seq: int, t: int, *, group: str = "", n: int = 0) -> Msg:
    return Msg(
        send_id=frm,
        receiver_id=group or to,
        local_id=f"l-{frm}-{send_seq}-{n}",
        server_id=f"s-{frm}-{send_seq}-{n}",
        create_time=t - 5,
        send_time=t,
        seq=seq,
        msg_type=1 if group else 0,
        content_type=1,
        content=f"{frm}->{to} #{send_seq}".encode(),
        group_id=group,
        related_msg_id="r1" if n == 1 else None,
        send_seq=send_seq,
    )


def conversation() -> list[tuple[str, int, Msg]]:
    """alice and bob chat across the end of May 2024 (UTC); carol writes in a group.

    alice receives seq 1..6 and sends send_seq 1..4; two of her copies share a send_time.
    """
    copies: list[tuple[str, int, Msg]] = []
    minute = 60_000
    plan = [  # (sender, alice's receive seq or 0, bob's seq or 0, send_seq, minutes after)
        ("bob", 1, 0, 1, -3),
        ("alice", 0, 1, 1, -2),
        ("bob", 2, 0, 2, -1),
        ("alice", 0, 2, 2, 0),  # same send_time as the next one
        ("bob", 3, 0, 3, 0),
        ("bob", 4, 0, 4, 2),  # June from here on
        ("alice", 0, 3, 3, 3),
        ("bob", 6, 0, 5, 5),
        ("alice", 0, 4, 4, 6),
    ]
    for sender, alice_seq, bob_seq, send_seq, minutes in plan:
        t = MAY_31 + minutes * minute
        if sender == "bob":
            msg = chat("bob", "alice", alice_seq, send_seq, t)
            copies += [("alice", RECEIVED, msg), ("bob", SENT, msg.copy(seq=0))]
        else:
            msg = chat("alice", "bob", bob_seq, send_seq, t)
            copies += [("bob", RECEIVED, msg), ("alice", SENT, msg.copy(seq=0))]
    group = chat("carol", "alice", 5, 0, MAY_31 + 4 * minute, group="g1", n=1)
    copies += [
        ("alice", RECEIVED, group),
        ("carol", SENT, group.copy(seq=0, send_seq=1)),
    ]
    return copies


def expected(
    copies: list[tuple[str, int, Msg]], owner: str, rng: tuple[int, int], sent: tuple[int, int]
) -> list[Msg]:
    picked: list[tuple[int, int, Msg]] = []
    for who, box, msg in copies:
        key = msg.send_seq if box else msg.seq
        low, high = sent if box else rng
        if who == owner and low < key <= high:
            picked.append((msg.send_time, key, msg.copy(seq=0) if box else msg))
    return [m for _, _, m in sorted(picked, key=lambda p: (p[0], p[1]))]


@pytest.fixture
async def filled(inbox: Inbox) -> list[tuple[str, int, Msg]]:
    copies = conversation()
    await inbox.writer.insert_copies(copies)
    return copies


@pytest.mark.parametrize(
    ("rng", "sent"),
    [
        ((0, 100), (0, 100)),  # everything
        ((0, 6), (0, 0)),  # received only
        ((0, 0), (0, 4)),  # sent only
        ((2, 4), (1, 3)),  # (start, end]: start excluded, end included
        ((3, 3), (4, 2)),  # empty and inverted ranges
        ((3, 6), (2, 4)),  # June only
    ],
)
async def test_pull_returns_both_boxes_in_send_time_then_seq_order(
    inbox: Inbox,
    filled: list[tuple[str, int, Msg]],
    rng: tuple[int, int],
    sent: tuple[int, int],
) -> None:
    pulled = await inbox.reader.pull("alice", *rng, *sent, 0)
    assert pulled == expected(filled, "alice", rng, sent)


async def test_sent_copies_carry_send_seq_and_no_seq(
    inbox: Inbox, filled: list[tuple[str, int, Msg]]
) -> None:
    sent = await inbox.reader.pull("alice", 0, 0, 0, 100, 0)
    assert [(m.seq, m.send_seq, m.receiver_id) for m in sent] == [
        (0, 1, "bob"),
        (0, 2, "bob"),
        (0, 3, "bob"),
        (0, 4, "bob"),
    ]
    received = await inbox.reader.pull("alice", 0, 100, 0, 0, 0)
    assert [(m.seq, m.send_seq, m.group_id) for m in received] == [
        (1, 1, ""),
        (2, 2, ""),
        (3, 3, ""),
        (4, 4, ""),
        (5, 0, "g1"),
        (6, 5, ""),
    ]
    assert received[4].related_msg_id == "r1"


async def test_pull_is_per_owner(inbox: Inbox, filled: list[tuple[str, int, Msg]]) -> None:
    assert await inbox.reader.pull("bob", 0, 100, 0, 100, 0) == expected(
        filled, "bob", (0, 100), (0, 100)
    )
    assert await inbox.reader.pull("carol", 0, 100, 0, 100, 0) == expected(
        filled, "carol", (0, 100), (0, 100)
    )
    assert await inbox.reader.pull("nobody", 0, 100, 0, 100, 0) == []


async def test_limit_keeps_the_oldest(inbox: Inbox, filled: list[tuple[str, int, Msg]]) -> None:
    everything = expected(filled, "alice", (0, 100), (0, 100))
    assert await inbox.reader.pull("alice", 0, 100, 0, 100, 3) == everything[:3]


async def test_pages_after_a_cursor_cover_everything_once(
    inbox: Inbox, filled: list[tuple[str, int, Msg]]
) -> None:
    """Paging by cursor (how ``POST /message`` streams a range): every page continues after
    the last copy of the one before, so pages of any size join into the whole pull."""
    everything = expected(filled, "alice", (0, 100), (0, 100))
    for size in (1, 2, 3, 100):
        pages: list[Msg] = []
        after: PullCursor | None = None
        while page := await inbox.reader.pull("alice", 0, 100, 0, 100, size, after):
            assert len(page) <= size
            pages.extend(page)
            after = pull_cursor(page[-1])
        assert pages == everything, size


async def test_delete_received_removes_only_received_copies(
    inbox: Inbox, filled: list[tuple[str, int, Msg]]
) -> None:
    assert await inbox.reader.delete_received("alice", [2, 5, 99]) == 2
    assert await inbox.reader.delete_received("alice", [2]) == 0
    assert await inbox.reader.delete_received("alice", []) == 0
    received = await inbox.reader.pull("alice", 0, 100, 0, 0, 0)
    assert [m.seq for m in received] == [1, 3, 4, 6]
    sent = await inbox.reader.pull("alice", 0, 0, 0, 100, 0)
    assert [m.send_seq for m in sent] == [1, 2, 3, 4]  # send_seq 2 is another box
    assert len(await inbox.reader.pull("bob", 0, 100, 0, 100, 0)) == 9


async def test_mark_read_marks_received_copies(
    inbox: Inbox, filled: list[tuple[str, int, Msg]]
) -> None:
    assert await inbox.reader.mark_read("alice", [1, 6, 42]) == 2
    assert await inbox.reader.mark_read("bob", []) == 0
    received = await inbox.reader.pull("alice", 0, 100, 0, 100, 0)
    assert [(m.seq, m.send_seq) for m in received if m.is_read] == [(1, 1), (6, 5)]


async def test_origins_name_the_conversations_of_received_seqs(
    inbox: Inbox, filled: list[tuple[str, int, Msg]]
) -> None:
    """What a Read frame is about: (send_id, group_id) of one's own received copies."""
    assert await inbox.reader.origins("alice", [1, 5, 6, 42]) == {("bob", ""), ("carol", "g1")}
    assert await inbox.reader.origins("alice", [2]) == {("bob", "")}
    assert await inbox.reader.origins("carol", [1]) == set()  # a sent copy is not received
    assert await inbox.reader.origins("bob", []) == set()
