"""The WebSocket wire (RFC 6455) the gateway speaks itself, and the listener that hands it
its connections.

An idle connection costs what its socket and one ``Connection`` object cost: no aiohttp
request, handler task, reader queue or timer stays behind once the upgrade is answered.
``GatewaySite`` listens like aiohttp's ``TCPSite``; each new socket starts on a
``Connection``, which reads the request head: a WebSocket upgrade on the gateway's route is
answered here, anything else (``/metrics``, ``/health``, a malformed upgrade) is handed with
the bytes read so far to the application's own aiohttp protocol, unchanged.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote

from aiohttp import web

OP_CONTINUATION = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

CLOSE_NORMAL = 1000
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_INVALID_DATA = 1007
CLOSE_TOO_BIG = 1009
CLOSE_INTERNAL_ERROR = 1011

#: The longest request head read before giving the socket to aiohttp (which answers 431).
MAX_HEAD_BYTES = 8192
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


@dataclass(frozen=True, slots=True)
class Upgrade:
    """A WebSocket upgrade request on ``/ws/{user_id}/conn/{pointer_id}/{platform}/{token}``."""

    user_id: str
    platform: int
    token: str
    accept: bytes  # the 101 response


def parse_upgrade(head: bytes) -> Upgrade | None:
    """The upgrade ``head`` (request line and headers, without the blank line) asks for, or
    None when it is not a well-formed WebSocket upgrade on the gateway's route."""
    try:
        text = head.decode("latin-1")
        request_line, *lines = text.split("\r\n")
        method, target, version = request_line.split(" ")
    except ValueError:
        return None
    if method != "GET" or version != "HTTP/1.1":
        return None
    parts = target.split("?", 1)[0].split("/")
    if len(parts) != 7 or parts[0] or parts[1] != "ws" or parts[3] != "conn":
        return None
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            return None
        headers[name.strip().lower()] = value.strip()
    key = headers.get("sec-websocket-key", "")
    if (
        "websocket" not in headers.get("upgrade", "").lower()
        or "upgrade" not in headers.get("connection", "").lower()
        or headers.get("sec-websocket-version") != "13"
        or len(key) != 24
    ):
        return None
    digest = base64.b64encode(hashlib.sha1(key.encode() + _GUID).digest())  # RFC 6455 §4.2.2
    accept = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: " + digest + b"\r\n\r\n"
    )
    user_id, platform, token = (unquote(p) for p in (parts[2], parts[5], parts[6]))
    if not user_id or not token:
        return None
    return Upgrade(user_id, 1 if platform == "1" else 0, token, accept)


def unmask(payload: bytes | bytearray, mask: bytes | bytearray) -> bytes:
    """XOR ``payload`` with the 4-byte client ``mask`` (RFC 6455 §5.3), as one big-int XOR."""
    size = len(payload)
    if not size:
        return b""
    key = (bytes(mask) * (size // 4 + 1))[:size]
    value = int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")
    return value.to_bytes(size, "little")


def close_frame(code: int, reason: str) -> bytes:
    """An unmasked close frame carrying ``code`` and at most 123 bytes of ``reason``."""
    body = code.to_bytes(2, "big") + reason.encode()[:123]
    return bytes((0x88, len(body))) + body


def control_frame(opcode: int, payload: bytes) -> bytes:
    return bytes((0x80 | opcode, len(payload))) + payload


class GatewaySite(web.TCPSite):
    """aiohttp's ``TCPSite`` whose sockets start on ``protocol(fallback)``: the gateway's
    own WebSocket protocol, which gives non-WebSocket requests to ``fallback`` (the
    runner's aiohttp protocol factory)."""

    __slots__ = ("_protocol",)

    def __init__(
        self,
        runner: web.BaseRunner,
        protocol: Callable[[Callable[[], asyncio.Protocol]], asyncio.Protocol],
        host: str,
        port: int,
        *,
        backlog: int,
    ) -> None:
        super().__init__(runner, host, port, backlog=backlog, reuse_address=True)
        self._protocol = protocol

    async def start(self) -> None:
        await web.BaseSite.start(self)
        fallback = self._runner.server
        assert fallback is not None
        protocol = self._protocol
        self._server = await asyncio.get_running_loop().create_server(
            lambda: protocol(fallback),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]
