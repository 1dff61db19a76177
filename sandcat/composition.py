"""The composition root: builds adapters and services from the config, once.

Services receive their collaborators as keyword arguments; nothing receives "the container".
``build`` opens the mode's adapters (``sandcat.embedded``: SQLite and in-process;
``sandcat.distributed``: PostgreSQL, MongoDB, Kafka, Redis, S3), builds the same services
for either, and the edges (``sandcat.api.app``, ``sandcat.gateway.app``) the role listens on.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from aiohttp import web

from sandcat import __version__, _native
from sandcat.adapters.embedded.mailer import LogMailer
from sandcat.adapters.github.client import GithubClient
from sandcat.adapters.smtp.mailer import SmtpMailer
from sandcat.adapters.webhook.client import AiohttpWebhookPoster
from sandcat.api import app as api_app
from sandcat.api.users import WsAddress
from sandcat.config import Config
from sandcat.distributed import distributed_adapters, migrate_distributed
from sandcat.embedded import embedded_adapters, migrate_embedded
from sandcat.gateway import app as gateway_app
from sandcat.gateway.cluster import GatewayCluster
from sandcat.gateway.connections import Registry
from sandcat.ids import SystemClock
from sandcat.jobs.scheduler import Scheduler
from sandcat.log import get_logger
from sandcat.observability import Observability, metrics_registry
from sandcat.ports import Mailer
from sandcat.services.auth import PasswordService, TokenService
from sandcat.services.bots import BotService, WebhookWorker
from sandcat.services.conversations import ConversationService
from sandcat.services.devices import DeviceService
from sandcat.services.files import FileService
from sandcat.services.friends import FriendService
from sandcat.services.groups import GroupService
from sandcat.services.messages import MessageService
from sandcat.services.notify import Notifier
from sandcat.services.oauth import OAuthService
from sandcat.services.sync import SyncService
from sandcat.services.users import UserService
from sandcat.wiring import Adapters, Apps, OpenMode, Services, gateway_id, ws_public_addr

log = get_logger(__name__)
ASSETS = Path(__file__).resolve().parent / "assets"


def migrate(config: Config) -> list[str]:
    """Apply the migrations of the configured mode's database."""
    if config.mode == "distributed":
        return asyncio.run(migrate_distributed(config))
    return migrate_embedded(config)


def _mailer(config: Config) -> Mailer:
    return SmtpMailer(config.mail) if config.mail.server else LogMailer()


def _services(config: Config, adapters: Adapters, registry: Registry) -> Services:
    """The same services for every mode and role."""
    clock, limits = SystemClock(), config.limits
    tokens = TokenService(config.server, adapters.jwt_secret)
    devices = DeviceService(
        devices=adapters.devices,
        tokens=tokens,
        ender=adapters.router,
        events=adapters.router,
        clock=clock,
        limits=limits,
        reuse_grace_seconds=config.auth.refresh_reuse_grace_seconds,
    )
    users = UserService(
        users=adapters.users,
        codes=adapters.codes,
        mailer=_mailer(config),
        passwords=PasswordService(config.auth),
        tokens=tokens,
        clock=clock,
        auth=config.auth,
        limits=limits,
        sessions=adapters.router,
        devices=devices,
        limiter=adapters.limiter,
    )
    notifier = Notifier(log=adapters.log, clock=clock)
    friends = FriendService(
        friends=adapters.friends,
        users=adapters.users,
        notifier=notifier,
        clock=clock,
        limits=limits,
        reads=adapters.friendship_reads,
        events=adapters.router,
    )
    groups = GroupService(
        groups=adapters.groups,
        friends=adapters.friends,
        cache=adapters.membership,
        notifier=notifier,
        clock=clock,
        limits=limits,
        events=adapters.router,
    )
    info = {"version": __version__, "mode": config.mode, "role": config.role}
    conversations = ConversationService(
        store=adapters.conversations, inbox=adapters.inbox, events=adapters.router, clock=clock
    )
    messages = MessageService(
        log=adapters.log,
        inbox=adapters.inbox,
        users=adapters.users,
        relay=adapters.router,
        clock=clock,
        limits=limits,
        allow_strangers=config.server.allow_stranger_messages,
        friends=friends,
        groups=groups,
        conversations=conversations,
        friendships=friends,
    )
    files = FileService(
        store=adapters.files, bucket=config.oss.bucket, avatar_bucket=config.oss.avatar_bucket
    )
    oauth = OAuthService(
        config=config.server.oauth2.github,
        states=adapters.oauth_states,
        links=adapters.oauth_links,
        provider=GithubClient(config.server.oauth2.github),
        users=adapters.users,
        accounts=users,
        files=files,
        clock=clock,
        limits=limits,
        limiter=adapters.limiter,
    )
    return Services(
        users=users,
        friends=friends,
        groups=groups,
        messages=messages,
        sync=SyncService(
            inbox=adapters.inbox,
            counters=adapters.counters,
            max_messages=limits.pull_max_messages,
            pull_wait_seconds=adapters.pull_wait_seconds,
        ),
        files=files,
        conversations=conversations,
        bots=BotService(
            bots=adapters.bots,
            users=adapters.users,
            messages=messages,
            clock=clock,
            limits=limits,
            limiter=adapters.limiter,
        ),
        devices=devices,
        oauth=oauth,
        registry=registry,
        cluster=GatewayCluster(
            gateway_id=gateway_id(config),
            presence=adapters.presence,
            registry=adapters.gateways,
            bus=adapters.bus,
            local=registry,
        ),
        observability=Observability(
            version=__version__,
            mode=config.mode,
            role=config.role,
            checks=adapters.checks,
            metrics=metrics_registry(registry, info),
        ),
        ws_address=WsAddress(ws_public_addr(config), gateways=adapters.login_gateways),
    )


def _webhooks(
    config: Config,
    adapters: Adapters,
    services: Services,
    scheduler: Scheduler,
    stack: AsyncExitStack,
) -> None:
    """Bots' webhook deliveries run where messages are stored: the embedded process, or a
    msg-server (each bot's lease keeps one worker per bot across msg-servers)."""
    poster = AiohttpWebhookPoster()
    worker = WebhookWorker(
        bots=adapters.bots,
        inbox=adapters.inbox,
        counters=adapters.counters,
        friends=services.friends,
        clock=SystemClock(),
        config=config.bots,
        owner=gateway_id(config),
        poster=poster,
    )
    scheduler.every(config.bots.lease_seconds / 3, "bot_webhooks", worker.supervise)
    stack.push_async_callback(poster.close)
    stack.push_async_callback(worker.stop)


@asynccontextmanager
async def build(config: Config) -> AsyncIterator[Apps]:
    """Open every resource for ``config`` and yield the ready applications."""
    async with AsyncExitStack() as stack:
        registry, scheduler = Registry(), Scheduler()
        open_mode: OpenMode = (
            distributed_adapters if config.mode == "distributed" else embedded_adapters
        )
        adapters = await open_mode(config, stack, registry, scheduler)
        services = _services(config, adapters, registry)
        if config.mode == "embedded" or config.role in {"all", "msg-server"}:
            _webhooks(config, adapters, services, scheduler, stack)
        scheduler.start()
        stack.push_async_callback(scheduler.stop)
        api: web.Application | None = None
        gateway: web.Application | None = None
        on_listening: list[Callable[[str], Awaitable[None]]] = []
        if config.role in {"all", "api"}:
            await services.files.ensure_default_avatars(ASSETS)
            api = api_app.create_app(services, config)
        if config.role in {"all", "gateway"}:
            gateway = gateway_app.create_app(services, config)
            on_listening.append(services.cluster.start)
            stack.push_async_callback(services.cluster.stop)
        hot_paths = _native.implementations().items()
        log.info("hot_paths", **{k.replace(" ", "_"): v for k, v in hot_paths})
        yield Apps(
            api=api,
            gateway=gateway,
            registry=registry,
            gateway_edge=None if gateway is None else gateway[gateway_app.EDGE],
            ws_address=services.ws_address,
            observability=services.observability,
            on_listening=on_listening,
        )
        for conn in registry.all_connections():
            conn.close(1001, "server shutting down")
