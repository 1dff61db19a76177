"""GitHub login's stores: sign-ins in progress (SQLite, Redis) single use with their own
TTL, and the links to GitHub accounts (SQLite, PostgreSQL) first come, first kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from sandcat.adapters.embedded.oauth import SqliteOAuthStore
from sandcat.adapters.embedded.sqlite import SqliteDatabase
from sandcat.adapters.embedded.users import SqliteUserStore
from sandcat.adapters.postgres.oauth import PostgresOAuthLinks
from sandcat.adapters.postgres.users import PostgresUserStore
from sandcat.adapters.redis.oauth import RedisOAuthStates
from sandcat.domain import UserRecord
from sandcat.ids import nanoid
from sandcat.ports import OAuthLinks, OAuthStates, UserStore
from tests.clock import FakeClock
from tests.contracts.conftest import OpenPg, OpenSqlite


@pytest.fixture(params=["sqlite", "redis"])
def states(request: pytest.FixtureRequest) -> OAuthStates:
    if request.param == "sqlite":
        db: SqliteDatabase = request.getfixturevalue("sqlite_db")
        return SqliteOAuthStore(db)
    client: Redis = request.getfixturevalue("redis_client")
    return RedisOAuthStates(client=client)


@pytest.fixture(params=["sqlite", "postgres"])
async def links(
    request: pytest.FixtureRequest, open_sqlite: OpenSqlite, open_pg: OpenPg
) -> AsyncIterator[tuple[OAuthLinks, UserStore]]:
    if request.param == "sqlite":
        async with open_sqlite() as db:
            yield SqliteOAuthStore(db), SqliteUserStore(db)
    else:
        async with open_pg() as pool:
            yield PostgresOAuthLinks(pool=pool), PostgresUserStore(pool=pool)


async def test_a_state_is_taken_once(states: OAuthStates) -> None:
    state = nanoid()
    assert await states.take_state(state) is None
    await states.put_state(state, '{"verifier": "v"}', 300)
    assert await states.take_state(state) == '{"verifier": "v"}'
    assert await states.take_state(state) is None


async def test_of_racing_takes_one_wins(states: OAuthStates) -> None:
    state = nanoid()
    await states.put_state(state, "value", 300)
    taken = await asyncio.gather(*(states.take_state(state) for _ in range(8)))
    assert taken.count("value") == 1 and taken.count(None) == 7


async def test_sqlite_states_expire_after_their_ttl(sqlite_db: SqliteDatabase) -> None:
    clock = FakeClock()
    store = SqliteOAuthStore(sqlite_db, clock=clock)
    await store.put_state("short", "s", 10)
    await store.put_state("long", "l", 60)
    clock.advance(11)
    assert await store.take_state("short") is None
    assert await store.take_state("long") == "l"
    await store.put_state("kept", "k", 10)
    clock.advance(9)
    assert await store.take_state("kept") == "k"


async def test_redis_states_carry_their_ttl(redis_client: Redis) -> None:
    store = RedisOAuthStates(client=redis_client)
    state = nanoid()
    await store.put_state(state, "v", 7)
    assert 0 < await redis_client.ttl(f"oauth_state:{state}") <= 7


async def _user(users: UserStore) -> str:
    user_id = nanoid()
    await users.insert_user(
        UserRecord(id=user_id, name="u", account=user_id, password="", salt="", avatar="a.png")
    )
    return user_id


async def test_a_link_is_kept_and_the_first_one_wins(
    links: tuple[OAuthLinks, UserStore],
) -> None:
    store, users = links
    alice, bob = await _user(users), await _user(users)
    assert await store.linked_user("github", "1") is None
    assert await store.link("github", "1", alice, 1) == alice
    assert await store.link("github", "1", bob, 2) == alice  # a racing second link
    assert await store.linked_user("github", "1") == alice
    assert await store.link("github", "2", bob, 3) == bob
    assert await store.linked_user("github", "2") == bob
    assert await store.linked_user("other", "1") is None
