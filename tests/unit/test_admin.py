"""``sandcat users seed``: users land in the store and can log in with the shared password."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from sandcat import cli
from sandcat.adapters.embedded.sqlite import SqliteDatabase
from sandcat.adapters.embedded.users import SqliteUserStore
from sandcat.admin import SeedRequest, render, seed_users
from sandcat.composition import db_path
from sandcat.errors import BadRequest, ConfigError
from sandcat.services.auth import PasswordService
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


async def test_friends_and_groups_are_refused_until_the_social_store_exists(
    tmp_path: Path,
) -> None:
    config = make_config(tmp_path / "data")
    with pytest.raises(ConfigError, match="social store"):
        await seed_users(config, SeedRequest(count=2, prefix="f", password="pw", friends="ring"))


def test_render_json_and_csv(tmp_path: Path) -> None:
    from sandcat.admin import SeededUser

    users = [SeededUser("id1", "a0", "a0@x.example"), SeededUser("id2", "a1", "a1@x.example")]
    request = SeedRequest(count=2, prefix="a", password="pw")
    doc = json.loads(render(users, request, "json"))
    assert doc["password"] == "pw"
    assert doc["users"] == [
        {"id": "id1", "name": "a0", "email": "a0@x.example"},
        {"id": "id2", "name": "a1", "email": "a1@x.example"},
    ]
    rows = list(csv.reader(io.StringIO(render(users, request, "csv"))))
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
