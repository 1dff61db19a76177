"""The HTTP API's listener: open connections capped per address and in all.

aiohttp closes a connection that sends no complete request head within its
``keepalive_timeout`` (``limits.http_header_timeout``, set through the application's
``handler_args``), but it has no cap on how many connections one address, or everyone,
may hold. ``CappedSite`` listens like ``web.TCPSite`` and puts a thin protocol in front of
aiohttp's own: past ``limits.http_connections_per_ip`` or ``limits.http_connections`` a new
connection is answered 503 with an error kind and closed before aiohttp sees it.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson
from aiohttp import web

from sandcat.sites import WrappingSite


def _refusal(details: str) -> bytes:
    body = orjson.dumps({"kind": "BadRequest", "details": details})
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


REFUSED_PER_IP = _refusal("too many open connections from this address")
REFUSED_TOTAL = _refusal("too many open connections")


class ConnectionCap:
    """Open connections per peer address and in all, against their limits (0 = no cap)."""

    def __init__(self, *, per_ip: int, total: int) -> None:
        self.per_ip = per_ip
        self.total = total
        self.open: Counter[str] = Counter()
        self.count = 0
        self.refused = 0

    def admit(self, ip: str) -> bytes | None:
        """Count the connection in, or return the refusal to send it."""
        if self.total and self.count >= self.total:
            self.refused += 1
            return REFUSED_TOTAL
        if self.per_ip and self.open[ip] >= self.per_ip:
            self.refused += 1
            return REFUSED_PER_IP
        self.open[ip] += 1
        self.count += 1
        return None

    def release(self, ip: str) -> None:
        self.count -= 1
        self.open[ip] -= 1
        if not self.open[ip]:
            del self.open[ip]


class _Capped(asyncio.Protocol):
    """Counts one connection; hands every event to aiohttp's protocol once admitted."""

    __slots__ = ("_cap", "_inner", "_ip")

    def __init__(self, cap: ConnectionCap, inner: asyncio.Protocol) -> None:
        self._cap = cap
        self._inner: asyncio.Protocol | None = inner
        self._ip: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        ip = str(peer[0]) if peer else "unknown"
        refusal = self._cap.admit(ip)
        if refusal is not None:
            self._inner = None
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(refusal)
            transport.close()
            return
        self._ip = ip
        assert self._inner is not None
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._ip is not None:
            self._cap.release(self._ip)
            self._ip = None
        if self._inner is not None:
            self._inner.connection_lost(exc)


class CappedSite(WrappingSite):
    """``web.TCPSite`` whose connections pass through ``cap`` first."""

    def __init__(self, runner: web.BaseRunner, cap: ConnectionCap, host: str, port: int) -> None:
        super().__init__(runner, lambda aiohttp: _Capped(cap, aiohttp()), host, port)
