"""``CodeStore``: SQLite (embedded) and Redis hold e-mail codes alike."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from sandcat.adapters.embedded.sqlite import SqliteDatabase
from sandcat.adapters.embedded.users import SqliteCodeStore
from sandcat.adapters.redis.codes import RedisCodeStore
from sandcat.ports import CodeStore
from tests.client import until


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest) -> CodeStore:
    if request.param == "sqlite":
        db: SqliteDatabase = request.getfixturevalue("sqlite_db")
        return SqliteCodeStore(db)
    client: Redis = request.getfixturevalue("redis_client")
    return RedisCodeStore(client=client)


async def test_a_code_is_read_back_until_deleted(store: CodeStore) -> None:
    assert await store.get_code("a@example.com") is None
    await store.put_code("a@example.com", "123456", 300)
    assert await store.get_code("a@example.com") == "123456"
    assert await store.get_code("a@example.com") == "123456"
    await store.delete_code("a@example.com")
    assert await store.get_code("a@example.com") is None
    await store.delete_code("a@example.com")  # deleting twice is harmless


async def test_codes_are_per_email(store: CodeStore) -> None:
    await store.put_code("a@example.com", "111111", 300)
    await store.put_code("b@example.com", "222222", 300)
    await store.delete_code("a@example.com")
    assert await store.get_code("a@example.com") is None
    assert await store.get_code("b@example.com") == "222222"


async def _expired(store: CodeStore, email: str) -> bool:
    return await store.get_code(email) is None


async def test_each_code_expires_after_its_own_ttl(store: CodeStore) -> None:
    await store.put_code("short@example.com", "111111", 2)
    await store.put_code("long@example.com", "222222", 60)
    assert await store.get_code("short@example.com") == "111111"
    await until(lambda: _expired(store, "short@example.com"), what="short code expired")
    assert await store.get_code("long@example.com") == "222222"


async def test_a_new_code_replaces_the_old_one_and_its_ttl(store: CodeStore) -> None:
    await store.put_code("a@example.com", "111111", 1)
    await store.put_code("a@example.com", "222222", 60)
    await store.put_code("b@example.com", "333333", 1)  # the sentinel: a 1 s code expiring
    await until(lambda: _expired(store, "b@example.com"), what="sentinel expired")
    assert await store.get_code("a@example.com") == "222222"


async def test_wrong_guesses_void_the_code_at_the_bound(store: CodeStore) -> None:
    await store.put_code("a@example.com", "111111", 300)
    await store.put_code("b@example.com", "222222", 300)
    for _ in range(4):
        await store.record_failure("a@example.com", 5)
    assert await store.get_code("a@example.com") == "111111"  # 4 wrong guesses: still alive
    await store.record_failure("a@example.com", 5)
    assert await store.get_code("a@example.com") is None  # the 5th voids it
    assert await store.get_code("b@example.com") == "222222"  # per e-mail
    await store.put_code("a@example.com", "333333", 300)  # a new code starts from zero
    for _ in range(4):
        await store.record_failure("a@example.com", 5)
    assert await store.get_code("a@example.com") == "333333"
    await store.record_failure("nobody@example.com", 5)  # no code: nothing to count
