"""Embedded mode: SQLite, a local folder and the one-process cluster behind the ports.

The mirror image of ``sandcat.distributed``: ``composition.build`` calls
``embedded_adapters`` and builds the same services and edges from its ``Adapters``.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from contextlib import AsyncExitStack
from pathlib import Path

from sandcat import control
from sandcat.adapters.embedded.bots import SqliteBotStore
from sandcat.adapters.embedded.conversations import SqliteConversationStore
from sandcat.adapters.embedded.devices import SqliteDeviceStore, SqliteFriendshipReads
from sandcat.adapters.embedded.files import LocalFileStore
from sandcat.adapters.embedded.messages import SqliteInbox, SqliteMessageLog
from sandcat.adapters.embedded.oauth import SqliteOAuthStore
from sandcat.adapters.embedded.ratelimit import InProcessRateLimiter
from sandcat.adapters.embedded.social import (
    InProcessMembershipCache,
    SqliteFriendStore,
    SqliteGroupStore,
)
from sandcat.adapters.embedded.sqlite import SqliteDatabase, apply_migrations, lock_data_dir
from sandcat.adapters.embedded.users import SqliteCodeStore, SqliteUserStore
from sandcat.admin import AdminOps, registry_connections
from sandcat.config import Config
from sandcat.gateway.connections import Registry
from sandcat.gateway.local import LocalGatewayRegistry, LocalPresence, LocalPushBus
from sandcat.ids import SystemClock
from sandcat.jobs.scheduler import Scheduler
from sandcat.observability import Check
from sandcat.services.auth import PasswordService, resolve_secret
from sandcat.services.bots import BotAccounts
from sandcat.services.messages import DeliveryService
from sandcat.services.push import RemotePushRouter
from sandcat.wiring import Adapters, db_path, gateway_id


def migrate_embedded(config: Config) -> list[str]:
    return apply_migrations(str(db_path(config)))


def _probe_dir(data_dir: Path) -> None:
    """Create and remove a file in ``data_dir`` (raises if the folder is gone or read-only)."""
    with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".ready-"):
        pass


def _sqlite_check(db: SqliteDatabase, data_dir: Path) -> Check:
    async def sqlite_writable() -> None:
        await asyncio.to_thread(_probe_dir, data_dir)
        await db.write(lambda conn: None)  # BEGIN IMMEDIATE .. COMMIT: the write lock

    return sqlite_writable


def _admin(
    config: Config, users: SqliteUserStore, bots: SqliteBotStore, registry: Registry
) -> control.Handler:
    """What the control socket runs: the admin commands on this process's own stores."""
    ops = AdminOps(
        users=users,
        sessions=registry,
        passwords=PasswordService(config.auth),
        connections=registry_connections(registry),
        bots=BotAccounts(bots=bots, users=users, clock=SystemClock()),
    )
    return ops.run


async def embedded_adapters(
    config: Config, stack: AsyncExitStack, registry: Registry, scheduler: Scheduler
) -> Adapters:
    data_dir = Path(config.embedded.data_dir)
    stack.callback(os.close, lock_data_dir(data_dir))
    await asyncio.to_thread(migrate_embedded, config)
    db = SqliteDatabase(str(db_path(config)), cache_mib=config.embedded.cache_mib)
    await db.open()
    stack.push_async_callback(db.close)
    inbox = SqliteInbox(db)
    message_log = SqliteMessageLog(
        db,
        max_batch=config.embedded.max_batch,
        commit_window_seconds=config.embedded.commit_window_ms / 1000,
    )
    # Stored messages go straight to this process's connections (no bus on this path).
    message_log.add_listener(DeliveryService(delivery=registry).on_stored)
    message_log.start()
    stack.push_async_callback(message_log.stop)
    devices = SqliteDeviceStore(db)
    users = SqliteUserStore(db, devices)
    bots = SqliteBotStore(db)
    await stack.enter_async_context(
        control.serving(data_dir, _admin(config, users, bots, registry))
    )
    presence = LocalPresence(gateway_id=gateway_id(config), local=registry)
    oauth = SqliteOAuthStore(db)
    bus = LocalPushBus()
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
        conversations=SqliteConversationStore(db),
        bots=bots,
        devices=devices,
        friendship_reads=SqliteFriendshipReads(db),
        oauth_states=oauth,
        oauth_links=oauth,
        limiter=InProcessRateLimiter(),
        jwt_secret=await asyncio.to_thread(resolve_secret, config.server.jwt_secret, data_dir),
        presence=presence,
        gateways=LocalGatewayRegistry(),
        bus=bus,
        router=RemotePushRouter(presence=presence, bus=bus),
        login_gateways=None,
        checks=[("sqlite", _sqlite_check(db, data_dir))],
    )
