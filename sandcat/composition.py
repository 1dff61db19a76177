"""The composition root: builds adapters and services from the config, once.

Services receive their collaborators as keyword arguments; nothing receives "the container".
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from sandcat import _native
from sandcat.adapters.embedded.files import LocalFileStore
from sandcat.adapters.embedded.mailer import LogMailer
from sandcat.adapters.embedded.messages import SqliteInbox, SqliteMessageLog
from sandcat.adapters.embedded.social import (
    InProcessMembershipCache,
    SqliteFriendStore,
    SqliteGroupStore,
)
from sandcat.adapters.embedded.sqlite import SqliteDatabase, apply_migrations
from sandcat.adapters.embedded.users import SqliteCodeStore, SqliteUserStore
from sandcat.adapters.smtp.mailer import SmtpMailer
from sandcat.api.common import add_routes, error_middleware, json_response
from sandcat.api.files import FileRoutes
from sandcat.api.friends import FriendRoutes
from sandcat.api.groups import GroupRoutes
from sandcat.api.messages import MessageRoutes
from sandcat.api.users import UserRoutes, WsAddress
from sandcat.config import Config
from sandcat.errors import ConfigError
from sandcat.gateway.connections import Registry
from sandcat.gateway.server import Gateway
from sandcat.ids import SystemClock
from sandcat.jobs.scheduler import Scheduler
from sandcat.log import get_logger
from sandcat.ports import Mailer
from sandcat.services.auth import PasswordService, TokenService, resolve_secret
from sandcat.services.files import FileService
from sandcat.services.friends import FriendService
from sandcat.services.groups import GroupService
from sandcat.services.messages import DeliveryService, MessageService
from sandcat.services.notify import Notifier
from sandcat.services.sync import SyncService
from sandcat.services.users import UserService

log = get_logger(__name__)
ASSETS = Path(__file__).resolve().parent / "assets"


@dataclass(slots=True)
class Apps:
    """The two listening applications of one process (either may be absent per role)."""

    api: web.Application | None
    gateway: web.Application | None
    registry: Registry
    gateway_edge: Gateway | None
    ws_address: WsAddress


def db_path(config: Config) -> Path:
    return Path(config.embedded.data_dir) / "sandcat.db"


def migrate(config: Config) -> list[str]:
    if config.mode != "embedded":
        raise ConfigError("mode distributed: the distributed adapters are not part of this build")
    return apply_migrations(str(db_path(config)))


def ws_public_addr(config: Config, port: int | None = None) -> str:
    """Login's ``ws_addr``: ``websocket.public_addr`` or ``{protocol}://{host}:{port}/ws``."""
    ws = config.websocket
    if ws.public_addr:
        return ws.public_addr.rstrip("/")
    return f"{ws.protocol}://{ws.host}:{ws.port if port is None else port}/ws"


def _mailer(config: Config) -> Mailer:
    return SmtpMailer(config.mail) if config.mail.server else LogMailer()


async def _health(_: web.Request) -> web.StreamResponse:
    return json_response({"status": "ok"})


@asynccontextmanager
async def build(config: Config) -> AsyncIterator[Apps]:
    """Open every resource for ``config`` and yield the ready applications."""
    if config.mode != "embedded":
        raise ConfigError("mode distributed: the distributed adapters are not part of this build")
    async with AsyncExitStack() as stack:
        data_dir = Path(config.embedded.data_dir)
        await asyncio.to_thread(apply_migrations, str(db_path(config)))
        db = SqliteDatabase(str(db_path(config)))
        await db.open()
        stack.push_async_callback(db.close)

        clock = SystemClock()
        users_store = SqliteUserStore(db)
        inbox = SqliteInbox(db)
        message_log = SqliteMessageLog(db)
        registry = Registry()
        files = FileService(
            store=LocalFileStore(data_dir / "files"),
            bucket=config.oss.bucket,
            avatar_bucket=config.oss.avatar_bucket,
        )
        await files.ensure_default_avatars(ASSETS)

        users = UserService(
            users=users_store,
            codes=SqliteCodeStore(db),
            mailer=_mailer(config),
            passwords=PasswordService(config.auth),
            tokens=TokenService(config.server, resolve_secret(config.server.jwt_secret, data_dir)),
            clock=clock,
            auth=config.auth,
            limits=config.limits,
        )
        delivery = DeliveryService(delivery=registry)
        message_log.add_listener(delivery.on_stored)
        notifier = Notifier(log=message_log, clock=clock)
        friends = FriendService(
            friends=SqliteFriendStore(db),
            users=users_store,
            notifier=notifier,
            clock=clock,
            limits=config.limits,
        )
        groups = GroupService(
            groups=SqliteGroupStore(db),
            cache=InProcessMembershipCache(),
            notifier=notifier,
            clock=clock,
            limits=config.limits,
        )
        messages = MessageService(
            log=message_log,
            inbox=inbox,
            users=users_store,
            delivery=registry,
            clock=clock,
            limits=config.limits,
            allow_strangers=config.server.allow_stranger_messages,
            friends=friends,
            groups=groups,
        )
        sync = SyncService(
            inbox=inbox, counters=inbox, max_messages=config.limits.pull_max_messages
        )
        message_log.start()
        stack.push_async_callback(message_log.stop)

        scheduler = Scheduler()
        scheduler.every(
            3600,
            "idempotency_purge",
            lambda: inbox.purge_idempotency(clock.now_ms() - 24 * 3600 * 1000),
        )
        scheduler.start()
        stack.push_async_callback(scheduler.stop)

        role = config.role
        ws_address = WsAddress(ws_public_addr(config))
        api_app: web.Application | None = None
        gateway_app: web.Application | None = None
        gateway_edge: Gateway | None = None
        if role in {"all", "api"}:
            api_app = web.Application(
                middlewares=[error_middleware],
                client_max_size=config.limits.upload_bytes + 1024 * 1024,
            )
            user_routes = UserRoutes(
                users=users, config=config, ws_addr=ws_address, friends=friends
            )
            add_routes(api_app, user_routes.routes())
            add_routes(
                api_app,
                MessageRoutes(
                    sync=sync, auth=user_routes, body_limit=config.limits.http_body_bytes
                ).routes(),
            )
            add_routes(
                api_app,
                FileRoutes(
                    files=files, auth=user_routes, upload_limit=config.limits.upload_bytes
                ).routes(),
            )
            body_limit = config.limits.http_body_bytes
            add_routes(
                api_app,
                FriendRoutes(friends=friends, auth=user_routes, body_limit=body_limit).routes(),
            )
            add_routes(
                api_app,
                GroupRoutes(groups=groups, auth=user_routes, body_limit=body_limit).routes(),
            )
            api_app.router.add_get("/health", _health)
        if role in {"all", "gateway"}:
            gateway_edge = Gateway(users=users, messages=messages, registry=registry, config=config)
            gateway_app = web.Application()
            gateway_app.add_routes(gateway_edge.routes())
            gateway_app.router.add_get("/health", _health)
        log.info(
            "hot_paths", **{k.replace(" ", "_"): v for k, v in _native.implementations().items()}
        )
        yield Apps(
            api=api_app,
            gateway=gateway_app,
            registry=registry,
            gateway_edge=gateway_edge,
            ws_address=ws_address,
        )
        for conn in registry.all_connections():
            conn.close(1001, "server shutting down")
