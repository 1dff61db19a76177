"""Connections and the registry of who is connected where (one process).

Frames are written straight to the socket's transport, framed here, not through aiohttp's
per-frame ``send_bytes`` (an awaitable, a lock check and a system call per frame): a
connection collects what is queued for it during one turn of the event loop, and one
flush per turn writes all of it in one ``transport.write``. So an ack and the pushes of a
stored batch that reach a connection together cost one system call, and no task per
connection waits to write. The transport's own buffer is the connection's outbound queue:
past ``limits.send_queue_frames`` or ``limits.send_queue_bytes`` the slow client is
closed with 4008 instead of holding memory for it.

Liveness is one timer for the whole process (``Heartbeat``), not a timer per connection:
each beat pings the connections that were quiet for a whole interval and drops those that
did not answer the previous beat's ping.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from sandcat import _native
from sandcat.gateway.websocket import (
    CLOSE_INTERNAL_ERROR,
    CLOSE_INVALID_DATA,
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOO_BIG,
    MAX_HEAD_BYTES,
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Upgrade,
    close_answer,
    close_frame,
    control_frame,
    frame_head,
    parse_upgrade,
    text_frame,
    unmask,
)
from sandcat.log import get_logger
from sandcat.metrics import COUNTS
from sandcat.protocol.msg import NEVER_PUSHED, Msg

if TYPE_CHECKING:  # the gateway builds its connections: for typing only, no import back
    from sandcat.gateway.server import Gateway

log = get_logger(__name__)

CLOSE_GOING_AWAY = 1001
CLOSE_KNOCK_OFF = 4001
CLOSE_UNAUTHORIZED = 4002
CLOSE_SLOW = 4008
#: How long a closing handshake may take before the socket is dropped.
CLOSE_GRACE_SECONDS = 2.0

#: Headers of unmasked, final binary frames (RFC 6455 §5.2) with a payload under 126 bytes.
_SHORT_HEADERS = [frame_head(OP_BINARY, n) for n in range(126)]


#: A ping with no payload (RFC 6455 §5.5.2).
PING_FRAME = b"\x89\x00"


def frame_header(size: int) -> bytes:
    """The header of a server-to-client binary frame carrying ``size`` bytes."""
    return _SHORT_HEADERS[size] if size < 126 else frame_head(OP_BINARY, size)


class Flusher:
    """Writes every connection that has queued frames, once per turn of the event loop."""

    __slots__ = ("_dirty", "_scheduled")

    def __init__(self) -> None:
        self._dirty: list[Connection] = []
        self._scheduled = False

    def mark(self, conn: Connection) -> None:
        self._dirty.append(conn)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            conn.flush()


#: A connection's phases: reading the request head, authenticating (frames are buffered),
#: open, and gone (the socket is closed).
_HEAD, _OPENING, _OPEN, _GONE = range(4)
#: Messages read ahead of the one being handled before the socket stops being read.
INBOX_PAUSE = 64


class Connection(asyncio.Protocol):
    """One WebSocket connection: the protocol of its socket, reading frames as they arrive
    (no task while nothing arrives) and writing through the per-turn flush.

    Everything a message needs later (the rate bucket, the ack line: ``session``), the read
    buffer, the queue of messages waiting for the one being handled and the task handling
    them exist only while there is something to hold.
    """

    __slots__ = (
        "_backlog",
        "_beat",
        "_buf",
        "_closed",
        "_closing",
        "_edge",
        "_fallback",
        "_fragments",
        "_grace",
        "_inbox",
        "_out",
        "_out_bytes",
        "_state",
        "_transport",
        "_worker",
        "conn_id",
        "device_id",
        "ip",
        "platform",
        "session",
        "user_id",
        "version",
    )

    def __init__(self, edge: Gateway, fallback: Callable[[], asyncio.Protocol]) -> None:
        self._edge = edge
        self._fallback: Callable[[], asyncio.Protocol] | None = fallback
        self._state = _HEAD
        self._buf: bytearray | None = None
        # A fragmented message so far: its opcode byte, then the payload (its size is the
        # length less one, read in O(1): frames of one byte or none cost no more than others).
        self._fragments: bytearray | None = None
        self._inbox: deque[tuple[int, bytes]] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._out: list[bytes] | None = None
        self._out_bytes = 0
        self._backlog = 0  # frames flushed into a transport buffer that has not drained
        self._closing: tuple[int, str] | None = None
        self._closed: asyncio.Future[None] | None = None
        self._grace: asyncio.TimerHandle | None = None
        self._beat = 0  # heartbeats since the peer was last heard: 1 quiet, 2 pinged
        self.user_id = ""
        self.platform = 0
        self.ip = ""
        self.conn_id = ""
        #: The device (login) whose access token opened it (``sandcat.services.devices``).
        self.device_id = ""
        #: The protocol version the client asked for (2: it also gets JSON events).
        self.version = 1
        #: The gateway's per-connection state, made at the first message.
        self.session: object | None = None

    # ------------------------------------------------------------------ the socket

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        # A socket that never completes its request head is dropped (``_head`` cancels it).
        self._grace = asyncio.get_running_loop().call_later(
            self._edge.head_timeout, self._transport.abort
        )

    def connection_lost(self, exc: Exception | None) -> None:
        state, self._state = self._state, _GONE
        if self._closing is None:
            self._closing = (1006, "connection lost")
        self._out = self._buf = self._fragments = None
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        if state == _OPEN and self.conn_id:
            self._edge.lost(self)  # (lost while opening: ``_open`` tells the gateway)

    def data_received(self, data: bytes) -> None:
        if self._state == _OPEN:
            buf = self._buf
            if buf is None:
                self._read(data)  # the common case: whole frames in one read
            else:
                buf += data
                self._read(buf)
        elif self._state == _HEAD:
            self._head(data)
        elif self._state == _OPENING:
            if self._buf is None:
                self._buf = bytearray()
            self._buf += data
            if len(self._buf) > self._edge.max_message + MAX_HEAD_BYTES:
                self._transport.pause_reading()

    def _head(self, data: bytes) -> None:
        buf = self._buf
        if buf is None:
            buf = self._buf = bytearray()
        buf += data
        end = buf.find(b"\r\n\r\n")
        if end < 0 or end > MAX_HEAD_BYTES:
            if len(buf) > MAX_HEAD_BYTES:
                self._hand_over()  # (aiohttp answers a head this long 431 or 400)
            return
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        upgrade = parse_upgrade(bytes(buf[:end]))
        if upgrade is None:
            self._hand_over()
            return
        del buf[: end + 4]
        if not buf:
            self._buf = None
        self._fallback = None
        self._state = _OPENING
        peer = self._transport.get_extra_info("peername")
        self.ip = str(peer[0]) if peer else "unknown"
        self._transport.write(upgrade.accept)  # always accept, then close: clients read codes
        self._worker = asyncio.get_running_loop().create_task(self._open(upgrade))

    def _hand_over(self) -> None:
        """Not a WebSocket upgrade of the gateway's route: aiohttp serves it (and times
        out what it does not get whole).

        The request is given a ``Connection: close`` first header, so the answer ends the
        connection: a client that pools connections (aiohttp's does) then opens a new
        one for a WebSocket upgrade, which this protocol reads, instead of sending the
        upgrade on the socket aiohttp now owns (whose route answers an upgrade 400)."""
        assert self._fallback is not None and self._buf is not None
        if self._grace is not None:
            self._grace.cancel()
            self._grace = None
        protocol = self._fallback()
        buf = self._buf
        line = buf.find(b"\r\n")
        if line > 0:
            buf[line:line] = b"\r\nConnection: close"
        transport, data = self._transport, bytes(buf)
        self._state, self._buf, self._fallback = _GONE, None, None
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(data)

    async def _open(self, upgrade: Upgrade) -> None:
        try:
            await self._edge.open(self, upgrade)
        except Exception:
            log.exception("ws_open_failed", user_id=upgrade.user_id)
            self.close(CLOSE_INTERNAL_ERROR, "internal error")
        finally:
            self._worker = None
        if self._state == _GONE:
            if self.conn_id:
                self._edge.lost(self)  # lost during the open, after registering
            return
        self._state = _OPEN  # closing already (refused) or not, the peer's frames are read
        if self._buf is not None:
            self._read(self._buf)
        if self._inbox is None or len(self._inbox) < INBOX_PAUSE:
            self._transport.resume_reading()  # (else the worker resumes once it caught up)

    def opened(
        self, user_id: str, platform: int, conn_id: str, version: int = 1, device_id: str = ""
    ) -> None:
        """The gateway accepted the connection (token checked): it may register it."""
        self.user_id, self.platform, self.conn_id = user_id, platform, conn_id
        self.version, self.device_id = version, device_id
        self._transport.write(PING_FRAME)

    @property
    def gone(self) -> bool:
        return self._state == _GONE

    # ------------------------------------------------------------------ reading frames

    def _read(self, data: bytes | bytearray) -> None:
        """Handle every whole frame in ``data``; keep the rest for the next read."""
        size = len(data)
        pos = 0
        limit = self._edge.max_message
        while self._state == _OPEN:
            if size - pos < 2:
                break
            inbox = self._inbox
            if inbox is not None and len(inbox) >= INBOX_PAUSE:
                break  # the rest waits in the buffer, read paused, until the worker catches up
            b0, b1 = data[pos], data[pos + 1]
            length = b1 & 0x7F
            head = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 4], "big")
                head = pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(data[pos + 2 : pos + 10], "big")
                head = pos + 10
            opcode = b0 & 0x0F
            # Reserved bits (no extension), an unmasked frame, or a 64-bit length with its
            # most significant bit set (RFC 6455 §5.2).
            if b0 & 0x70 or not b1 & 0x80 or length >> 63:
                self._fail(CLOSE_PROTOCOL_ERROR, "protocol error")
                return
            if opcode >= 8:
                if length > 125 or not b0 & 0x80:
                    self._fail(CLOSE_PROTOCOL_ERROR, "bad control frame")
                    return
            elif length + self._fragment_bytes() > limit:
                self._fail(CLOSE_TOO_BIG, "message too big")
                return
            end = head + 4 + length
            if end > size:
                break
            payload = unmask(data[head + 4 : end], data[head : head + 4])
            pos = end
            self._frame(b0 & 0x80, opcode, payload)
        if pos >= size or self._state != _OPEN:
            self._buf = None
        elif isinstance(data, bytearray) and data is self._buf:
            del data[:pos]
        else:
            self._buf = bytearray(data[pos:])

    def _fail(self, code: int, reason: str) -> None:
        """A frame that cannot be read past: close, and end the socket once that is sent."""
        self.close(code, reason)
        self._buf = self._fragments = None
        self._transport.close()

    def _fragment_bytes(self) -> int:
        fragments = self._fragments
        return len(fragments) - 1 if fragments is not None else 0

    def _frame(self, fin: int, opcode: int, payload: bytes) -> None:
        self._beat = 0
        COUNTS.frames_in += 1
        if self._closing is not None and opcode != OP_CLOSE:
            return  # closing: only the peer's close frame matters now
        if opcode in (OP_BINARY, OP_TEXT):
            if self._fragments is not None:
                self._fail(CLOSE_PROTOCOL_ERROR, "a new message inside a fragmented one")
            elif fin:
                self._message(opcode, payload)
            else:
                self._fragments = bytearray((opcode,)) + payload
        elif opcode == OP_CONTINUATION:
            fragments = self._fragments
            if fragments is None:
                self._fail(CLOSE_PROTOCOL_ERROR, "a continuation without a message")
                return
            fragments += payload
            if fin:
                self._fragments = None
                self._message(fragments[0], bytes(fragments[1:]))
        elif opcode == OP_PING:
            self._pong(payload)
        elif opcode == OP_CLOSE:
            self._peer_closed(payload)
        elif opcode != OP_PONG:
            self._fail(CLOSE_PROTOCOL_ERROR, "unknown opcode")

    def _pong(self, payload: bytes) -> None:
        """Answer a ping. A pong counts toward the send-queue bounds as a pushed frame
        does: a peer that pings without reading is closed as a slow client (4008), not
        left to grow the socket's buffer by a pong per ping."""
        transport = self._transport
        buffered = transport.get_write_buffer_size()
        if not buffered:
            self._backlog = 0
        elif (
            len(self._out or ()) + self._backlog >= self._edge.max_frames
            or buffered + len(payload) + 2 > self._edge.max_bytes
        ):
            self._slow(buffered)
            return
        transport.write(control_frame(OP_PONG, payload))
        if transport.get_write_buffer_size():
            self._backlog += 1

    def _message(self, opcode: int, payload: bytes) -> None:
        if opcode == OP_TEXT:
            try:
                payload.decode()
            except UnicodeDecodeError:
                self._fail(CLOSE_INVALID_DATA, "text frame is not UTF-8")
                return
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = deque()
        inbox.append((opcode, payload))
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work())
        elif len(inbox) >= INBOX_PAUSE:
            self._transport.pause_reading()

    async def _work(self) -> None:
        """Hand the queued messages to the gateway one at a time, in arrival order."""
        inbox = self._inbox
        edge = self._edge
        try:
            while inbox:
                opcode, payload = inbox.popleft()
                if len(inbox) == INBOX_PAUSE // 2 and self._state == _OPEN:
                    if self._buf is not None:
                        self._read(self._buf)  # the frames that waited for room
                    if len(inbox) < INBOX_PAUSE:
                        self._transport.resume_reading()
                await edge.message(self, opcode, payload)
        finally:
            self._worker = None
            self._inbox = None

    def _peer_closed(self, payload: bytes) -> None:
        """The peer's close frame: answer it (unless ours went first) and end the socket."""
        if self._closing is None:
            code, reason = close_answer(payload)
            self._closing = (code, reason)
            self._transport.write(close_frame(code, reason))
            self._transport.close()
        elif self._closing[0] == CLOSE_SLOW:
            self._transport.abort()
        else:
            self._transport.close()
        self._buf = None

    # ------------------------------------------------------------------ writing

    def beat(self) -> None:
        """One heartbeat: ping after a quiet interval, drop the peer that did not answer."""
        beat = self._beat
        if beat == 0:
            self._beat = 1
        elif beat == 1:
            self._beat = 2
            if self._closing is None and not self._transport.is_closing():
                self._transport.write(PING_FRAME)
        else:
            log.info("ws_dead_peer", user_id=self.user_id, conn_id=self.conn_id)
            self._transport.abort()

    def send(self, frame: bytes) -> None:
        """Queue one encoded ``Msg``; never blocks. Overflow closes the connection (4008)."""
        if self._closing is not None:
            return
        out = self._out
        if out is None:
            out = self._out = []
            self._edge.flusher.mark(self)
        out.append(frame)
        self._out_bytes += len(frame)
        buffered = self._transport.get_write_buffer_size()
        if not buffered:
            self._backlog = 0
        edge = self._edge
        if (
            len(out) + self._backlog > edge.max_frames
            or self._out_bytes + buffered > edge.max_bytes
        ):
            self._slow(buffered)

    def send_text(self, payload: bytes) -> None:
        """Write one v2 event (a text frame) behind the frames queued before it. Events
        are rare beside messages: they take the direct write, not the per-turn flush."""
        if self._closing is not None or self._state == _GONE:
            return
        self.flush()
        transport = self._transport
        if transport.is_closing():
            return
        transport.write(text_frame(payload))
        COUNTS.frames_out += 1
        buffered = transport.get_write_buffer_size()
        if buffered > self._edge.max_bytes:
            self._slow(buffered)

    def _slow(self, buffered: int) -> None:
        log.warning(
            "slow_client_closed",
            user_id=self.user_id,
            conn_id=self.conn_id,
            queued=len(self._out or ()) + self._backlog,
            buffered=buffered,
        )
        COUNTS.slow_client_closes += 1
        self.close(CLOSE_SLOW, "slow")

    def flush(self) -> None:
        """Write the queued frames in one call (the flusher calls this once per turn)."""
        out = self._out
        if not out or self._closing is not None:
            return
        pieces: list[bytes] = []
        for frame in out:
            pieces.append(frame_header(len(frame)))
            pieces.append(frame)
        self._out = None
        self._out_bytes = 0
        transport = self._transport
        if transport.is_closing():
            return
        transport.write(b"".join(pieces))
        COUNTS.frames_out += len(out)
        self._backlog = self._backlog + len(out) if transport.get_write_buffer_size() else 0

    def queued(self) -> tuple[int, int]:
        """Frames not yet written or still in the socket's buffer, and that buffer's bytes."""
        return len(self._out or ()) + self._backlog, self._transport.get_write_buffer_size()

    def close(self, code: int, reason: str) -> None:
        """Send nothing more and close with ``code``: the peer's answering close frame ends
        the socket, or the close grace does."""
        if self._closing is not None or self._state == _GONE:
            return
        self._closing = (code, reason)
        self._out = None
        self._out_bytes = 0
        self._transport.write(close_frame(code, reason))
        # A peer that stopped reading never answers nor drains the buffer: drop the socket
        # after the grace rather than hold its descriptor and buffer until TCP gives up.
        self._grace = asyncio.get_running_loop().call_later(
            CLOSE_GRACE_SECONDS, self._transport.abort
        )

    async def closed(self) -> None:
        """Close with 1000 unless closing already, and wait until the socket is gone."""
        self.close(CLOSE_NORMAL, "bye")
        if self._state == _GONE:
            return
        if self._closed is None:
            self._closed = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._closed)

    @property
    def close_code(self) -> int | None:
        return self._closing[0] if self._closing else None


class Heartbeat:
    """Beats every connection of a registry each ``interval`` seconds from one timer.

    The timer runs while connections exist: ``ensure`` starts it on a connect, and a beat
    that finds the registry empty does not schedule the next one.
    """

    __slots__ = ("_handle", "_interval", "_registry")

    def __init__(self, registry: Registry, interval: float) -> None:
        self._registry = registry
        self._interval = interval
        self._handle: asyncio.TimerHandle | None = None

    def ensure(self) -> None:
        if self._handle is None and self._interval > 0:
            self._handle = asyncio.get_running_loop().call_later(self._interval, self._beat)

    def _beat(self) -> None:
        self._handle = None
        connections = self._registry.all_connections()
        for conn in connections:
            conn.beat()
        if connections:
            self.ensure()


class Registry:
    """``user_id -> {platform -> Connection}``; implements the ``Delivery`` port."""

    def __init__(self) -> None:
        self._users: dict[str, dict[int, Connection]] = {}
        self._per_ip: dict[str, int] = {}
        self.flusher = Flusher()

    def count_ip(self, ip: str) -> int:
        return self._per_ip.get(ip, 0)

    def register(self, conn: Connection) -> None:
        platforms = self._users.setdefault(conn.user_id, {})
        old = platforms.get(conn.platform)
        platforms[conn.platform] = conn
        self._per_ip[conn.ip] = self._per_ip.get(conn.ip, 0) + 1
        if old is not None:
            log.info(
                "knock_off",
                user_id=conn.user_id,
                platform=conn.platform,
                old_conn=old.conn_id,
                new_conn=conn.conn_id,
            )
            old.close(CLOSE_KNOCK_OFF, "knock off")

    def unregister(self, conn: Connection) -> None:
        left = self._per_ip.get(conn.ip, 0) - 1
        if left > 0:
            self._per_ip[conn.ip] = left
        else:
            self._per_ip.pop(conn.ip, None)
        platforms = self._users.get(conn.user_id)
        if platforms is not None and platforms.get(conn.platform) is conn:
            del platforms[conn.platform]
            if not platforms:
                del self._users[conn.user_id]

    def connections(self, user_id: str) -> list[Connection]:
        platforms = self._users.get(user_id)
        return list(platforms.values()) if platforms else []

    async def close_all(self, code: int, reason: str) -> None:
        """Close every connection (shutdown: 1001) and wait for their closing handshakes,
        each bounded by the close grace, so no client is left with a socket cut mid-way."""
        connections = self.all_connections()
        for conn in connections:
            conn.close(code, reason)
        await asyncio.gather(*(conn.closed() for conn in connections))

    def online_users(self) -> int:
        return len(self._users)

    def all_connections(self) -> list[Connection]:
        return [conn for platforms in self._users.values() for conn in platforms.values()]

    def deliver(self, user_id: str, msg: Msg, *, exclude_platform: int | None = None) -> None:
        if msg.msg_type in NEVER_PUSHED:
            return
        platforms = self._users.get(user_id)
        if platforms and (
            exclude_platform is None or len(platforms) > 1 or exclude_platform not in platforms
        ):
            # Encode once, for every matching connection.
            self.deliver_frame(user_id, _native.encode_msg(msg), exclude_platform)

    def deliver_frame(self, user_id: str, frame: bytes, exclude_platform: int | None) -> int:
        """Queue an already encoded frame on the user's connections; returns how many."""
        sent = 0
        for platform, conn in (self._users.get(user_id) or {}).items():
            if platform != exclude_platform:
                conn.send(frame)
                sent += 1
        return sent

    def deliver_event(self, user_id: str, payload: bytes) -> int:
        """Write a v2 event on the user's v2 connections; returns how many."""
        sent = 0
        for conn in (self._users.get(user_id) or {}).values():
            if conn.version >= 2:
                conn.send_text(payload)
                sent += 1
        return sent

    def online_elsewhere(self, user_id: str, platform: int) -> bool:
        platforms = self._users.get(user_id)
        if not platforms:
            return False
        return len(platforms) > 1 or platform not in platforms

    def holds(self, user_id: str, platform: int) -> bool:
        return platform in (self._users.get(user_id) or {})

    async def end_sessions(self, user_id: str) -> None:
        """Implements ``SessionEnder`` in one process."""
        self.close_sessions(user_id)

    def close_sessions(self, user_id: str) -> None:
        """Close the user's connections here with 4002 (their tokens were revoked)."""
        for conn in self.connections(user_id):
            conn.close(CLOSE_UNAUTHORIZED, "session ended")

    def close_device(self, user_id: str, device_id: str) -> None:
        """Close the user's connections here that the device opened with 4002 (it was
        logged out)."""
        for conn in self.connections(user_id):
            if conn.device_id == device_id:
                conn.close(CLOSE_UNAUTHORIZED, "device logged out")

    def knock_off(self, user_id: str, platform: int) -> None:
        """Close the user's connection on ``platform`` (it connected again elsewhere)."""
        conn = (self._users.get(user_id) or {}).get(platform)
        if conn is not None:
            conn.close(CLOSE_KNOCK_OFF, "knock off")
