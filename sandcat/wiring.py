"""What the composition root and the two modes pass between them.

``sandcat.embedded`` and ``sandcat.distributed`` each open one mode's resources and return
its ``Adapters``; ``sandcat.composition`` builds the same ``Services`` from either, and
the edges (``sandcat.api.app``, ``sandcat.gateway.app``) build their applications from
``Services``. Nothing here imports a mode, an edge's app or the root.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from sandcat.api.users import WsAddress
from sandcat.config import Config
from sandcat.gateway.cluster import GatewayCluster
from sandcat.gateway.connections import Registry
from sandcat.gateway.server import Gateway
from sandcat.jobs.scheduler import Scheduler
from sandcat.observability import Check, Observability
from sandcat.ports import (
    BotStore,
    CodeStore,
    ConversationStore,
    Counters,
    DeviceStore,
    FileStore,
    FriendshipReads,
    FriendStore,
    GatewayRegistry,
    GroupStore,
    InboxStore,
    MembershipCache,
    MessageLog,
    OAuthLinks,
    OAuthStates,
    Presence,
    PushBus,
    RateLimiter,
    UserStore,
)
from sandcat.services.bots import BotService
from sandcat.services.conversations import ConversationService
from sandcat.services.devices import DeviceService
from sandcat.services.files import FileService
from sandcat.services.friends import FriendService
from sandcat.services.groups import GroupService
from sandcat.services.messages import MessageService
from sandcat.services.oauth import OAuthService
from sandcat.services.push import RemotePushRouter
from sandcat.services.sync import SyncService
from sandcat.services.users import UserService


@dataclass(slots=True)
class Adapters:
    """Everything the services need, for one mode."""

    users: UserStore
    codes: CodeStore
    inbox: InboxStore
    counters: Counters
    log: MessageLog
    friends: FriendStore
    groups: GroupStore
    membership: MembershipCache
    files: FileStore
    conversations: ConversationStore
    bots: BotStore
    #: Logins (refresh-token families) and friend requests' read marks.
    devices: DeviceStore
    friendship_reads: FriendshipReads
    #: GitHub login: the sign-ins in progress and the links to GitHub accounts.
    oauth_states: OAuthStates
    oauth_links: OAuthLinks
    #: The login, code and bot budgets' counts (shared by every process in distributed mode).
    limiter: RateLimiter
    jwt_secret: str
    #: The cluster: where users are connected, the live gateways, one push batch per gateway.
    presence: Presence
    gateways: GatewayRegistry
    bus: PushBus
    #: Relayed (unstored) messages and logouts, over ``presence`` and ``bus``.
    router: RemotePushRouter
    #: Where login's ``ws_addr`` comes from: the live gateways in turn, or (None) this
    #: process's configured address.
    login_gateways: GatewayRegistry | None
    pull_wait_seconds: float = 0.0
    #: What ``/ready`` checks: (name, a call that raises unless that part works).
    checks: list[tuple[str, Check]] = field(default_factory=list)


#: Opens one mode's resources on the stack (the gateway's registry and the process's
#: scheduler are shared with the services) and returns its adapters.
OpenMode = Callable[[Config, AsyncExitStack, Registry, Scheduler], Awaitable[Adapters]]


@dataclass(frozen=True, slots=True)
class Services:
    """The services and process-wide parts the edges are built from."""

    users: UserService
    friends: FriendService
    groups: GroupService
    messages: MessageService
    sync: SyncService
    files: FileService
    conversations: ConversationService
    bots: BotService
    devices: DeviceService
    oauth: OAuthService
    registry: Registry
    cluster: GatewayCluster
    observability: Observability
    ws_address: WsAddress


@dataclass(slots=True)
class Apps:
    """The two listening applications of one process (either may be absent per role)."""

    api: web.Application | None
    gateway: web.Application | None
    registry: Registry
    gateway_edge: Gateway | None
    ws_address: WsAddress
    observability: Observability
    #: Called once the gateway listens, with its public ``ws_addr`` (registers it).
    on_listening: list[Callable[[str], Awaitable[None]]] = field(default_factory=list)


def db_path(config: Config) -> Path:
    return Path(config.embedded.data_dir) / "sandcat.db"


def ws_public_addr(config: Config, port: int | None = None) -> str:
    """Login's ``ws_addr``: ``websocket.public_addr`` or ``{protocol}://{host}:{port}/ws``."""
    ws = config.websocket
    if ws.public_addr:
        return ws.public_addr.rstrip("/")
    return f"{ws.protocol}://{ws.host}:{ws.port if port is None else port}/ws"


def gateway_id(config: Config) -> str:
    return config.websocket.gateway_id or f"{socket.gethostname()}-{os.getpid()}"
