"""The composition root: builds adapters and services from the config, once.

Services receive their collaborators as keyword arguments; nothing receives "the container".
``build`` picks the adapters for the mode (embedded: SQLite and in-process; distributed:
PostgreSQL, MongoDB, Kafka, Redis, S3) and the listeners and workers for the role.
"""

from __future__ import annotations

import asyncio
import os
import socket
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from sandcat import __version__, _native, control
from sandcat.adapters.embedded.files import LocalFileStore
from sandcat.adapters.embedded.mailer import LogMailer
from sandcat.adapters.embedded.messages import SqliteInbox, SqliteMessageLog
from sandcat.adapters.embedded.social import (
    InProcessMembershipCache,
    SqliteFriendStore,
    SqliteGroupStore,
)
from sandcat.adapters.embedded.sqlite import SqliteDatabase, apply_migrations, lock_data_dir
from sandcat.adapters.embedded.users import SqliteCodeStore, SqliteUserStore
from sandcat.adapters.smtp.mailer import SmtpMailer
from sandcat.api.common import BODY_TIMEOUT, add_routes, error_middleware
from sandcat.api.files import FileRoutes
from sandcat.api.friends import FriendRoutes
from sandcat.api.groups import GroupRoutes
from sandcat.api.messages import MessageRoutes
from sandcat.api.openapi import OpenApiRoutes
from sandcat.api.users import UserRoutes, WsAddress
from sandcat.config import Config
from sandcat.gateway.cluster import GatewayCluster
from sandcat.gateway.connections import Registry
from sandcat.gateway.server import Gateway
from sandcat.ids import SystemClock
from sandcat.jobs.scheduler import Scheduler
from sandcat.log import get_logger
from sandcat.observability import (
    Check,
    Observability,
    http_metrics_middleware,
    metrics_registry,
)
from sandcat.ports import (
    CodeStore,
    Counters,
    FileStore,
    FriendStore,
    GatewayRegistry,
    GroupStore,
    InboxStore,
    Mailer,
    MembershipCache,
    SessionEnder,
    UserStore,
)
from sandcat.services.auth import PasswordService, TokenService, resolve_secret
from sandcat.services.files import FileService
from sandcat.services.friends import FriendService
from sandcat.services.groups import GroupService
from sandcat.services.messages import (
    DeliveryService,
    MessageLogPort,
    MessageService,
    PushRouter,
)
from sandcat.services.notify import Notifier
from sandcat.services.push import LocalPushRouter
from sandcat.services.sync import SyncService
from sandcat.services.users import UserService
from sandcat.web import WebPage

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
    observability: Observability
    #: Called once the gateway listens, with its public ``ws_addr`` (distributed: registers).
    on_listening: list[Callable[[str], Awaitable[None]]] = field(default_factory=list)


@dataclass(slots=True)
class Adapters:
    """Everything the services need, for one mode."""

    users: UserStore
    codes: CodeStore
    inbox: InboxStore
    counters: Counters
    log: MessageLogPort
    friends: FriendStore
    groups: GroupStore
    membership: MembershipCache
    files: FileStore
    jwt_secret: str
    pull_wait_seconds: float = 0.0
    gateways: GatewayRegistry | None = None
    cluster: GatewayCluster | None = None
    #: How relayed (unstored) messages such as call signalling reach other processes.
    relay: PushRouter | None = None
    #: How a logout reaches the user's sockets in other processes (else: this registry).
    sessions: SessionEnder | None = None
    #: What ``/ready`` checks: (name, a call that raises unless that part works).
    checks: list[tuple[str, Check]] = field(default_factory=list)


def db_path(config: Config) -> Path:
    return Path(config.embedded.data_dir) / "sandcat.db"


def migrate(config: Config) -> list[str]:
    """Apply the migrations of the configured mode's database."""
    if config.mode == "distributed":
        from sandcat.distributed import migrate_distributed

        return asyncio.run(migrate_distributed(config))
    return apply_migrations(str(db_path(config)))


def ws_public_addr(config: Config, port: int | None = None) -> str:
    """Login's ``ws_addr``: ``websocket.public_addr`` or ``{protocol}://{host}:{port}/ws``."""
    ws = config.websocket
    if ws.public_addr:
        return ws.public_addr.rstrip("/")
    return f"{ws.protocol}://{ws.host}:{ws.port if port is None else port}/ws"


def gateway_id(config: Config) -> str:
    return config.websocket.gateway_id or f"{socket.gethostname()}-{os.getpid()}"


def _mailer(config: Config) -> Mailer:
    return SmtpMailer(config.mail) if config.mail.server else LogMailer()


def _probe_dir(data_dir: Path) -> None:
    """Create and remove a file in ``data_dir`` (raises if the folder is gone or read-only)."""
    with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".ready-"):
        pass


def _sqlite_check(db: SqliteDatabase, data_dir: Path) -> Check:
    async def sqlite_writable() -> None:
        await asyncio.to_thread(_probe_dir, data_dir)
        await db.write(lambda conn: None)  # BEGIN IMMEDIATE .. COMMIT: the write lock

    return sqlite_writable


def _admin(config: Config, users: SqliteUserStore, registry: Registry) -> control.Handler:
    """What the control socket runs: the admin commands on this process's own stores."""
    from sandcat.admin import AdminOps, registry_connections  # admin imports this module

    ops = AdminOps(
        users=users,
        sessions=registry,
        passwords=PasswordService(config.auth),
        connections=registry_connections(registry),
    )
    return ops.run


async def _embedded(config: Config, stack: AsyncExitStack, registry: Registry) -> Adapters:
    data_dir = Path(config.embedded.data_dir)
    stack.callback(os.close, lock_data_dir(data_dir))
    await asyncio.to_thread(apply_migrations, str(db_path(config)))
    db = SqliteDatabase(str(db_path(config)))
    await db.open()
    stack.push_async_callback(db.close)
    inbox = SqliteInbox(db)
    message_log = SqliteMessageLog(db)
    message_log.add_listener(DeliveryService(delivery=registry, frames=registry).on_stored)
    message_log.start()
    stack.push_async_callback(message_log.stop)
    users = SqliteUserStore(db)
    await stack.enter_async_context(control.serving(data_dir, _admin(config, users, registry)))
    return Adapters(
        users=users,
        codes=SqliteCodeStore(db),
        inbox=inbox,
        counters=inbox,
        log=message_log,
        friends=SqliteFriendStore(db),
        groups=SqliteGroupStore(db),
        membership=InProcessMembershipCache(),
        files=LocalFileStore(data_dir / "files"),
        jwt_secret=await asyncio.to_thread(resolve_secret, config.server.jwt_secret, data_dir),
        checks=[("sqlite", _sqlite_check(db, data_dir))],
    )


@asynccontextmanager
async def build(config: Config) -> AsyncIterator[Apps]:
    """Open every resource for ``config`` and yield the ready applications."""
    async with AsyncExitStack() as stack:
        clock = SystemClock()
        registry = Registry()
        scheduler = Scheduler()
        if config.mode == "distributed":
            from sandcat.distributed import distributed_adapters

            adapters = await distributed_adapters(config, stack, registry, scheduler)
        else:
            adapters = await _embedded(config, stack, registry)
        files = FileService(
            store=adapters.files, bucket=config.oss.bucket, avatar_bucket=config.oss.avatar_bucket
        )
        users = UserService(
            users=adapters.users,
            codes=adapters.codes,
            mailer=_mailer(config),
            passwords=PasswordService(config.auth),
            tokens=TokenService(config.server, adapters.jwt_secret),
            clock=clock,
            auth=config.auth,
            limits=config.limits,
            sessions=adapters.sessions or registry,
        )
        notifier = Notifier(log=adapters.log, clock=clock)
        friends = FriendService(
            friends=adapters.friends,
            users=adapters.users,
            notifier=notifier,
            clock=clock,
            limits=config.limits,
        )
        groups = GroupService(
            groups=adapters.groups,
            friends=adapters.friends,
            cache=adapters.membership,
            notifier=notifier,
            clock=clock,
            limits=config.limits,
        )
        messages = MessageService(
            log=adapters.log,
            inbox=adapters.inbox,
            users=adapters.users,
            relay=adapters.relay or LocalPushRouter(delivery=registry),
            clock=clock,
            limits=config.limits,
            allow_strangers=config.server.allow_stranger_messages,
            friends=friends,
            groups=groups,
        )
        sync = SyncService(
            inbox=adapters.inbox,
            counters=adapters.counters,
            max_messages=config.limits.pull_max_messages,
            pull_wait_seconds=adapters.pull_wait_seconds,
        )
        scheduler.start()
        stack.push_async_callback(scheduler.stop)

        role = config.role
        observability = Observability(
            version=__version__,
            mode=config.mode,
            role=role,
            checks=adapters.checks,
            metrics=metrics_registry(
                registry, {"version": __version__, "mode": config.mode, "role": role}
            ),
        )
        public_metrics = config.metrics.port < 0
        ws_address = WsAddress(ws_public_addr(config), gateways=adapters.gateways)
        api_app: web.Application | None = None
        gateway_app: web.Application | None = None
        gateway_edge: Gateway | None = None
        on_listening: list[Callable[[str], Awaitable[None]]] = []
        if role in {"all", "api"}:
            await files.ensure_default_avatars(ASSETS)
            api_app = web.Application(
                middlewares=[http_metrics_middleware, error_middleware],
                client_max_size=config.limits.upload_bytes + 1024 * 1024,
                # aiohttp closes a connection without a complete request head (or idle
                # between requests) after the header timeout, and one whose body was not
                # read to its end after reading what still comes for at most 10 s.
                handler_args={
                    "keepalive_timeout": config.limits.http_header_timeout,
                    "lingering_time": min(10.0, config.limits.http_body_timeout),
                },
            )
            api_app[BODY_TIMEOUT] = config.limits.http_body_timeout
            user_routes = UserRoutes(
                users=users, config=config, ws_addr=ws_address, friends=friends
            )
            body_limit = config.limits.http_body_bytes
            add_routes(api_app, user_routes.routes())
            add_routes(
                api_app, MessageRoutes(sync=sync, auth=user_routes, body_limit=body_limit).routes()
            )
            add_routes(
                api_app,
                FileRoutes(
                    files=files, auth=user_routes, upload_limit=config.limits.upload_bytes
                ).routes(),
            )
            add_routes(
                api_app,
                FriendRoutes(friends=friends, auth=user_routes, body_limit=body_limit).routes(),
            )
            add_routes(
                api_app,
                GroupRoutes(groups=groups, auth=user_routes, body_limit=body_limit).routes(),
            )
            add_routes(api_app, OpenApiRoutes().routes())
            observability.add_routes(api_app, metrics=public_metrics)
            WebPage(codes_in_log=not config.mail.server).add_to(api_app)
        if role in {"all", "gateway"}:
            gateway_edge = Gateway(
                users=users,
                messages=messages,
                registry=registry,
                config=config,
                cluster=adapters.cluster,
            )
            gateway_app = web.Application()
            gateway_app.add_routes(gateway_edge.routes())
            observability.add_routes(gateway_app, metrics=public_metrics)
            if adapters.cluster is not None:
                cluster = adapters.cluster
                on_listening.append(cluster.start)
                stack.push_async_callback(cluster.stop)
        log.info(
            "hot_paths", **{k.replace(" ", "_"): v for k, v in _native.implementations().items()}
        )
        yield Apps(
            api=api_app,
            gateway=gateway_app,
            registry=registry,
            gateway_edge=gateway_edge,
            ws_address=ws_address,
            observability=observability,
            on_listening=on_listening,
        )
        for conn in registry.all_connections():
            conn.close(1001, "server shutting down")
