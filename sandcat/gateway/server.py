"""The WebSocket endpoint ``/ws/{user_id}/conn/{pointer_id}/{platform}/{token}``.

The gateway's own protocol (``sandcat.gateway.connections.Connection``) answers the
upgrade and reads the frames; ``Gateway.open`` checks the token and registers the
connection, ``Gateway.message`` handles its messages one at a time in arrival order. Acks
leave strictly in the order the frames arrived: a stored message's ack waits for its
commit and the acks behind it wait for it (``AckLine``); writes go through the
connection's per-turn flush. Pings come from the process's one ``Heartbeat`` timer. An
idle connection holds no task, timer, rate bucket or ack line: the bucket and the line are
made at its first message (``Session``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import orjson
from aiohttp import web

from sandcat import _native
from sandcat.config import Config
from sandcat.domain import Stored
from sandcat.errors import DecodeError, UnAuthorized
from sandcat.gateway.cluster import GatewayCluster
from sandcat.gateway.connections import (
    CLOSE_GOING_AWAY,
    CLOSE_UNAUTHORIZED,
    Connection,
    Heartbeat,
    Registry,
)
from sandcat.gateway.websocket import OP_BINARY, Upgrade
from sandcat.ids import nanoid
from sandcat.log import get_logger
from sandcat.metrics import (
    COUNTS,
    REFUSED_MALFORMED,
    REFUSED_NOT_STORED,
    REFUSED_POLICY,
    REFUSED_RATE_LIMITED,
    REFUSED_SHUTTING_DOWN,
)
from sandcat.protocol.events import HELLO, encode_event
from sandcat.protocol.msg import Msg
from sandcat.services.messages import MessageRefused, MessageService, ack_for, error_ack
from sandcat.services.ratelimit import TokenBucket
from sandcat.services.users import UserService

log = get_logger(__name__)

CLOSE_POLICY = 1008
CLOSE_INVALID_DATA = 1007
#: Unacked messages one connection may have in flight before its reader waits.
MAX_PENDING_ACKS = 1024


class InFlight:
    """How many messages, over every connection, wait for their store before their ack
    leaves; shutdown waits until none does."""

    __slots__ = ("_idle", "count")

    def __init__(self) -> None:
        self.count = 0
        self._idle: asyncio.Future[None] | None = None

    def settled(self, released: int) -> None:
        self.count -= released
        idle = self._idle
        if not self.count and idle is not None and not idle.done():
            idle.set_result(None)

    async def wait_idle(self) -> None:
        if self.count:
            self._idle = asyncio.get_running_loop().create_future()
            await self._idle


class AckLine:
    """A connection's acks in frame order; each leaves once it and all before it are known."""

    __slots__ = ("_conn", "_inflight", "_line", "_room")

    def __init__(self, conn: Connection, inflight: InFlight) -> None:
        self._conn = conn
        self._inflight = inflight
        self._line: deque[tuple[Msg, asyncio.Future[Stored] | None]] = deque()
        self._room: asyncio.Future[None] | None = None

    def now(self, ack: Msg) -> None:
        """An ack known already (an error, a relay, a Read)."""
        if self._line:
            self._line.append((ack, None))
        else:
            self._conn.send(_native.encode_msg(ack))

    async def later(self, msg: Msg, stored: asyncio.Future[Stored]) -> None:
        """The ack of ``msg`` once ``stored`` resolves; waits while the line is full."""
        self._line.append((msg, stored))
        self._inflight.count += 1
        stored.add_done_callback(self._release)
        if len(self._line) >= MAX_PENDING_ACKS:
            self._room = asyncio.get_running_loop().create_future()
            await self._room

    def _release(self, _: object = None) -> None:
        line, send = self._line, self._conn.send
        released = 0
        while line:
            msg, stored = line[0]
            if stored is None:
                ack = msg
            elif not stored.done():
                break
            elif stored.cancelled() or stored.exception() is not None:
                released += 1
                failure = None if stored.cancelled() else stored.exception()
                if isinstance(failure, MessageRefused):  # e.g. its group was dismissed meanwhile
                    COUNTS.refused(REFUSED_POLICY)
                    ack = error_ack(msg, failure.details or "refused")
                else:
                    COUNTS.refused(REFUSED_NOT_STORED)
                    log.error("message_not_stored", user_id=self._conn.user_id, error=repr(failure))
                    ack = error_ack(msg, "the message could not be stored; resend it")
            else:
                released += 1
                ack = ack_for(msg, stored.result())
            line.popleft()
            send(_native.encode_msg(ack))
        if released:
            self._inflight.settled(released)
        room = self._room
        if room is not None and len(line) < MAX_PENDING_ACKS // 2:
            self._room = None
            if not room.done():
                room.set_result(None)


class Session:
    """What a connection's messages need between them, made at its first message."""

    __slots__ = ("acks", "bad", "bucket")

    def __init__(self, bucket: TokenBucket, acks: AckLine) -> None:
        self.bucket = bucket
        self.acks = acks
        self.bad = 0  # malformed frames so far


class Gateway:
    """The gateway's side of every connection: what a ``Connection`` asks of it (``open``,
    ``message``, ``lost``, its limits and the ``flusher``)."""

    def __init__(
        self,
        *,
        users: UserService,
        messages: MessageService,
        registry: Registry,
        config: Config,
        cluster: GatewayCluster,
    ) -> None:
        self._users = users
        self._messages = messages
        self._registry = registry
        self._cluster = cluster
        self._limits = config.limits
        self._heartbeat = Heartbeat(registry, config.websocket.ping_interval_seconds)
        self.flusher = registry.flusher
        self.bad_frames = 0
        self._leaving: set[asyncio.Task[None]] = set()
        self._inflight = InFlight()
        #: Set when shutdown begins: frames get an error ack, new sockets a 1001 close.
        self.draining = False

    async def drain(self) -> None:
        """Refuse what arrives from now on and wait until every accepted message is stored
        and its ack is queued on its connection."""
        self.draining = True
        await self._inflight.wait_idle()

    @property
    def max_frames(self) -> int:
        return self._limits.send_queue_frames

    @property
    def max_bytes(self) -> int:
        return self._limits.send_queue_bytes

    @property
    def max_message(self) -> int:
        return self._limits.ws_message_bytes

    @property
    def head_timeout(self) -> float:
        return self._limits.http_header_timeout

    def routes(self) -> list[web.RouteDef]:
        """The aiohttp side of the route: what reaches it is not a WebSocket upgrade (the
        gateway's own protocol answers those, ``sandcat.gateway.websocket``)."""
        return [web.get("/ws/{user_id}/conn/{pointer_id}/{platform}/{token}", self.not_upgrade)]

    async def not_upgrade(self, request: web.Request) -> web.StreamResponse:
        """The route without an upgrade, or an upgrade after another request on the same
        connection (the gateway reads an upgrade as a connection's first request only):
        400, and the connection closes so that a retry starts on a new one."""
        response = web.Response(status=400, text="a WebSocket upgrade is expected here")
        response.force_close()
        return response

    def protocol(self, fallback: Callable[[], asyncio.Protocol]) -> Connection:
        """A new socket's protocol (``GatewaySite`` calls this once per accepted socket)."""
        return Connection(self, fallback)

    async def open(self, conn: Connection, upgrade: Upgrade) -> None:
        """An upgraded socket: check its token and limits, then register it."""
        if self.draining:
            conn.close(CLOSE_GOING_AWAY, "server shutting down")
            return
        user_id = upgrade.user_id
        try:
            claims = await self._users.session(upgrade.token)
        except UnAuthorized:
            claims = None
        if claims is None or claims.user_id != user_id:
            conn.close(CLOSE_UNAUTHORIZED, "unauthorized")
            return
        if self._registry.count_ip(conn.ip) >= self._limits.connections_per_ip:
            conn.close(CLOSE_POLICY, "too many connections from this address")
            return
        if conn.gone:  # the peer went away during the token check
            return
        conn.opened(user_id, upgrade.platform, nanoid(10), upgrade.version, claims.device_id)
        self._registry.register(conn)
        COUNTS.ws_connections += 1
        self._heartbeat.ensure()
        log.info(
            "ws_connected",
            user_id=user_id,
            conn_id=conn.conn_id,
            platform=conn.platform,
            version=conn.version,
        )
        if conn.version >= 2:
            conn.send_text(encode_event(HELLO, {"version": 2, "conn_id": conn.conn_id}))
        await self._cluster.connected(conn)
        # A logout of the user or of this device that ended the session after the check
        # above found no connection to close here (nor, across processes, this gateway in
        # presence): asked again now that both hold it, a logout either shows here or, if
        # it comes later, finds the connection and closes it.
        try:
            await self._users.check_session(claims)
        except UnAuthorized:
            conn.close(CLOSE_UNAUTHORIZED, "session ended")

    def lost(self, conn: Connection) -> None:
        """A registered connection's socket is gone."""
        self._registry.unregister(conn)
        log.info("ws_closed", user_id=conn.user_id, conn_id=conn.conn_id, code=conn.close_code)
        task = asyncio.get_running_loop().create_task(self._cluster.disconnected(conn))
        self._leaving.add(task)
        task.add_done_callback(self._leaving.discard)

    async def message(self, conn: Connection, opcode: int, payload: bytes) -> None:
        """One text or binary message of ``conn``, in the order they arrived."""
        session = conn.session
        if not isinstance(session, Session):
            session = conn.session = Session(
                TokenBucket(self._limits.messages_per_second, self._limits.messages_burst),
                AckLine(conn, self._inflight),
            )
        acks = session.acks
        counts = COUNTS
        try:
            if opcode == OP_BINARY:
                msg = _native.decode_msg(payload)
            else:
                try:
                    msg = Msg.from_json(orjson.loads(payload))
                except orjson.JSONDecodeError as exc:
                    raise DecodeError("malformed JSON Msg") from exc
        except DecodeError as exc:
            session.bad += 1
            self.bad_frames += 1
            counts.refused(REFUSED_MALFORMED)
            log.warning("bad_frame", user_id=conn.user_id, conn_id=conn.conn_id, reason=exc.details)
            if session.bad >= self._limits.bad_frames_before_close:
                conn.close(CLOSE_INVALID_DATA, "too many malformed frames")
                return
            acks.now(error_ack(None, f"malformed frame: {exc.details}"))
            return
        if self.draining:
            counts.refused(REFUSED_SHUTTING_DOWN)
            acks.now(error_ack(msg, "server shutting down: resend after reconnecting"))
            return
        if not session.bucket.take():
            counts.refused(REFUSED_RATE_LIMITED)
            acks.now(error_ack(msg, "rate limited: slow down"))
            return
        msg.platform = conn.platform  # the connection's platform, whatever the frame says
        try:
            result = await self._messages.accept(conn.user_id, msg)
        except MessageRefused as exc:
            counts.refused(REFUSED_POLICY)
            acks.now(error_ack(msg, exc.details or "refused"))
            return
        except Exception:  # a backend failing (a Read's update, a relay's lookup): the frame
            # gets an error ack and the frames behind it are handled as usual
            counts.refused(REFUSED_NOT_STORED)
            log.exception("message_failed", user_id=conn.user_id, conn_id=conn.conn_id)
            acks.now(error_ack(msg, "the message could not be handled; resend it"))
            return
        counts.messages_accepted += 1
        if isinstance(result, Msg):
            acks.now(result)
        else:
            await acks.later(msg, result)
