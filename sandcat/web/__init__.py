"""The built-in web chat page: static files shipped in this package, served by the api app.

``/`` is the page, ``/web/{name}`` its scripts and style (a fixed list, read once at start),
``/web/info.json`` what the page cannot learn from the API (where verification codes go).
The page talks to the same HTTP routes and WebSocket as any client; it needs no CORS: its
HTTP calls are same-origin and browsers apply no CORS to WebSocket connections.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from sandcat.api.common import json_response

WEB_DIR = Path(__file__).parent

#: The page's files and their content types; nothing else under ``/web/`` is served.
FILES: dict[str, str] = {
    "index.html": "text/html",
    "style.css": "text/css",
    "app.js": "text/javascript",
    "api.js": "text/javascript",
    "bincode.js": "text/javascript",
    "conversations.js": "text/javascript",
    "bots.js": "text/javascript",
    "oauth.js": "text/javascript",
    "devices.js": "text/javascript",
}

#: Scripts and styles from this origin only; images also from blob: (previews before upload);
#: WebSockets to any host (login's ``ws_addr`` is another port, or another host).
CSP = (
    "default-src 'self'; img-src 'self' blob: data:; connect-src 'self' ws: wss:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


class WebPage:
    def __init__(self, *, codes_in_log: bool) -> None:
        self._codes_in_log = codes_in_log
        self._bodies = {name: (WEB_DIR / name).read_bytes() for name in FILES}

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/", self.index)
        app.router.add_get("/web/info.json", self.info)
        app.router.add_get("/web/{name}", self.asset)

    def _file(self, name: str) -> web.Response:
        return web.Response(
            body=self._bodies[name],
            content_type=FILES[name],
            charset="utf-8",
            headers={
                "Cache-Control": "no-cache",
                "X-Content-Type-Options": "nosniff",
                "Content-Security-Policy": CSP,
            },
        )

    async def index(self, request: web.Request) -> web.StreamResponse:
        return self._file("index.html")

    async def asset(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        if name not in FILES:
            return json_response({"kind": "NotFound", "details": "no such file"}, 404)
        return self._file(name)

    async def info(self, request: web.Request) -> web.StreamResponse:
        return json_response({"codes_in_log": self._codes_in_log})
