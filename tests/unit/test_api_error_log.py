"""The API's error line (``request_failed``, a 5xx) names the route, never the path: some
paths carry a credential (``/user/refresh_token/{token}/{is_refresh}``), and a token must
never reach a log (docs/security.md). A real aiohttp server on loopback."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web

from sandcat.api.common import error_middleware
from sandcat.errors import DbError
from tests.loopback import serve_app

SECRET_TOKEN = "eyJ.secret-refresh-token.sig"


@pytest.fixture
async def base() -> AsyncIterator[str]:
    async def fail(request: web.Request) -> web.StreamResponse:
        raise DbError("the database is unavailable")

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/user/refresh_token/{token}/{is_refresh}", fail)
    async with serve_app(app) as url:
        yield url


async def test_a_failed_request_is_logged_by_its_route_not_its_path(
    base: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="sandcat.api")
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"{base}/user/refresh_token/{SECRET_TOKEN}/false") as resp,
    ):
        assert resp.status == 500
        assert (await resp.json())["kind"] == "DbError"
    lines = [r for r in caplog.records if r.getMessage() == "request_failed"]
    assert len(lines) == 1
    fields = getattr(lines[0], "fields", {})
    assert fields["route"] == "/user/refresh_token/{token}/{is_refresh}"
    assert SECRET_TOKEN not in repr(fields)
