"""The WebSocket endpoint ``/ws/{user_id}/conn/{pointer_id}/{platform}/{token}``.

Per connection this handler is the single reader. Acks leave strictly in the order the
frames arrived: a stored message's ack waits for its commit and the acks behind it wait
for it (``AckLine``), with no task per connection; writes go through the connection's
per-turn flush (``sandcat.gateway.connections``). Pings come from the process's one
``Heartbeat`` timer, not from aiohttp's per-connection heartbeat, and this reader answers
the peer's pings itself; the rate bucket and the ack line are made at the first message,
so an idle connection holds neither.
"""

from __future__ import annotations

import asyncio
from collections import deque

import orjson
from aiohttp import WSMsgType, web

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
                COUNTS.refused(REFUSED_NOT_STORED)
                log.error(
                    "message_not_stored",
                    user_id=self._conn.user_id,
                    error=repr(None if stored.cancelled() else stored.exception()),
                )
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


class Gateway:
    def __init__(
        self,
        *,
        users: UserService,
        messages: MessageService,
        registry: Registry,
        config: Config,
        cluster: GatewayCluster | None = None,
    ) -> None:
        self._users = users
        self._messages = messages
        self._registry = registry
        self._cluster = cluster
        self._limits = config.limits
        self._heartbeat = Heartbeat(registry, config.websocket.ping_interval_seconds)
        self._trust = config.server.trust_forwarded_for
        self.bad_frames = 0
        self._inflight = InFlight()
        #: Set when shutdown begins: frames get an error ack, new sockets a 1001 close.
        self.draining = False

    async def drain(self) -> None:
        """Refuse what arrives from now on and wait until every accepted message is stored
        and its ack is queued on its connection."""
        self.draining = True
        await self._inflight.wait_idle()

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/ws/{user_id}/conn/{pointer_id}/{platform}/{token}", self.handle)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            autoping=False,  # pings are answered by the read loop, sent by the heartbeat
            max_msg_size=self._limits.ws_message_bytes,
            compress=False,  # frames are small bincode: deflate would cost more than it saves
        )
        await ws.prepare(request)  # always accept, then close: the client reads close codes
        if self.draining:
            await ws.close(code=CLOSE_GOING_AWAY, message=b"server shutting down")
            return ws
        user_id = request.match_info["user_id"]
        try:
            token_user = await self._users.authenticate(request.match_info["token"])
        except UnAuthorized:
            token_user = ""
        if token_user != user_id:
            await ws.close(code=CLOSE_UNAUTHORIZED, message=b"unauthorized")
            return ws
        ip = request.remote or "unknown"
        if self._registry.count_ip(ip) >= self._limits.connections_per_ip:
            await ws.close(code=CLOSE_POLICY, message=b"too many connections from this address")
            return ws
        transport = request.transport
        if transport is None:  # the peer went away during the token check
            return ws
        platform = 1 if request.match_info["platform"] == "1" else 0
        conn = Connection(
            ws,
            transport,
            user_id,
            platform,
            ip,
            nanoid(10),
            flusher=self._registry.flusher,
            max_frames=self._limits.send_queue_frames,
            max_bytes=self._limits.send_queue_bytes,
        )
        self._registry.register(conn)
        COUNTS.ws_connections += 1
        self._heartbeat.ensure()
        log.info("ws_connected", user_id=user_id, conn_id=conn.conn_id, platform=platform)
        try:
            if self._cluster is not None:
                await self._cluster.connected(conn)
            await ws.ping()
            await self._read_loop(ws, conn)
        finally:
            self._registry.unregister(conn)
            if self._cluster is not None:
                await self._cluster.disconnected(conn)
            await conn.closed()
            log.info("ws_closed", user_id=user_id, conn_id=conn.conn_id, code=ws.close_code)
        return ws

    async def _read_loop(self, ws: web.WebSocketResponse, conn: Connection) -> None:
        bucket: TokenBucket | None = None
        acks: AckLine | None = None
        bad = 0
        counts = COUNTS
        async for frame in ws:
            counts.frames_in += 1
            conn.heard()
            if frame.type == WSMsgType.PING:
                conn.pong(frame.data)
                continue
            if bucket is None or acks is None:
                if frame.type == WSMsgType.PONG:
                    continue
                bucket = TokenBucket(self._limits.messages_per_second, self._limits.messages_burst)
                acks = AckLine(conn, self._inflight)
            msg: Msg | None = None
            try:
                if frame.type == WSMsgType.BINARY:
                    msg = _native.decode_msg(frame.data)
                elif frame.type == WSMsgType.TEXT:
                    try:
                        msg = Msg.from_json(orjson.loads(frame.data))
                    except orjson.JSONDecodeError as exc:
                        raise DecodeError("malformed JSON Msg") from exc
                else:
                    continue
            except DecodeError as exc:
                bad += 1
                self.bad_frames += 1
                counts.refused(REFUSED_MALFORMED)
                log.warning(
                    "bad_frame", user_id=conn.user_id, conn_id=conn.conn_id, reason=exc.details
                )
                if bad >= self._limits.bad_frames_before_close:
                    conn.close(CLOSE_INVALID_DATA, "too many malformed frames")
                    return
                acks.now(error_ack(None, f"malformed frame: {exc.details}"))
                continue
            if self.draining:
                counts.refused(REFUSED_SHUTTING_DOWN)
                acks.now(error_ack(msg, "server shutting down: resend after reconnecting"))
                continue
            if not bucket.take():
                counts.refused(REFUSED_RATE_LIMITED)
                acks.now(error_ack(msg, "rate limited: slow down"))
                continue
            msg.platform = conn.platform  # the connection's platform, whatever the frame says
            try:
                result = await self._messages.accept(conn.user_id, msg)
            except MessageRefused as exc:
                counts.refused(REFUSED_POLICY)
                acks.now(error_ack(msg, exc.details or "refused"))
                continue
            counts.messages_accepted += 1
            if isinstance(result, Msg):
                acks.now(result)
            else:
                await acks.later(msg, result)
