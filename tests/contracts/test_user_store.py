"""``UserStore``: SQLite (embedded) and PostgreSQL keep users alike, errors included."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator

import pytest

from sandcat.adapters.embedded.users import SqliteUserStore
from sandcat.adapters.postgres.users import PostgresUserStore
from sandcat.domain import UserChanges, UserRecord
from sandcat.errors import BadRequest
from sandcat.ports import UserStore
from tests.contracts.conftest import OpenPg, OpenSqlite


@pytest.fixture(params=["sqlite", "postgres"])
async def users(
    request: pytest.FixtureRequest, open_sqlite: OpenSqlite, open_pg: OpenPg
) -> AsyncIterator[UserStore]:
    if request.param == "sqlite":
        async with open_sqlite() as db:
            yield SqliteUserStore(db)
    else:
        async with open_pg() as pool:
            yield PostgresUserStore(pool=pool)


def user(uid: str, **fields: object) -> UserRecord:
    record = UserRecord(
        id=uid,
        name=f"name-{uid}",
        account=f"acc-{uid}",
        password="$argon2id$hash",
        salt="salt",
        avatar="avatar1.png",
        email=f"{uid}@example.com",
        create_time=1000,
        update_time=1000,
    )
    for name, value in fields.items():
        setattr(record, name, value)
    return record


async def test_a_user_reads_back_with_every_field(users: UserStore) -> None:
    full = user(
        "u1",
        gender="f",
        age=30,
        phone="+100",
        address="street",
        region="north",
        birthday=631152000000,
        signature="hi",
    )
    await users.insert_user(full)
    assert await users.get_user("u1") == full
    assert await users.get_user("nobody") is None


async def test_a_taken_email_is_refused(users: UserStore) -> None:
    await users.insert_user(user("u1", email="same@example.com"))
    assert await users.email_taken("same@example.com")
    assert not await users.email_taken("other@example.com")
    with pytest.raises(BadRequest):
        await users.insert_user(user("u2", email="same@example.com"))
    assert await users.get_user("u2") is None
    # Case does not make another address: the check and the unique index both ignore it.
    assert await users.email_taken("SAME@Example.COM")
    with pytest.raises(BadRequest):
        await users.insert_user(user("u5", email="SAME@EXAMPLE.COM"))
    assert await users.get_user("u5") is None
    found = await users.find_login("Same@Example.Com")
    assert found is not None and found.id == "u1"
    await users.insert_user(user("u3", email=None))  # no e-mail: several users may have none
    await users.insert_user(user("u4", email=None))
    assert (await users.get_user("u4")) is not None


async def test_login_by_account_email_or_phone_preferring_the_account(users: UserStore) -> None:
    await users.insert_user(user("u1", phone="555"))
    for login in ("acc-u1", "u1@example.com", "555"):
        found = await users.find_login(login)
        assert found is not None and found.id == "u1"
    # an account match wins over an e-mail match
    await users.insert_user(user("u3", account="shared", email="x@example.com"))
    await users.insert_user(user("u4", account="acc-u4", email="shared"))
    found = await users.find_login("shared")
    assert found is not None and found.id == "u3"
    assert await users.find_login("missing") is None


async def test_deleted_users_are_invisible(users: UserStore) -> None:
    await users.insert_user(user("gone", is_delete=True))
    assert await users.get_user("gone") is None
    assert await users.find_login("acc-gone") is None
    assert await users.search_user("gone@example.com", "other") is None
    assert await users.update_user("gone", UserChanges(name="new"), 2000) is None


async def test_update_changes_only_non_empty_fields(users: UserStore) -> None:
    await users.insert_user(user("u1", phone="555", birthday=5, signature="old"))
    changed = await users.update_user(
        "u1",
        UserChanges(name="new", avatar="", gender=None, phone="777", birthday=0, signature="s"),
        2000,
    )
    expected = user("u1", name="new", phone="777", birthday=5, signature="s", update_time=2000)
    assert changed == expected
    assert await users.get_user("u1") == expected
    assert await users.update_user("nobody", UserChanges(name="x"), 2000) is None


async def test_update_refuses_someone_elses_email(users: UserStore) -> None:
    await users.insert_user(user("u1"))
    await users.insert_user(user("u2"))
    for taken in ("u1@example.com", "U1@EXAMPLE.COM"):
        with pytest.raises(BadRequest):
            await users.update_user("u2", UserChanges(email=taken), 2000)
    same = await users.update_user("u1", UserChanges(email="u1@example.com"), 2000)
    assert same is not None and same.email == "u1@example.com"
    moved = await users.update_user("u2", UserChanges(email="new@example.com"), 2000)
    assert moved is not None and moved.email == "new@example.com"
    assert await users.email_taken("new@example.com")


async def test_update_refuses_a_phone_that_logs_in_as_someone_else(users: UserStore) -> None:
    """Login matches account, e-mail and phone: a phone may name no other user."""
    await users.insert_user(user("u1", phone="555"))
    await users.insert_user(user("u2"))
    await users.insert_user(user("42", account="4242"))
    for taken in ("555", "42", "4242", "u1@example.com", "acc-u1"):
        with pytest.raises(BadRequest) as refused:
            await users.update_user("u2", UserChanges(phone=taken), 2000)
        assert "phone" in str(refused.value)
    assert (await users.get_user("u2")) == user("u2")
    kept = await users.update_user("u1", UserChanges(phone="555", name="same"), 2000)
    assert kept is not None and kept.phone == "555"
    # Two users racing for one free number: exactly one gets it.
    results = await asyncio.gather(
        users.update_user("u2", UserChanges(phone="777"), 2000),
        users.update_user("42", UserChanges(phone="777"), 2000),
        return_exceptions=True,
    )
    assert sorted(type(r).__name__ for r in results) == ["BadRequest", "UserRecord"]
    found = await users.find_login("777")
    assert found is not None and found.id in {"u2", "42"}


async def test_set_password(users: UserStore) -> None:
    await users.insert_user(user("u1"))
    await users.set_password("u1", "$argon2id$new", "salt2", 3000)
    found = await users.get_user("u1")
    assert found is not None
    assert (found.password, found.salt, found.update_time) == ("$argon2id$new", "salt2", 3000)


async def test_search_matches_email_phone_or_account_exactly_but_not_self(
    users: UserStore,
) -> None:
    await users.insert_user(user("u1", phone="555"))
    await users.insert_user(user("u2"))
    for pattern, field in (("u1@example.com", "email"), ("555", "phone"), ("acc-u1", "account")):
        found = await users.search_user(pattern, "u2")
        assert found is not None
        assert (found[0].id, found[1]) == ("u1", field)
    assert await users.search_user("acc-u1", "u1") is None
    assert await users.search_user("name-u1", "u2") is None
    assert await users.search_user("acc-u", "u2") is None


async def test_token_generations(users: UserStore) -> None:
    await users.insert_user(user("u1"))
    await users.insert_user(user("u2"))
    assert await users.token_generation("u1") == 0
    assert await users.revoke_tokens("u1") == 1
    assert await users.revoke_tokens("u1") == 2
    assert await users.token_generation("u1") == 2
    assert await users.token_generation("u2") == 0
    assert await users.token_generation("nobody") == 0


async def test_a_raise_in_one_process_is_seen_by_the_others_at_once(open_pg: OpenPg) -> None:
    """Distributed mode: api and gateway processes each have a store; none may keep a stale
    generation after another raised it (the embedded store caches: it is the only writer)."""
    async with open_pg() as pool:
        api, gateway = PostgresUserStore(pool=pool), PostgresUserStore(pool=pool)
        await api.insert_user(user("u1"))
        assert await gateway.token_generation("u1") == 0
        await api.revoke_tokens("u1")
        assert await gateway.token_generation("u1") == 1


async def test_sqlite_login_lookups_use_indexes(open_sqlite: OpenSqlite) -> None:
    """Logins and e-mail checks find their row through an index, never by scanning
    ``users`` (a scan made each login cost 111 ms at 50,000 users)."""
    async with open_sqlite() as db:
        store = SqliteUserStore(db)
        await store.insert_user(user("u1", phone="555"))
        statements: list[str] = []

        def trace(conn: sqlite3.Connection) -> None:
            conn.set_trace_callback(statements.append)

        await db.read(trace)
        await store.find_login("U1@example.com")
        await store.email_taken("U1@EXAMPLE.com")
        await db.read(lambda conn: conn.set_trace_callback(None))
        lookups = [s for s in statements if "FROM users" in s]
        assert len(lookups) == 2

        def plans(conn: sqlite3.Connection) -> list[str]:
            return [
                " / ".join(row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {s}"))
                for s in lookups
            ]

        for plan in await db.read(plans):
            assert "SCAN users" not in plan, plan
