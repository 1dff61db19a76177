"""A lean WebSocket client for the load workers: one ``asyncio.Protocol`` per connection
that parses the server's frames in ``data_received`` and hands each binary message to a
callback, with no reader task, queue or per-frame wake-up.

Why not aiohttp's client (the workers used it before): the generator shares this
machine's two cores with the server it measures, and aiohttp's client spends a task
switch, a queue hand-off and a message object per received frame. Every cycle the
generator saves is one the server (or the relay baseline, driven by the same client) gets,
so the comparison stays fair while the absolute figures stop being capped by the
generator. It speaks just what a load client needs (RFC 6455): the upgrade, masked binary
frames out, unmasked frames in (fragments joined), pong for ping, the close handshake.
Each connection masks with one random key of its own, not a new key per frame: the key
only guards against proxies caching traffic, which a benchmark on loopback has none of.
"""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Callable
from typing import cast
from urllib.parse import urlsplit

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_MAX_HEAD = 16384


class WsClient(asyncio.Protocol):
    """One client connection. ``on_message`` gets every binary message's payload;
    ``on_closed`` is called once with the close code the server sent (or 1006)."""

    def __init__(self, on_message: Callable[[bytes], None], on_closed: Callable[[int], None]):
        self.on_message = on_message
        self._on_closed = on_closed
        self._key = os.urandom(4)
        self._transport: asyncio.Transport | None = None
        self._head: bytearray | None = bytearray()
        self._opened: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._buf = b""
        self._fragments: bytearray | None = None
        self.close_code: int | None = None
        self.close_reason = ""

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._opened.done():
            self._opened.set_exception(ConnectionError(f"closed during the upgrade: {exc}"))
        if self.close_code is None:
            self.close_code = 1006
        self._transport = None
        self._on_closed(self.close_code)

    def data_received(self, data: bytes) -> None:
        if self._head is not None:
            self._head += data
            end = self._head.find(b"\r\n\r\n")
            if end < 0:
                if len(self._head) > _MAX_HEAD:
                    self._fail("upgrade answer too long")
                return
            status = bytes(self._head[: self._head.find(b"\r\n")])
            data, self._head = bytes(self._head[end + 4 :]), None
            if b" 101 " not in status + b" ":
                self._fail(f"upgrade refused: {status.decode(errors='replace')}")
                return
            self._opened.set_result(None)
            if not data:
                return
        buf = self._buf + data if self._buf else data
        pos, size = 0, len(buf)
        while size - pos >= 2:
            first, length = buf[pos], buf[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length, start = int.from_bytes(buf[pos + 2 : pos + 4], "big"), pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, start = int.from_bytes(buf[pos + 2 : pos + 10], "big"), pos + 10
            end = start + length
            if end > size:
                break
            self._frame(first, buf[start:end])
            pos = end
        self._buf = buf[pos:] if pos < size else b""

    # ------------------------------------------------------------------ frames

    def _frame(self, first: int, payload: bytes) -> None:
        opcode = first & 0x0F
        if opcode in (OP_BINARY, OP_TEXT):
            if first & 0x80:
                if opcode == OP_BINARY:
                    self.on_message(payload)
            else:
                self._fragments = bytearray((opcode,)) + payload
        elif opcode == OP_CONTINUATION and self._fragments is not None:
            self._fragments += payload
            if first & 0x80:
                whole, self._fragments = self._fragments, None
                if whole[0] == OP_BINARY:
                    self.on_message(bytes(whole[1:]))
        elif opcode == OP_PING:
            self._write(OP_PONG, payload)
        elif opcode == OP_CLOSE:
            if self.close_code is None:
                code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
                self.close_code, self.close_reason = code, payload[2:].decode(errors="replace")
                self._write(OP_CLOSE, payload[:2])
            if self._transport is not None:
                self._transport.close()

    def _write(self, opcode: int, payload: bytes) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            raise ConnectionError("the WebSocket is closed")
        size = len(payload)
        if size < 126:
            head = bytes((0x80 | opcode, 0x80 | size))
        elif size < 65536:
            head = bytes((0x80 | opcode, 0xFE)) + size.to_bytes(2, "big")
        else:
            head = bytes((0x80 | opcode, 0xFF)) + size.to_bytes(8, "big")
        if size:
            key = (self._key * (size // 4 + 1))[:size]
            masked = int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")
            transport.write(head + self._key + masked.to_bytes(size, "little"))
        else:
            transport.write(head + self._key)

    async def upgrade(self, request: bytes) -> None:
        """Send the upgrade ``request`` and wait for the server's 101."""
        assert self._transport is not None
        self._transport.write(request)
        await self._opened

    def _fail(self, why: str) -> None:
        if not self._opened.done():
            self._opened.set_exception(ConnectionError(why))
        if self._transport is not None:
            self._transport.abort()

    # ------------------------------------------------------------------ the worker's side

    def send_bytes(self, payload: bytes) -> None:
        """Queue one binary message (never waits: the transport buffers)."""
        self._write(OP_BINARY, payload)

    @property
    def closed(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._write(OP_CLOSE, (1000).to_bytes(2, "big"))
            self._transport.close()


async def connect(
    url: str,
    on_message: Callable[[bytes], None],
    on_closed: Callable[[int], None],
    *,
    local_addr: str = "",
    timeout: float = 30.0,
) -> WsClient:
    """Open ``url`` (``ws://host:port/path``) and complete the upgrade."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        _, client = await loop.create_connection(
            lambda: WsClient(on_message, on_closed),
            host,
            port,
            local_addr=(local_addr, 0) if local_addr else None,
        )
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        await client.upgrade(request.encode())
    return client
