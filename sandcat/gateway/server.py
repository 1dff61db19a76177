"""The WebSocket endpoint ``/ws/{user_id}/conn/{pointer_id}/{platform}/{token}``.

Per connection: this handler is the single reader, ``Connection.run_writer`` the single
writer, and an acker task sends acks strictly in the order the frames arrived.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from aiohttp import WSMsgType, web

from sandcat import _native
from sandcat.config import Config
from sandcat.errors import DecodeError, UnAuthorized
from sandcat.gateway.cluster import GatewayCluster
from sandcat.gateway.connections import CLOSE_UNAUTHORIZED, Connection, Registry
from sandcat.ids import nanoid
from sandcat.log import get_logger
from sandcat.protocol.msg import Msg
from sandcat.services.messages import MessageRefused, MessageService, error_ack, settled
from sandcat.services.ratelimit import TokenBucket
from sandcat.services.users import UserService

log = get_logger(__name__)

CLOSE_POLICY = 1008
CLOSE_INVALID_DATA = 1007
MAX_PENDING_ACKS = 1024
Pending = asyncio.Queue[tuple[Msg | None, "asyncio.Future[Msg]"]]


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
        self._ping = config.websocket.ping_interval_seconds
        self._trust = config.server.trust_forwarded_for
        self.bad_frames = 0

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/ws/{user_id}/conn/{pointer_id}/{platform}/{token}", self.handle)]

    async def handle(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            heartbeat=self._ping, autoping=True, max_msg_size=self._limits.ws_message_bytes
        )
        await ws.prepare(request)  # always accept, then close: the client reads close codes
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
        platform = 1 if request.match_info["platform"] == "1" else 0
        conn = Connection(
            ws,
            user_id,
            platform,
            ip,
            nanoid(10),
            max_frames=self._limits.send_queue_frames,
            max_bytes=self._limits.send_queue_bytes,
        )
        self._registry.register(conn)
        clog = log.bind(user_id=user_id, conn_id=conn.conn_id, platform=platform)
        clog.info("ws_connected")
        pending: Pending = asyncio.Queue(MAX_PENDING_ACKS)
        writer = asyncio.create_task(conn.run_writer(), name=f"ws-writer-{conn.conn_id}")
        acker = asyncio.create_task(self._ack_loop(conn, pending), name=f"ws-acker-{conn.conn_id}")
        try:
            if self._cluster is not None:
                await self._cluster.connected(conn)
            await ws.ping()
            await self._read_loop(ws, conn, pending)
        finally:
            self._registry.unregister(conn)
            if self._cluster is not None:
                await self._cluster.disconnected(conn)
            acker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await acker
            conn.close(1000, "bye")
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            clog.info("ws_closed", code=ws.close_code)
        return ws

    async def _read_loop(
        self, ws: web.WebSocketResponse, conn: Connection, pending: Pending
    ) -> None:
        bucket = TokenBucket(self._limits.messages_per_second, self._limits.messages_burst)
        bad = 0
        async for frame in ws:
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
                log.warning(
                    "bad_frame", user_id=conn.user_id, conn_id=conn.conn_id, reason=exc.details
                )
                if bad >= self._limits.bad_frames_before_close:
                    conn.close(CLOSE_INVALID_DATA, "too many malformed frames")
                    return
                await pending.put(
                    (None, settled(error_ack(None, f"malformed frame: {exc.details}")))
                )
                continue
            if not bucket.take():
                await pending.put((msg, settled(error_ack(msg, "rate limited: slow down"))))
                continue
            msg.platform = conn.platform  # the connection's platform, whatever the frame says
            try:
                await pending.put((msg, await self._messages.accept(conn.user_id, msg)))
            except MessageRefused as exc:
                await pending.put((msg, settled(error_ack(msg, exc.details or "refused"))))

    async def _ack_loop(self, conn: Connection, pending: Pending) -> None:
        while True:
            msg, future = await pending.get()
            try:
                ack = await future
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("message_not_stored", user_id=conn.user_id)
                ack = error_ack(msg, "the message could not be stored; resend it")
            conn.send(_native.encode_msg(ack))
