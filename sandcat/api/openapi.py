"""``GET /openapi.json``: the hand-maintained OpenAPI 3.1 description of the HTTP routes.

The document (``openapi.yaml`` beside this module) is read once, when the application is
built; ``tests/e2e/test_openapi.py`` checks it against the routes the server registers.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import orjson
import yaml
from aiohttp import web

from sandcat.api.common import Handler


def load_document() -> dict[str, Any]:
    text = resources.files("sandcat.api").joinpath("openapi.yaml").read_text(encoding="utf-8")
    document: dict[str, Any] = yaml.safe_load(text)
    return document


class OpenApiRoutes:
    def __init__(self) -> None:
        self._body = orjson.dumps(load_document())

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [("GET", "/openapi.json", self.get)]

    async def get(self, _: web.Request) -> web.StreamResponse:
        return web.Response(body=self._body, content_type="application/json")
