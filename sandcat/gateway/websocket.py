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

import base64
import hashlib
from dataclasses import dataclass
from urllib.parse import parse_qs, unquote

from sandcat.sites import WrappingSite

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
#: Headers that may be repeated, their values joined as one comma-separated list.
_LIST_HEADERS = frozenset(("connection", "upgrade", "sec-websocket-extensions"))
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3


@dataclass(frozen=True, slots=True)
class Upgrade:
    """A WebSocket upgrade request on ``/ws/{user_id}/conn/{pointer_id}/{platform}/{token}``."""

    user_id: str
    platform: int
    token: str
    accept: bytes  # the 101 response
    #: The protocol version the client asked for with ``?v=2`` (1 otherwise): a v2 client
    #: also gets JSON events in text frames (docs/protocol.md, "Protocol v2").
    version: int = 1


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
    path, _, query = target.partition("?")
    parts = path.split("/")
    if len(parts) != 7 or parts[0] or parts[1] != "ws" or parts[3] != "conn":
        return None
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        # A folded line (RFC 9112 §5.2) or a space before the colon (§5.1): aiohttp
        # answers the request (400), so no two readers disagree on what it says.
        if not sep or not name or name != name.strip():
            return None
        name = name.lower()
        if name in headers:
            if name not in _LIST_HEADERS:
                return None  # two keys, two hosts: which one is meant is not known
            headers[name] += "," + value
        else:
            headers[name] = value
    key = headers.get("sec-websocket-key", "").strip()
    if (
        not headers.get("host", "").strip()
        or "websocket" not in _tokens(headers.get("upgrade", ""))
        or "upgrade" not in _tokens(headers.get("connection", ""))
        or headers.get("sec-websocket-version", "").strip() != "13"
        or not _is_key(key)
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
    v2 = parse_qs(query).get("v") == ["2"]
    return Upgrade(user_id, 1 if platform == "1" else 0, token, accept, 2 if v2 else 1)


def _tokens(value: str) -> set[str]:
    """The comma-separated tokens of a header's value, lowercased (RFC 9110 §5.6.1)."""
    return {token.strip().lower() for token in value.split(",")}


def _is_key(key: str) -> bool:
    """A ``Sec-WebSocket-Key`` is the base64 of 16 bytes (RFC 6455 §4.2.1)."""
    try:
        return len(key) == 24 and len(base64.b64decode(key, validate=True)) == 16
    except ValueError:
        return False


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


def close_answer(payload: bytes) -> tuple[int, str]:
    """The code and reason that answer a peer's close frame carrying ``payload``: its own
    code, or 1002 for a code no endpoint may send (RFC 6455 §7.4: reserved, unassigned,
    out of range) or a one-byte payload, 1007 for a reason that is not UTF-8 (§5.5.1)."""
    if not payload:
        return CLOSE_NORMAL, ""
    code = int.from_bytes(payload[:2], "big")
    if len(payload) < 2 or not (
        1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999
    ):
        return CLOSE_PROTOCOL_ERROR, "bad close code"
    try:
        payload[2:].decode()
    except UnicodeDecodeError:
        return CLOSE_INVALID_DATA, "close reason is not UTF-8"
    return code, ""


def frame_head(opcode: int, size: int) -> bytes:
    """The header of an unmasked, final frame of ``opcode`` carrying ``size`` bytes."""
    first = 0x80 | opcode
    if size < 126:
        return bytes((first, size))
    if size < 65536:
        return bytes((first, 126)) + size.to_bytes(2, "big")
    return bytes((first, 127)) + size.to_bytes(8, "big")


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final text frame carrying ``payload`` (UTF-8)."""
    return frame_head(OP_TEXT, len(payload)) + payload


def control_frame(opcode: int, payload: bytes) -> bytes:
    return bytes((0x80 | opcode, len(payload))) + payload


class GatewaySite(WrappingSite):
    """The gateway's listener: its sockets start on ``protocol(fallback)``, the gateway's
    own WebSocket protocol, which gives non-WebSocket requests to ``fallback`` (the
    runner's aiohttp protocol factory)."""
