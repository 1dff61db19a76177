"""The conversation stores of both modes against the same contract: the rows the message
stores keep as they store a batch (one per conversation, the sender's read), the listing
of a user's friends and groups, flags and reads, a member's read from their join, a
hidden conversation back with its next message. PostgreSQL also: a replayed batch counts
nothing twice, and concurrent batches to one conversation add up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from sandcat.adapters.embedded.conversations import SqliteConversationStore
from sandcat.adapters.embedded.messages import SqliteMessageLog
from sandcat.adapters.embedded.social import SqliteGroupStore
from sandcat.adapters.postgres.conversations import PostgresConversationStore
from sandcat.adapters.postgres.history import PostgresHistory
from sandcat.adapters.postgres.social import PostgresGroupStore
from sandcat.domain import Submission, conversation_id
from sandcat.ports import ConversationStore, GroupStore
from sandcat.protocol.msg import Msg
from sandcat.protocol.payloads import GroupInfo
from tests.contracts.conftest import OpenPg, OpenSqlite

#: Friends both ways (a, b), and group g of alice and carol.
SOCIAL = [
    "INSERT INTO friends (user_id, friend_id, fs_id, status, create_time, update_time) "
    "VALUES ('alice', 'bob', 'f1', 1, 10, 10), ('bob', 'alice', 'f1', 1, 10, 10), "
    "('alice', 'dave', 'f2', 4, 10, 10)",
    "INSERT INTO group_members (group_id, user_id, group_name, role, joined_at) "
    "VALUES ('g', 'alice', 'alice', 0, 20), ('g', 'carol', 'carol', 2, 20)",
]


@dataclass
class Stores:
    store: ConversationStore
    #: Stores chat messages as one batch, the way the mode's message store does.
    append: Callable[[Sequence[Msg]], Awaitable[None]]
    execute: Callable[[str], Awaitable[Any]]
    groups: GroupStore


def chat(n: int, sender: str, to: str, *, group: str = "", text: str = "") -> Msg:
    return Msg(
        send_id=sender,
        receiver_id=group or to,
        group_id=group,
        local_id=f"l{n}",
        server_id=f"s{n}",
        send_time=1000 + n,
        msg_type=1 if group else 0,
        content_type=1,
        content=(text or f"m{n}").encode(),
    )


@asynccontextmanager
async def _sqlite(open_sqlite: OpenSqlite) -> AsyncIterator[Stores]:
    async with open_sqlite() as db:
        log = SqliteMessageLog(db)
        log.start()

        async def append(msgs: Sequence[Msg]) -> None:
            subs = [Submission(msg=m, receivers=[m.receiver_id], history=True) for m in msgs]
            await asyncio.gather(*(log.submit(sub) for sub in subs))

        async def execute(sql: str) -> None:
            await db.write(lambda conn: conn.execute(sql))

        try:
            yield Stores(SqliteConversationStore(db), append, execute, SqliteGroupStore(db))
        finally:
            await log.stop()


@asynccontextmanager
async def _postgres(open_pg: OpenPg) -> AsyncIterator[Stores]:
    async with open_pg() as pool:
        yield Stores(
            PostgresConversationStore(pool=pool),
            PostgresHistory(pool=pool).append,
            pool.execute,
            PostgresGroupStore(pool=pool),
        )


@pytest.fixture(params=["sqlite", "postgres"])
async def stores(request: pytest.FixtureRequest, open_sqlite: OpenSqlite) -> AsyncIterator[Stores]:
    if request.param == "sqlite":
        opened = _sqlite(open_sqlite)
    else:
        opened = _postgres(request.getfixturevalue("open_pg"))
    async with opened as s:
        for sql in SOCIAL:
            await s.execute(sql)
        yield s


async def _listing(store: ConversationStore, user: str, since: int = 0) -> dict[str, Any]:
    return {c.peer_id: c for c in await store.conversations(user, since)}


async def test_a_batch_counts_once_per_conversation_and_reads_for_the_sender(
    stores: Stores,
) -> None:
    await stores.append(
        [
            chat(1, "alice", "bob"),
            chat(2, "alice", "bob"),
            chat(3, "carol", "", group="g"),
            chat(4, "alice", "bob"),
            chat(5, "bob", "alice", text="last one"),
            chat(6, "carol", "", group="g"),
        ]
    )
    alice = await _listing(stores.store, "alice")
    assert set(alice) == {"bob", "g"}  # dave is no friend any more
    bob_conv, group = alice["bob"], alice["g"]
    assert (bob_conv.n, bob_conv.read_n, bob_conv.is_group) == (4, 3, False)
    assert bob_conv.last is not None and bob_conv.last.content == b"last one"
    assert (bob_conv.last.sender, bob_conv.last.server_id, bob_conv.last.time) == (
        "bob",
        "s5",
        1005,
    )
    assert (group.n, group.read_n, group.is_group) == (2, 0, True)
    assert (await _listing(stores.store, "bob"))["alice"].read_n == 4
    assert (await _listing(stores.store, "carol"))["g"].read_n == 2
    assert await stores.store.conversation("alice", "carol") is None
    assert await stores.store.conversation("carol", "g") is not None

    # A later batch adds to the counts; the sender's read never goes back.
    await stores.append([chat(7, "bob", "alice"), chat(8, "alice", "bob")])
    again = await stores.store.conversation("alice", "bob")
    assert again is not None and (again.n, again.read_n) == (6, 6)


async def test_flags_reads_and_since(stores: Stores) -> None:
    await stores.append([chat(1, "bob", "alice"), chat(2, "bob", "alice")])
    key = conversation_id("alice", "bob", is_group=False)
    listed = await _listing(stores.store, "alice")
    assert listed["bob"].update_time == 1002
    assert await _listing(stores.store, "alice", since=1002) == {}

    await stores.store.set_flags("alice", key, pinned=True, muted=None, hidden=None, now_ms=5000)
    await stores.store.set_flags("alice", key, pinned=None, muted=True, hidden=None, now_ms=6000)
    conv = await stores.store.conversation("alice", "bob")
    assert conv is not None and (conv.pinned, conv.muted, conv.hidden) == (True, True, False)
    assert conv.update_time == 6000 and conv.read_n == 0
    assert set(await _listing(stores.store, "alice", since=5500)) == {"bob"}

    await stores.store.mark_read("alice", [key], 1, 7000)
    conv = await stores.store.conversation("alice", "bob")
    assert conv is not None and (conv.read_n, conv.pinned) == (1, True)
    await stores.store.mark_read("alice", [key, "g"], None, 8000)
    await stores.store.mark_read("alice", [key], 1, 9000)  # never lowers
    conv = await stores.store.conversation("alice", "bob")
    assert conv is not None and conv.read_n == 2
    # Pinned first, then newest first.
    await stores.append([chat(3, "carol", "", group="g")])
    assert [c.peer_id for c in await stores.store.conversations("alice", 0)] == ["bob", "g"]


async def _state(store: ConversationStore, user: str, peer: str) -> tuple[int, int, bool]:
    """``(n, read_n, hidden)`` of the user's conversation."""
    conv = await store.conversation(user, peer)
    assert conv is not None, f"{user} has no conversation with {peer}"
    return conv.n, conv.read_n, conv.hidden


async def test_joining_a_group_reads_what_was_sent_before(stores: Stores) -> None:
    await stores.execute(
        "INSERT INTO users (id, name, account, password, salt, avatar, create_time, "
        "update_time) VALUES ('erin', 'erin', 'erin', 'p', 's', '', 1, 1), "
        "('fred', 'fred', 'fred', 'p', 's', '', 1, 1), "
        "('alice', 'alice', 'alice', 'p', 's', '', 1, 1)"
    )
    await stores.append([chat(1, "carol", "", group="g"), chat(2, "alice", "", group="g")])
    assert await stores.groups.add_members("g", ["fred", "alice", "erin"], 3000) == [
        "fred",
        "erin",
    ]
    for user in ("erin", "fred"):
        assert await _state(stores.store, user, "g") == (2, 2, False)
        conv = await stores.store.conversation(user, "g")
        assert conv is not None and conv.update_time == 3000
    # Only the new members: carol's read stays at her own message.
    assert await _state(stores.store, "carol", "g") == (2, 1, False)
    await stores.append([chat(3, "carol", "", group="g")])
    assert await _state(stores.store, "erin", "g") == (3, 2, False)

    # Left and back: read up to the count at the return, never lower.
    assert await stores.groups.remove_members("g", ["erin"]) == ["erin"]
    await stores.append([chat(4, "carol", "", group="g"), chat(5, "carol", "", group="g")])
    assert await stores.groups.add_members("g", ["erin"], 4000) == ["erin"]
    assert await _state(stores.store, "erin", "g") == (5, 5, False)

    # A group's creation reads the same way (its id may already have a conversation).
    await stores.append([chat(6, "erin", "", group="g2")])
    info = GroupInfo("g2", "erin", "two", "", "", "", 5000, 5000)
    await stores.groups.create_group(info, ["erin", "fred"])
    assert await _state(stores.store, "fred", "g2") == (1, 1, False)
    fresh = GroupInfo("g3", "erin", "three", "", "", "", 5000, 5000)
    await stores.groups.create_group(fresh, ["erin", "fred"])
    assert await _state(stores.store, "fred", "g3") == (0, 0, False)


async def test_a_hidden_conversation_comes_back_with_its_next_message(stores: Stores) -> None:
    key = conversation_id("alice", "bob", is_group=False)

    async def hide(
        user: str, conv: str, hidden: bool | None, now: int, pinned: bool | None = None
    ) -> None:
        await stores.store.set_flags(
            user, conv, pinned=pinned, muted=None, hidden=hidden, now_ms=now
        )

    await hide("alice", key, True, 900)  # before any message
    assert await _state(stores.store, "alice", "bob") == (0, 0, True)
    assert await _state(stores.store, "bob", "alice") == (0, 0, False)
    await stores.append([chat(1, "bob", "alice")])
    assert await _state(stores.store, "alice", "bob") == (1, 0, False)
    assert set(await _listing(stores.store, "alice", since=1000)) == {"bob"}

    await hide("alice", key, True, 5000)
    await hide("alice", key, None, 6000, pinned=True)  # other flags keep it hidden
    conv = await stores.store.conversation("alice", "bob")
    assert conv is not None and conv.hidden and conv.pinned
    await stores.store.mark_read("alice", [key], None, 7000)
    assert await _state(stores.store, "alice", "bob") == (1, 1, True)
    await stores.append([chat(2, "alice", "bob")])  # one's own message too
    assert await _state(stores.store, "alice", "bob") == (2, 2, False)

    await hide("alice", key, True, 8000)
    await hide("alice", key, False, 9000)
    assert await _state(stores.store, "alice", "bob") == (2, 2, False)
    # A group the same way, for its one member who hid it.
    await hide("alice", "g", True, 9000)
    assert await _state(stores.store, "alice", "g") == (0, 0, True)
    await stores.append([chat(3, "carol", "", group="g")])
    assert await _state(stores.store, "alice", "g") == (1, 0, False)
    assert await _state(stores.store, "carol", "g") == (1, 1, False)


async def test_postgres_replays_count_nothing_twice_and_concurrent_batches_add_up(
    open_pg: OpenPg,
) -> None:
    async with _postgres(open_pg) as s:
        for sql in SOCIAL:
            await s.execute(sql)
        batch = [chat(n, "alice", "bob") for n in range(1, 4)]
        await s.append(batch)
        await s.append(batch)  # the msg-server replays a batch after a crash
        conv = await s.store.conversation("bob", "alice")
        assert conv is not None and conv.n == 3
        await asyncio.gather(
            *(
                s.append([chat(n, "bob" if n % 2 else "alice", "alice" if n % 2 else "bob")])
                for n in range(10, 30)
            )
        )
        conv = await s.store.conversation("bob", "alice")
        assert conv is not None and conv.n == 23
        assert conv.last is not None and conv.last.server_id == "s29"
