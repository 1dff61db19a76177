"""An aiohttp site whose sockets start on a protocol of the caller's, in front of aiohttp's:
the API's connection cap (``api/listener.py: CappedSite``) and the gateway's own WebSocket
protocol (``gateway/websocket.py: GatewaySite``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

#: Makes a new socket's protocol from the runner's protocol factory (aiohttp's own).
Wrap = Callable[[Callable[[], asyncio.Protocol]], asyncio.Protocol]


class WrappingSite(web.TCPSite):
    """``web.TCPSite`` whose every accepted socket gets ``wrap(factory)``, ``factory``
    making the runner's aiohttp protocol: the wrapper decides whether, and when, aiohttp
    sees the connection."""

    __slots__ = ("_wrap",)

    def __init__(
        self, runner: web.BaseRunner, wrap: Wrap, host: str, port: int, *, backlog: int = 128
    ) -> None:
        super().__init__(runner, host, port, backlog=backlog, reuse_address=True)
        self._wrap = wrap

    async def start(self) -> None:
        await web.BaseSite.start(self)  # registers the site with its runner
        factory = self._runner.server
        assert factory is not None
        wrap = self._wrap
        self._server = await asyncio.get_running_loop().create_server(
            lambda: wrap(factory),
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
        )
        self._bound_port = self._server.sockets[0].getsockname()[1]
