"""Administrative commands on the configured store (never over the public API).

``sandcat users list|show|disable|enable|delete|reset-password`` and ``sandcat connections
list|kick`` are ``AdminOps``: in embedded mode they run inside the running server, reached
through its control socket (``sandcat.control``), so its caches (token generations) see the
change; with no server running, the command takes the data folder's lock and works on the
files itself. In distributed mode they work on PostgreSQL, and reach the gateways through
the same Redis push path a logout uses. ``sandcat users seed`` creates many users (and,
if asked, friendships and groups) for benchmarks and load tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import json
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandcat import control
from sandcat.adapters.embedded.bots import SqliteBotStore
from sandcat.adapters.embedded.social import SqliteFriendStore, SqliteGroupStore
from sandcat.adapters.embedded.sqlite import (
    DataDirBusy,
    SqliteDatabase,
    apply_migrations,
    lock_data_dir,
)
from sandcat.adapters.embedded.users import SqliteUserStore
from sandcat.config import Config
from sandcat.domain import UserRecord
from sandcat.errors import BadRequest, ConfigError, NotFound
from sandcat.gateway.connections import Registry
from sandcat.ids import SystemClock, nanoid
from sandcat.log import get_logger
from sandcat.ports import Clock, SessionEnder, UserAdminStore
from sandcat.protocol.payloads import GroupInfo
from sandcat.services.auth import PasswordService
from sandcat.services.bots import BotAccounts
from sandcat.wiring import db_path

#: Admin commands write to the same logger as the HTTP edge's audit lines.
audit_log = get_logger("sandcat.audit")

FRIEND_PATTERNS = ("none", "ring", "all-pairs")

#: ``connections(user_id or None)``: the open WebSockets (all, or one user's), as dicts.
ConnectionLister = Callable[[str | None], Awaitable[list[dict[str, Any]]]]


class AdminError(RuntimeError):
    """An admin command cannot run (no database, a server that does not answer)."""


def user_row(user: UserRecord) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "account": user.account,
        "email": user.email,
        "phone": user.phone,
        "disabled": user.disabled,
        "create_time": user.create_time,
    }


@dataclass(slots=True)
class AdminOps:
    """The operator's commands on one store; ``run`` is what the control socket calls."""

    users: UserAdminStore
    sessions: SessionEnder
    passwords: PasswordService
    connections: ConnectionLister
    #: ``sandcat bot ...``: the bot accounts of this store.
    bots: BotAccounts | None = None
    clock: Clock = field(default_factory=SystemClock)

    async def _find(self, who: str) -> UserRecord:
        """A user by id, account, e-mail or phone."""
        user = await self.users.get_user(who) or await self.users.find_login(who)
        if user is None:
            raise NotFound(f"no user {who!r} (give an id, account, e-mail or phone)")
        return user

    async def _end(self, user: UserRecord) -> None:
        """Refuse every token of the user and close their sockets (4002)."""
        await self.users.revoke_tokens(user.id)
        await self.sessions.end_sessions(user.id)

    async def run(self, op: str, args: dict[str, Any], os_user: str) -> Any:
        """One command, run by the OS user ``os_user``; each change writes a
        ``sandcat.audit`` line (``admin_users_disable actor=admin target=<id> os_user=...``)."""
        if op == "users.list":
            limit, offset = int(args.get("limit", 100)), int(args.get("offset", 0))
            return [user_row(u) for u in await self.users.list_users(limit, offset)]
        if op == "connections.list":
            return await self.connections(None)
        if op.startswith("bot."):
            return await self._bot_op(op, args, os_user)
        user = await self._find(str(args.get("user", "")))
        result: dict[str, Any] = user_row(user)
        now = self.clock.now_ms()
        if op == "users.show":
            result["token_generation"] = await self.users.token_generation(user.id)
            result["connections"] = await self.connections(user.id)
            return result
        if op in {"users.disable", "users.enable"}:
            disabled = op == "users.disable"
            await self.users.set_disabled(user.id, disabled, now)
            if disabled:
                await self._end(user)
            result["disabled"] = disabled
        elif op == "users.delete":
            await self.users.delete_user(user.id, now)
            await self._end(user)
        elif op == "users.reset-password":
            password = str(args.get("password") or secrets.token_urlsafe(12))
            password_hash = await self.passwords.hash(password)
            await self.users.set_password(
                user.id, password_hash, PasswordService.salt_of(password_hash), now
            )
            await self._end(user)
            result["password"] = password
        elif op == "connections.kick":
            result["closed"] = len(await self.connections(user.id))
            await self._end(user)
        else:
            raise BadRequest(f"unknown admin command {op!r}")
        audit_log.info(
            "admin_" + op.replace(".", "_").replace("-", "_"),
            actor="admin",
            target=user.id,
            os_user=os_user,
        )
        return result

    async def _bot_op(self, op: str, args: dict[str, Any], os_user: str) -> Any:
        """``sandcat bot create|list|rotate-token|set-webhook|delete|dead-letters|replay``."""
        if self.bots is None:
            raise BadRequest("bot commands are not available here")
        bot_id = str(args.get("bot", ""))
        if op == "bot.list":
            return await self.bots.all()
        if op == "bot.dead-letters":
            return await self.bots.dead_letters(bot_id or None, int(args.get("limit", 100)))
        auto_accept = args.get("auto_accept")
        result: dict[str, Any]
        if op == "bot.create":
            result = await self.bots.create(
                str(args.get("name", "")), str(args.get("webhook") or ""), bool(auto_accept)
            )
        elif op == "bot.rotate-token":
            result = await self.bots.rotate_token(bot_id)
        elif op == "bot.set-webhook":
            result = await self.bots.set_webhook(
                bot_id,
                str(args.get("webhook") or ""),
                None if auto_accept is None else bool(auto_accept),
            )
        elif op == "bot.replay":
            letters = [int(letter) for letter in args.get("letters") or []]
            if bool(args.get("all")) == bool(letters):
                raise BadRequest("give either --all or the dead letters' ids")
            result = await self.bots.replay(bot_id, None if args.get("all") else letters)
        elif op == "bot.delete":
            result = await self.bots.delete(bot_id)
            await self.sessions.end_sessions(bot_id)
        else:
            raise BadRequest(f"unknown admin command {op!r}")
        audit_log.info(
            "admin_" + op.replace(".", "_").replace("-", "_"),
            actor="admin",
            target=result["id"],
            os_user=os_user,
        )
        return result


def registry_connections(registry: Registry) -> ConnectionLister:
    """The open WebSockets of this process."""

    async def list_connections(user_id: str | None) -> list[dict[str, Any]]:
        conns = registry.connections(user_id) if user_id else registry.all_connections()
        return [
            {"user_id": c.user_id, "platform": c.platform, "ip": c.ip, "conn_id": c.conn_id}
            for c in conns
        ]

    return list_connections


class _NoSessions:
    """No server runs: there is no socket to close."""

    async def end_sessions(self, user_id: str) -> None:
        return None


async def _no_connections(user_id: str | None) -> list[dict[str, Any]]:
    return []


@contextlib.asynccontextmanager
async def _offline_ops(config: Config) -> AsyncIterator[AdminOps]:
    """The embedded store opened here, under the data folder's lock (no server runs)."""
    data_dir = Path(config.embedded.data_dir)
    if not db_path(config).exists():
        raise AdminError(f"no database at {db_path(config)} (check embedded.data_dir)")
    fd = lock_data_dir(data_dir)
    try:
        await asyncio.to_thread(apply_migrations, str(db_path(config)))
        db = SqliteDatabase(str(db_path(config)))
        await db.open()
        users = SqliteUserStore(db)
        try:
            yield AdminOps(
                users=users,
                sessions=_NoSessions(),
                passwords=PasswordService(config.auth),
                connections=_no_connections,
                bots=BotAccounts(bots=SqliteBotStore(db), users=users, clock=SystemClock()),
            )
        finally:
            await db.close()
    finally:
        os.close(fd)


@contextlib.asynccontextmanager
async def _distributed_ops(config: Config) -> AsyncIterator[AdminOps]:
    from sandcat.adapters.postgres.bots import PostgresBotStore
    from sandcat.adapters.postgres.pool import open_pool, pg_dsn
    from sandcat.adapters.postgres.users import PostgresUserStore
    from sandcat.adapters.redis.client import connect as redis_connect
    from sandcat.adapters.redis.presence import RedisPresence, RedisPushBus
    from sandcat.services.push import RemotePushRouter

    pool = await open_pool(pg_dsn(config.db.postgres), max_size=2)
    redis = redis_connect(config=config.redis)
    presence = RedisPresence(client=redis)

    async def list_connections(user_id: str | None) -> list[dict[str, Any]]:
        if user_id:
            user_ids = [user_id]
        else:
            keys = [key async for key in redis.scan_iter(match="presence:*", count=1000)]
            user_ids = [bytes(key).decode().partition(":")[2] for key in keys]
        located = await presence.locate(user_ids)
        return [
            {"user_id": uid, "platform": platform, "gateway": gateway}
            for uid, platforms in sorted(located.items())
            for platform, gateway in sorted(platforms.items())
        ]

    try:
        users = PostgresUserStore(pool=pool)
        yield AdminOps(
            users=users,
            sessions=RemotePushRouter(presence=presence, bus=RedisPushBus(client=redis)),
            passwords=PasswordService(config.auth),
            connections=list_connections,
            bots=BotAccounts(bots=PostgresBotStore(pool=pool), users=users, clock=SystemClock()),
        )
    finally:
        await redis.aclose()
        await pool.close()


async def run_admin(config: Config, op: str, args: dict[str, Any]) -> Any:
    """Run one admin command where it must run (see the module docstring)."""
    if config.mode == "distributed":
        async with _distributed_ops(config) as ops:
            return await ops.run(op, args, control.local_user())
    data_dir = Path(config.embedded.data_dir)
    try:
        return await control.request(data_dir, op, args)
    except control.ControlUnavailable as exc:
        unreachable = str(exc)
    try:
        async with _offline_ops(config) as ops:
            return await ops.run(op, args, control.local_user())
    except DataDirBusy as exc:
        raise AdminError(
            f"{exc}; but its control socket does not answer ({unreachable}): "
            "is it an older sandcat, or is embedded.data_dir too long for a Unix socket?"
        ) from None


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


@dataclass(frozen=True, slots=True)
class SeededGroup:
    id: str
    owner: str
    members: tuple[str, ...]


@dataclass(slots=True)
class Seeded:
    users: list[SeededUser]
    friendships: int = 0
    groups: list[SeededGroup] = field(default_factory=list)


def friend_pairs(count: int, pattern: str) -> list[tuple[int, int]]:
    """Index pairs of the friendships ``pattern`` makes among ``count`` users."""
    if pattern == "ring":
        if count < 2:
            return []
        return [(i, (i + 1) % count) for i in range(count if count > 2 else 1)]
    if pattern == "all-pairs":
        return [(i, j) for i in range(count) for j in range(i + 1, count)]
    return []


async def seed(config: Config, request: SeedRequest) -> Seeded:
    """Insert ``request.count`` users through the user store (one password hash for all),
    then the friendships of ``request.friends`` and groups of ``request.group_size``
    consecutive users (the first one owns it; a short last group is kept if it has two).
    Embedded mode only, with no server on the data folder (its lock is taken)."""
    if request.count < 1:
        raise ConfigError("users seed: --count must be at least 1")
    if request.friends not in FRIEND_PATTERNS:
        raise ConfigError(f"users seed: --friends must be one of {', '.join(FRIEND_PATTERNS)}")
    if request.group_size == 1 or request.group_size < 0:
        raise ConfigError("users seed: --group-size must be 0 (no groups) or at least 2")
    if config.mode != "embedded":
        raise ConfigError("users seed: embedded mode only (it writes the SQLite store)")
    apply_migrations(str(db_path(config)))
    fd = lock_data_dir(Path(config.embedded.data_dir))
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
        seeded = Seeded(users)
        friends = SqliteFriendStore(db)
        for a, b in friend_pairs(len(users), request.friends):
            fs_id = await friends.upsert_request(
                new_id=nanoid(),
                user_id=users[a].id,
                friend_id=users[b].id,
                apply_msg=None,
                req_remark=None,
                source="seed",
                now_ms=now,
                renew_rejected_before=now,
            )
            if fs_id is not None and await friends.accept_request(fs_id, None, None, now):
                seeded.friendships += 1
        if request.group_size:
            groups = SqliteGroupStore(db)
            for start in range(0, len(users), request.group_size):
                members = [u.id for u in users[start : start + request.group_size]]
                if len(members) < 2:
                    break
                info = GroupInfo(
                    nanoid(), members[0], f"{request.prefix}-g{start}", "", "", "", now, now
                )
                await groups.create_group(info, members)
                seeded.groups.append(SeededGroup(info.id, info.owner, tuple(members)))
        return seeded
    finally:
        await db.close()
        os.close(fd)


async def seed_users(config: Config, request: SeedRequest) -> list[SeededUser]:
    """``seed``, for callers that want the users only."""
    return (await seed(config, request)).users


def render(seeded: Seeded, request: SeedRequest, fmt: str) -> str:
    """The created users as JSON (with the shared password, the friendship count and the
    groups) or CSV (``id,name,email,password``: the users only)."""
    users = seeded.users
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["id", "name", "email", "password"])
        writer.writerows([u.id, u.name, u.email, request.password] for u in users)
        return out.getvalue()
    doc: dict[str, Any] = {
        "password": request.password,
        "friends": request.friends,
        "friendships": seeded.friendships,
        "users": [{"id": u.id, "name": u.name, "email": u.email} for u in users],
        "groups": [
            {"id": g.id, "owner": g.owner, "members": list(g.members)} for g in seeded.groups
        ],
    }
    return json.dumps(doc, indent=1) + "\n"
