"""Shared edge helpers: error translation, strict JSON bodies, auth, typed app keys."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from aiohttp import web

from sandcat.errors import (
    BodyParsing,
    PathParsing,
    PayloadTooLarge,
    RequestTimeout,
    SandcatError,
    TooManyRequests,
)
from sandcat.errors import UnAuthorized as UnAuthorizedError
from sandcat.log import get_logger

log = get_logger("sandcat.api")
T = TypeVar("T")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Seconds a request body may stall between chunks (``limits.http_body_timeout``).
BODY_TIMEOUT = web.AppKey("body_timeout", float)


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def empty_response() -> web.Response:
    return web.Response(status=200)


def error_response(error: SandcatError) -> web.Response:
    response = json_response(error.body(), status=error.status)
    if isinstance(error, TooManyRequests):
        response.headers["Retry-After"] = str(error.retry_after)
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except SandcatError as exc:
        if exc.status >= 500:
            # The route, not the path: some paths carry a token (the refresh route).
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            log.error("request_failed", route=route, kind=exc.kind, details=exc.details)
        return error_response(exc)
    except web.HTTPRequestEntityTooLarge:
        return error_response(PayloadTooLarge("the request body is too large"))
    except web.HTTPException as exc:
        if exc.status == 404:
            return json_response({"kind": "NotFound", "details": "no such route"}, 404)
        if exc.status == 405:
            return json_response({"kind": "BadRequest", "details": "method not allowed"}, 405)
        raise


def client_ip(request: web.Request, trust_forwarded: bool) -> str:
    if trust_forwarded:
        forwarded = request.headers.get("X-Forwarded-For", "")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return request.remote or "unknown"


async def body_read(request: web.Request, read: Awaitable[T]) -> T:
    """One read of the request body (``read`` returns what is buffered), or 408 when nothing
    arrives within ``limits.http_body_timeout``: a client that stops sending holds nothing."""
    try:
        async with asyncio.timeout(request.config_dict.get(BODY_TIMEOUT, 30.0)):
            return await read
    except TimeoutError:
        raise RequestTimeout("the request body stopped arriving") from None


async def read_json(request: web.Request, limit: int) -> dict[str, Any]:
    """The JSON object body, at most ``limit`` bytes (413), well-formed (400 ``BodyParsing``)."""
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"the JSON body is larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    while chunk := await body_read(request, request.content.read(65536)):
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"the JSON body is larger than {limit} bytes")
        chunks.append(chunk)
    body = b"".join(chunks)
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BodyParsing(f"malformed JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BodyParsing("the JSON body must be an object")
    # JSON writes U+0000 only as an escape, and lowercase or not it has no hex letters.
    if b"\\u0000" in body and _holds_nul(data):
        raise BodyParsing(NUL_REFUSED)
    return data


#: PostgreSQL cannot store U+0000 in text: refused at the edge, in both modes alike.
NUL_REFUSED = "a string holds a NUL character (U+0000)"


def _holds_nul(value: object) -> bool:
    """Whether a decoded JSON value holds U+0000 in any string (a key included)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(k) or _holds_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False


class Body:
    """Typed, strict access to a request object: a missing or mistyped field is 400."""

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def text(self, name: str) -> str:
        value = self._data.get(name)
        if not isinstance(value, str):
            raise BodyParsing(f"field `{name}` must be a string")
        return value

    def opt_text(self, name: str) -> str | None:
        value = self._data.get(name)
        if value is not None and not isinstance(value, str):
            raise BodyParsing(f"field `{name}` must be a string or null")
        return value

    def integer(self, name: str) -> int:
        value = self._data.get(name)
        if not isinstance(value, int) or isinstance(value, bool):
            raise BodyParsing(f"field `{name}` must be an integer")
        if not -(2**63) <= value < 2**63:
            raise BodyParsing(f"field `{name}` is out of range")
        return value

    def opt_integer(self, name: str) -> int | None:
        if self._data.get(name) is None:
            return None
        return self.integer(name)

    def flag(self, name: str) -> bool:
        value = self._data.get(name)
        if not isinstance(value, bool):
            raise BodyParsing(f"field `{name}` must be a boolean")
        return value

    def texts(self, name: str) -> list[str]:
        value = self._data.get(name)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise BodyParsing(f"field `{name}` must be an array of strings")
        return list(value)

    def integers(self, name: str) -> list[int]:
        value = self._data.get(name)
        if not isinstance(value, list) or not all(
            isinstance(v, int) and not isinstance(v, bool) and -(2**63) <= v < 2**63 for v in value
        ):
            raise BodyParsing(f"field `{name}` must be an array of integers")
        return list(value)


def path_param(request: web.Request, name: str) -> str:
    value = request.match_info.get(name, "")
    if not value:
        raise PathParsing(f"path parameter `{name}` is missing")
    if "\x00" in value:
        raise PathParsing(f"path parameter `{name}`: {NUL_REFUSED}")
    return value


def path_int(request: web.Request, name: str) -> int:
    """An integer path parameter that fits a signed 64-bit column (else 400 ``PathParsing``)."""
    try:
        value = int(path_param(request, name))
    except ValueError as exc:
        raise PathParsing(f"path parameter `{name}` must be an integer") from exc
    if not -(2**63) <= value < 2**63:
        raise PathParsing(f"path parameter `{name}` is out of range")
    return value


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise UnAuthorizedError(f"a Bearer token is required for {request.path}")
    return token.strip()


def add_routes(app: web.Application, routes: list[tuple[str, str, Handler]]) -> None:
    """Serve every route at the root and under ``/api`` (the client's dev-proxy prefix)."""
    for method, path, handler in routes:
        app.router.add_route(method, path, handler)
        app.router.add_route(method, "/api" + path, handler)
