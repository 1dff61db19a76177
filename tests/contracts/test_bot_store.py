"""``BotStore``: SQLite (embedded) and PostgreSQL alike: the lease that gives each bot one
webhook worker across processes, the cursor that only rises, tokens, dead letters."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from sandcat.adapters.embedded.bots import SqliteBotStore
from sandcat.adapters.embedded.users import SqliteUserStore
from sandcat.adapters.postgres.bots import PostgresBotStore
from sandcat.adapters.postgres.users import PostgresUserStore
from sandcat.domain import UserRecord
from sandcat.ports import BotRecord, BotStore, DeadLetter
from tests.contracts.conftest import OpenPg, OpenSqlite


@pytest.fixture(params=["sqlite", "postgres"])
async def bots(
    request: pytest.FixtureRequest, open_sqlite: OpenSqlite, open_pg: OpenPg
) -> AsyncIterator[BotStore]:
    """A store holding one bot, ``b1``, with token hash ``h1``."""
    bot = BotRecord("b1", "helper", "h1", "secret", "http://x/", False, 0, 1000, 1000)
    user = UserRecord(id="b1", name="helper", account="helper", password="", salt="", avatar="")
    if request.param == "sqlite":
        async with open_sqlite() as db:
            await SqliteUserStore(db).insert_user(user)
            store: BotStore = SqliteBotStore(db)
            await store.insert_bot(bot)
            yield store
    else:
        async with open_pg() as pool:
            await PostgresUserStore(pool=pool).insert_user(user)
            store = PostgresBotStore(pool=pool)
            await store.insert_bot(bot)
            yield store


async def test_one_lease_holder_at_a_time(bots: BotStore) -> None:
    assert await bots.hold_leases("p1", now_ms=1000, until_ms=2000) == {"b1"}
    assert await bots.hold_leases("p2", now_ms=1500, until_ms=2500) == set()
    assert await bots.hold_leases("p1", now_ms=1500, until_ms=2500) == {"b1"}  # renewed
    assert await bots.hold_leases("p2", now_ms=2499, until_ms=3499) == set()
    assert await bots.hold_leases("p2", now_ms=2500, until_ms=3500) == {"b1"}  # p1's ran out
    assert await bots.hold_leases("p1", now_ms=2600, until_ms=3600) == set()
    await bots.release_leases("p1")  # holds nothing: no effect
    assert await bots.hold_leases("p1", now_ms=2600, until_ms=3600) == set()
    await bots.release_leases("p2")
    assert await bots.hold_leases("p1", now_ms=2600, until_ms=3600) == {"b1"}
    assert await bots.delete_bot("b1")
    assert await bots.hold_leases("p1", now_ms=2700, until_ms=3700) == set()


async def test_cursor_token_webhook_and_dead_letters(bots: BotStore) -> None:
    await bots.advance_cursor("b1", 5)
    await bots.advance_cursor("b1", 3)
    bot = await bots.get_bot("b1")
    assert bot is not None and bot.cursor_seq == 5
    assert await bots.set_token("b1", "h2", 2000)
    assert await bots.bot_by_token("h1") is None
    assert (await bots.bot_by_token("h2")) == await bots.get_bot("b1")
    assert await bots.set_webhook("b1", "", True, 3000)
    assert await bots.set_webhook("b1", "http://y/", None, 3000)  # auto-accept kept
    bot = await bots.get_bot("b1")
    assert bot is not None and (bot.webhook_url, bot.auto_accept) == ("http://y/", True)
    assert not await bots.set_token("nobody", "h3", 0)
    for seq in (1, 2):
        await bots.add_dead_letter(DeadLetter("b1", seq, f"s{seq}", "{}", 3, "HTTP 500", seq))
    assert [d.seq for d in await bots.dead_letters("b1", 10)] == [2, 1]
    assert [d.seq for d in await bots.dead_letters(None, 1)] == [2]
    assert await bots.dead_letters("b2", 10) == []
    assert [b.id for b in await bots.list_bots()] == ["b1"]
    assert await bots.delete_bot("b1") and await bots.get_bot("b1") is None


async def test_dead_letters_queued_for_replay(bots: BotStore) -> None:
    for seq in (1, 2, 3):
        await bots.add_dead_letter(DeadLetter("b1", seq, f"s{seq}", "{}", 3, "HTTP 500", seq))
    await bots.add_dead_letter(DeadLetter("b2", 9, "other", "{}", 3, "HTTP 500", 9))
    ids = {d.seq: d.id for d in await bots.dead_letters("b1", 10)}
    assert len(set(ids.values())) == 3 and await bots.replays("b1", 10) == []
    assert await bots.queue_replay("b1", ids[3], 50) == 1
    assert await bots.queue_replay("b1", ids[1], 60) == 1
    assert await bots.queue_replay("b2", ids[2], 60) == 0  # another bot's id: not found
    queued = await bots.replays("b1", 10)
    assert [(d.seq, d.replay_time) for d in queued] == [(1, 60), (3, 50)]  # oldest first
    assert [d.seq for d in await bots.replays("b1", 1)] == [1]
    await bots.remove_dead_letter(ids[1])
    await bots.replay_failed(ids[3], 3, "timeout")
    [two, three] = sorted(await bots.dead_letters("b1", 10), key=lambda d: d.seq)
    assert (three.replay_time, three.attempts, three.last_error) == (0, 6, "timeout")
    assert two.replay_time == 0 and await bots.replays("b1", 10) == []
    assert await bots.queue_replay("b1", None, 70) == 2
    assert [d.seq for d in await bots.replays("b1", 10)] == [2, 3]
    assert await bots.replays("b2", 10) == []
