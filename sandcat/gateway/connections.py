"""Connections and the registry of who is connected where (one process).

Every connection has exactly one writer task draining a bounded queue of encoded frames;
a full queue closes the slow client with 4008 instead of blocking anyone.
"""

from __future__ import annotations

import asyncio
from collections import deque

from aiohttp import web

from sandcat import _native
from sandcat.log import get_logger
from sandcat.protocol.msg import NEVER_PUSHED, Msg

log = get_logger(__name__)

CLOSE_KNOCK_OFF = 4001
CLOSE_UNAUTHORIZED = 4002
CLOSE_SLOW = 4008


class Connection:
    __slots__ = (
        "_bytes",
        "_closing",
        "_max_bytes",
        "_max_frames",
        "_queue",
        "_wakeup",
        "conn_id",
        "ip",
        "platform",
        "user_id",
        "writer",
        "ws",
    )

    def __init__(
        self,
        ws: web.WebSocketResponse,
        user_id: str,
        platform: int,
        ip: str,
        conn_id: str,
        *,
        max_frames: int,
        max_bytes: int,
    ) -> None:
        self.ws = ws
        self.user_id = user_id
        self.platform = platform
        self.ip = ip
        self.conn_id = conn_id
        self._queue: deque[bytes] = deque()
        self._bytes = 0
        self._max_frames = max_frames
        self._max_bytes = max_bytes
        self._wakeup = asyncio.Event()
        self._closing: tuple[int, str] | None = None
        self.writer: asyncio.Task[None] | None = None

    def send(self, frame: bytes) -> None:
        """Queue one encoded frame; never blocks. Overflow closes the connection (4008)."""
        if self._closing is not None:
            return
        if len(self._queue) >= self._max_frames or self._bytes + len(frame) > self._max_bytes:
            log.warning(
                "slow_client_closed",
                user_id=self.user_id,
                conn_id=self.conn_id,
                queued=len(self._queue),
            )
            self.close(CLOSE_SLOW, "slow")
            return
        self._queue.append(frame)
        self._bytes += len(frame)
        self._wakeup.set()

    def close(self, code: int, reason: str) -> None:
        """Ask the writer to flush nothing more and close with ``code``."""
        if self._closing is None:
            self._closing = (code, reason)
            self._queue.clear()
            self._bytes = 0
            self._wakeup.set()

    async def run_writer(self) -> None:
        ws = self.ws
        try:
            while True:
                await self._wakeup.wait()
                self._wakeup.clear()
                while self._queue and self._closing is None:
                    frame = self._queue.popleft()
                    self._bytes -= len(frame)
                    await ws.send_bytes(frame)
                if self._closing is not None:
                    code, reason = self._closing
                    await ws.close(code=code, message=reason.encode())
                    return
        except (ConnectionError, RuntimeError):
            return


class Registry:
    """``user_id -> {platform -> Connection}``; implements the ``Delivery`` port."""

    def __init__(self) -> None:
        self._users: dict[str, dict[int, Connection]] = {}
        self._per_ip: dict[str, int] = {}

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

    def online_users(self) -> int:
        return len(self._users)

    def all_connections(self) -> list[Connection]:
        return [conn for platforms in self._users.values() for conn in platforms.values()]

    def deliver(self, user_id: str, msg: Msg, *, exclude_platform: int | None = None) -> None:
        if msg.msg_type in NEVER_PUSHED:
            return
        platforms = self._users.get(user_id)
        if platforms and any(platform != exclude_platform for platform in platforms):
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

    def holds(self, user_id: str, platform: int) -> bool:
        return platform in (self._users.get(user_id) or {})

    def knock_off(self, user_id: str, platform: int) -> None:
        """Close the user's connection on ``platform`` (it connected again elsewhere)."""
        conn = (self._users.get(user_id) or {}).get(platform)
        if conn is not None:
            conn.close(CLOSE_KNOCK_OFF, "knock off")
