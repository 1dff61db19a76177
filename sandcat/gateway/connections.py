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
import contextlib

from aiohttp import web

from sandcat import _native
from sandcat.log import get_logger
from sandcat.metrics import COUNTS
from sandcat.protocol.msg import NEVER_PUSHED, Msg

log = get_logger(__name__)

CLOSE_GOING_AWAY = 1001
CLOSE_KNOCK_OFF = 4001
CLOSE_UNAUTHORIZED = 4002
CLOSE_SLOW = 4008
#: How long a closing handshake may take before the socket is dropped.
CLOSE_GRACE_SECONDS = 2.0

#: Headers of unmasked, final binary frames (RFC 6455 §5.2) with a payload under 126 bytes.
_SHORT_HEADERS = [bytes((0x82, n)) for n in range(126)]


#: A ping with no payload (RFC 6455 §5.5.2).
PING_FRAME = b"\x89\x00"


def frame_header(size: int) -> bytes:
    """The header of a server-to-client binary frame carrying ``size`` bytes."""
    if size < 126:
        return _SHORT_HEADERS[size]
    if size < 65536:
        return b"\x82\x7e" + size.to_bytes(2, "big")
    return b"\x82\x7f" + size.to_bytes(8, "big")


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


class Connection:
    __slots__ = (
        "_backlog",
        "_beat",
        "_closed",
        "_closing",
        "_flusher",
        "_max_bytes",
        "_max_frames",
        "_out",
        "_out_bytes",
        "_transport",
        "conn_id",
        "ip",
        "platform",
        "user_id",
        "ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport,
        user_id: str,
        platform: int,
        ip: str,
        conn_id: str,
        *,
        flusher: Flusher,
        max_frames: int,
        max_bytes: int,
    ) -> None:
        self.ws = ws
        self.user_id = user_id
        self.platform = platform
        self.ip = ip
        self.conn_id = conn_id
        self._transport = transport
        self._flusher = flusher
        self._out: list[bytes] = []
        self._out_bytes = 0
        self._backlog = 0  # frames flushed into a transport buffer that has not drained
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._closing: tuple[int, str] | None = None
        self._closed: asyncio.Task[None] | None = None
        self._beat = 0  # heartbeats since the peer was last heard: 1 quiet, 2 pinged

    def heard(self) -> None:
        """The peer sent a frame: it is alive."""
        self._beat = 0

    def pong(self, payload: bytes) -> None:
        """Answer a ping (its payload is at most 125 bytes: the reader enforces it)."""
        if self._closing is None and not self._transport.is_closing():
            self._transport.write(bytes((0x8A, len(payload))) + payload)

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
        if not out:
            self._flusher.mark(self)
        out.append(frame)
        self._out_bytes += len(frame)
        buffered = self._transport.get_write_buffer_size()
        if not buffered:
            self._backlog = 0
        if (
            len(out) + self._backlog > self._max_frames
            or self._out_bytes + buffered > self._max_bytes
        ):
            log.warning(
                "slow_client_closed",
                user_id=self.user_id,
                conn_id=self.conn_id,
                queued=len(out) + self._backlog,
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
        self._out = []
        self._out_bytes = 0
        transport = self._transport
        if transport.is_closing():
            return
        transport.write(b"".join(pieces))
        COUNTS.frames_out += len(out)
        self._backlog = self._backlog + len(out) if transport.get_write_buffer_size() else 0

    def queued(self) -> tuple[int, int]:
        """Frames not yet written or still in the socket's buffer, and that buffer's bytes."""
        return len(self._out) + self._backlog, self._transport.get_write_buffer_size()

    def close(self, code: int, reason: str) -> None:
        """Send nothing more and close with ``code`` (the handshake runs in its own task)."""
        if self._closing is None:
            self._closing = (code, reason)
            self._out = []
            self._out_bytes = 0
            self._closed = asyncio.get_running_loop().create_task(
                self._close(code, reason), name=f"ws-close-{self.conn_id}"
            )

    async def _close(self, code: int, reason: str) -> None:
        done = False
        try:
            async with asyncio.timeout(CLOSE_GRACE_SECONDS):
                await self.ws.close(code=code, message=reason.encode())
            done = True
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        finally:
            if not done or code == CLOSE_SLOW:
                # A peer that stopped reading never drains the buffer: drop the socket now
                # rather than hold its descriptor and buffer until TCP gives up.
                self._transport.abort()

    async def closed(self) -> None:
        """Close with 1000 unless closing already, and wait for the handshake to end."""
        self.close(1000, "bye")
        if self._closed is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._closed


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

    def knock_off(self, user_id: str, platform: int) -> None:
        """Close the user's connection on ``platform`` (it connected again elsewhere)."""
        conn = (self._users.get(user_id) or {}).get(platform)
        if conn is not None:
            conn.close(CLOSE_KNOCK_OFF, "knock off")
