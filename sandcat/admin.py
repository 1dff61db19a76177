"""Administrative commands that work on the configured store directly (not over the API).

``sandcat users seed`` creates many users at once for benchmarks and load tests. It is an
operator's command that needs the server's config and data files; nothing here is reachable
through the public API.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from dataclasses import dataclass
from typing import Any

from sandcat.adapters.embedded.sqlite import SqliteDatabase
from sandcat.adapters.embedded.users import SqliteUserStore
from sandcat.composition import db_path, migrate
from sandcat.config import Config
from sandcat.domain import UserRecord
from sandcat.errors import ConfigError
from sandcat.ids import SystemClock, nanoid
from sandcat.services.auth import PasswordService

FRIEND_PATTERNS = ("none", "ring", "all-pairs")


@dataclass(frozen=True, slots=True)
class SeedRequest:
    count: int
    prefix: str
    password: str
    domain: str = "bench.example.com"
    friends: str = "none"
    group_size: int = 0
    batch: int = 500


@dataclass(frozen=True, slots=True)
class SeededUser:
    id: str
    name: str
    email: str


async def seed_users(config: Config, request: SeedRequest) -> list[SeededUser]:
    """Insert ``request.count`` users through the user store; one password hash for all."""
    if request.count < 1:
        raise ConfigError("users seed: --count must be at least 1")
    if request.friends != "none" or request.group_size:
        raise ConfigError(
            "users seed: friendships and groups need the social store, not in this build yet"
        )
    migrate(config)
    # The whole seed is one bulk load: per-transaction fsync buys nothing here.
    db = SqliteDatabase(str(db_path(config)), synchronous="NORMAL")
    await db.open()
    try:
        store = SqliteUserStore(db)
        password_hash = await PasswordService(config.auth).hash(request.password)
        salt = PasswordService.salt_of(password_hash)
        now = SystemClock().now_ms()
        users = [
            SeededUser(nanoid(), f"{request.prefix}{i}", f"{request.prefix}{i}@{request.domain}")
            for i in range(request.count)
        ]
        for start in range(0, len(users), request.batch):
            chunk = users[start : start + request.batch]
            await asyncio.gather(
                *(
                    store.insert_user(
                        UserRecord(
                            id=user.id,
                            name=user.name,
                            account=user.id,
                            password=password_hash,
                            salt=salt,
                            avatar="avatar1.png",
                            email=user.email,
                            create_time=now,
                            update_time=now,
                        )
                    )
                    for user in chunk
                )
            )
        return users
    finally:
        await db.close()


def render(users: list[SeededUser], request: SeedRequest, fmt: str) -> str:
    """The created users as JSON (with the shared password) or CSV (``id,name,email,password``)."""
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["id", "name", "email", "password"])
        writer.writerows([u.id, u.name, u.email, request.password] for u in users)
        return out.getvalue()
    doc: dict[str, Any] = {
        "password": request.password,
        "friends": request.friends,
        "users": [{"id": u.id, "name": u.name, "email": u.email} for u in users],
    }
    return json.dumps(doc, indent=1) + "\n"
