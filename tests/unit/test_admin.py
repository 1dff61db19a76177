"""``sandcat users seed``: users land in the store and can log in with the shared password;
the friendships and groups it offers are made."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from sandcat import cli
from sandcat.adapters.embedded.social import SqliteFriendStore, SqliteGroupStore
from sandcat.adapters.embedded.sqlite import SqliteDatabase
from sandcat.adapters.embedded.users import SqliteUserStore
from sandcat.admin import (
    Seeded,
    SeededGroup,
    SeedRequest,
    friend_pairs,
    render,
    seed,
    seed_users,
)
from sandcat.errors import BadRequest, ConfigError
from sandcat.services.auth import PasswordService
from sandcat.wiring import db_path
from tests.conftest import make_config


async def test_seeded_users_are_stored_with_a_verifiable_password(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data")
    users = await seed_users(config, SeedRequest(count=7, prefix="s", password="secret-1"))
    assert [u.email for u in users] == [f"s{i}@bench.example.com" for i in range(7)]
    assert len({u.id for u in users}) == 7

    db = SqliteDatabase(str(db_path(config)))
    await db.open()
    try:
        store = SqliteUserStore(db)
        found = await store.find_login("s3@bench.example.com")
        assert found is not None and found.id == users[3].id and found.name == "s3"
        passwords = PasswordService(config.auth)
        assert await passwords.verify(found.password, "secret-1")
        assert not await passwords.verify(found.password, "wrong")
    finally:
        await db.close()


async def test_seeding_a_taken_prefix_again_fails(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data")
    request = SeedRequest(count=2, prefix="dup", password="pw")
    await seed_users(config, request)
    with pytest.raises(BadRequest, match="already registered"):
        await seed_users(config, request)


async def test_seed_makes_the_friendships_and_groups_it_offers(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data")
    request = SeedRequest(count=5, prefix="f", password="pw", friends="ring", group_size=2)
    seeded = await seed(config, request)
    ids = [u.id for u in seeded.users]
    assert seeded.friendships == 5
    # Groups of two consecutive users; the fifth user alone makes no group.
    assert [g.members for g in seeded.groups] == [(ids[0], ids[1]), (ids[2], ids[3])]
    db = SqliteDatabase(str(db_path(config)))
    await db.open()
    try:
        friends = SqliteFriendStore(db)
        for i in range(5):
            assert await friends.are_friends(ids[i], ids[(i + 1) % 5])
        assert not await friends.are_friends(ids[0], ids[2])
        groups = SqliteGroupStore(db)
        roles = await groups.member_roles(seeded.groups[1].id)
        assert set(roles) == {ids[2], ids[3]}
        assert (await groups.get_group(seeded.groups[1].id)).owner == ids[2]  # type: ignore[union-attr]
    finally:
        await db.close()
    all_pairs = await seed(
        config, SeedRequest(count=4, prefix="p", password="pw", friends="all-pairs")
    )
    assert all_pairs.friendships == 6 and all_pairs.groups == []
    assert friend_pairs(2, "ring") == [(0, 1)]


async def test_seed_refuses_what_it_cannot_do(tmp_path: Path) -> None:
    config = make_config(tmp_path / "data")
    with pytest.raises(ConfigError, match="group-size"):
        await seed(config, SeedRequest(count=2, prefix="g", password="pw", group_size=1))
    with pytest.raises(ConfigError, match="--friends"):
        await seed(config, SeedRequest(count=2, prefix="g", password="pw", friends="star"))


def test_render_json_and_csv(tmp_path: Path) -> None:
    from sandcat.admin import SeededUser

    users = [SeededUser("id1", "a0", "a0@x.example"), SeededUser("id2", "a1", "a1@x.example")]
    seeded = Seeded(users, 1, [SeededGroup("g1", "id1", ("id1", "id2"))])
    request = SeedRequest(count=2, prefix="a", password="pw")
    doc = json.loads(render(seeded, request, "json"))
    assert doc["friendships"] == 1
    assert doc["groups"] == [{"id": "g1", "owner": "id1", "members": ["id1", "id2"]}]
    assert doc["password"] == "pw"
    assert doc["users"] == [
        {"id": "id1", "name": "a0", "email": "a0@x.example"},
        {"id": "id2", "name": "a1", "email": "a1@x.example"},
    ]
    rows = list(csv.reader(io.StringIO(render(seeded, request, "csv"))))
    assert rows == [
        ["id", "name", "email", "password"],
        ["id1", "a0", "a0@x.example", "pw"],
        ["id2", "a1", "a1@x.example", "pw"],
    ]


def test_cli_users_seed_writes_the_file(tmp_path: Path) -> None:
    config = tmp_path / "c.yml"
    config.write_text(
        f"embedded:\n  data_dir: {tmp_path / 'data'}\n"
        "auth:\n  argon2_time_cost: 1\n  argon2_memory_cost: 1024\n  argon2_parallelism: 1\n",
        encoding="utf-8",
    )
    out = tmp_path / "users.json"
    code = cli.main(
        ["users", "seed", "-c", str(config), "--count", "3", "--password", "p", "-o", str(out)]
    )
    assert code == 0
    assert [u["name"] for u in json.loads(out.read_text())["users"]] == [
        "bench0",
        "bench1",
        "bench2",
    ]
