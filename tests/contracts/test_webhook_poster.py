"""The bots' webhook client (``AiohttpWebhookPoster``) against a real HTTP server on
loopback: a 2xx is a delivery, anything else an error string, and a redirect is never
followed (the receiver is a bot's, not the operator's: a 3xx must not make the server POST
to an address the operator never configured, such as an internal one)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from sandcat.adapters.webhook.client import AiohttpWebhookPoster
from tests.loopback import serve_app


class Hooks:
    def __init__(self) -> None:
        self.base = ""
        #: The paths POSTed to, in order.
        self.hits: list[str] = []


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    state = Hooks()

    async def record(request: web.Request) -> web.Response:
        state.hits.append(request.path)
        await request.read()
        if request.path == "/ok":
            return web.Response(status=204)
        if request.path.startswith("/moved/"):
            code = int(request.path.rsplit("/", 1)[1])
            return web.Response(status=code, headers={"Location": state.base + "/internal"})
        return web.Response(status=200)

    app = web.Application()
    app.router.add_post("/{tail:.*}", record)
    async with serve_app(app) as base:
        state.base = base
        yield state


async def test_a_2xx_is_delivered(hooks: Hooks) -> None:
    poster = AiohttpWebhookPoster()
    try:
        assert await poster.post(hooks.base + "/ok", b"{}", {"X-Test": "1"}, 5.0) is None
    finally:
        await poster.close()
    assert hooks.hits == ["/ok"]


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_a_redirect_is_a_failed_attempt_never_followed(hooks: Hooks, code: int) -> None:
    poster = AiohttpWebhookPoster()
    try:
        error = await poster.post(f"{hooks.base}/moved/{code}", b"{}", {}, 5.0)
    finally:
        await poster.close()
    assert error == f"HTTP {code}"
    assert hooks.hits == [f"/moved/{code}"], "the redirect was followed"
