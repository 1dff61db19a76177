"""``GET /api/openapi.json`` against the routes a real server registers.

Every (listener, method, path) the api and gateway applications register must be in the
document, and the document must list nothing the server lacks. A path item without
``servers`` is served on the api port at the root and under ``/api`` (the document's two
``servers``); a path item with ``servers`` names its listeners by port (50001 api, 50000
gateway) and its prefix. HEAD routes that aiohttp adds beside each GET are not listed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
from aiohttp import web
from openapi_spec_validator import validate

from sandcat.api.openapi import load_document
from sandcat.server import Running

pytestmark = pytest.mark.embedded_only

METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
LISTENERS = {50001: "api", 50000: "gateway"}

Route = tuple[str, str, str]  # (listener, METHOD, path)


def documented(document: dict[str, Any]) -> set[Route]:
    routes: set[Route] = set()
    for path, item in document["paths"].items():
        for server in item.get("servers", document["servers"]):
            url = urlsplit(server["url"])
            assert url.port is not None, f"{path}: server {server['url']} names no port"
            listener = LISTENERS[url.port]
            for method in METHODS & item.keys():
                routes.add((listener, method.upper(), url.path.rstrip("/") + path))
    return routes


def registered(apps: dict[str, web.Application]) -> set[Route]:
    routes: set[Route] = set()
    for listener, app in apps.items():
        for route in app.router.routes():
            if route.method == "HEAD":
                continue
            resource = route.resource
            assert resource is not None
            path = resource.canonical
            if isinstance(resource, web.StaticResource):
                path = path.rstrip("/") + "/{filename}"
            routes.add((listener, route.method, path))
    return routes


def test_the_document_is_valid_openapi_3_1() -> None:
    document = load_document()
    assert document["openapi"].startswith("3.1")
    validate(document)


async def test_the_document_covers_exactly_the_registered_routes(
    server: Running, session: aiohttp.ClientSession
) -> None:
    apps = {"api": server.apps.api, "gateway": server.apps.gateway}
    assert all(app is not None for app in apps.values())
    actual = registered({name: app for name, app in apps.items() if app is not None})
    async with session.get(f"http://127.0.0.1:{server.api_port}/api/openapi.json") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        served = await resp.json()
    assert served == load_document()
    listed = documented(served)
    assert sorted(actual - listed) == [], "registered but missing from sandcat/api/openapi.yaml"
    assert sorted(listed - actual) == [], "in sandcat/api/openapi.yaml but not registered"
    # The check can fail: a route the server lacks is noticed.
    assert ("api", "GET", "/no/such/route") not in actual


def test_docs_protocol_lists_every_route_of_the_document() -> None:
    text = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    missing = [
        f"{method.upper()} {path}"
        for path, item in load_document()["paths"].items()
        for method in METHODS & item.keys()
        if f"{method.upper()} {path}`" not in text and not path.startswith("/ws/")
    ]
    assert missing == [], "routes missing from docs/protocol.md"
    assert "/ws/{user_id}/conn/{pointer_id}/{platform}/{token}" in text
