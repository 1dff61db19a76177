"""The public HTTP API as the web client uses it, and where registration codes come from.

Only ``POST /user/mail/send``, ``POST /user``, ``POST /user/login`` and the ``/message``
routes are used; nothing here knows how the server is built.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import redis.asyncio

_TEXT_CODE = re.compile(r"register_code email=(\S+) code=(\d{6})")


@dataclass(slots=True)
class Account:
    """One user the generator can log in as; ``token`` and ``ws_addr`` come from login."""

    id: str
    email: str
    password: str
    token: str = ""
    ws_addr: str = ""

    def to_json(self) -> dict[str, str]:
        return {
            "id": self.id,
            "email": self.email,
            "password": self.password,
            "token": self.token,
            "ws_addr": self.ws_addr,
        }

    @classmethod
    def from_json(cls, data: dict[str, str]) -> Account:
        return cls(
            id=data["id"],
            email=data["email"],
            password=data["password"],
            token=data.get("token", ""),
            ws_addr=data.get("ws_addr", ""),
        )


class ApiError(RuntimeError):
    def __init__(self, method: str, path: str, status: int, body: bytes) -> None:
        super().__init__(f"{method} {path}: HTTP {status} {body[:200]!r}")
        self.status = status


async def call(
    session: aiohttp.ClientSession,
    base: str,
    method: str,
    path: str,
    *,
    json_body: Any = None,
    token: str = "",
) -> Any:
    """One request; the decoded JSON (or text) body, or ``ApiError`` for a non-2xx answer."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with session.request(method, base + path, json=json_body, headers=headers) as resp_:
        raw = await resp_.read()
        if resp_.status >= 300:
            raise ApiError(method, path, resp_.status, raw)
        if resp_.content_type == "application/json":
            return json.loads(raw) if raw else None
        return raw.decode()


def b64_password(password: str) -> str:
    """The client sends passwords as standard base64 without padding."""
    return base64.b64encode(password.encode()).decode().rstrip("=")


async def login(session: aiohttp.ClientSession, base: str, account: Account) -> Account:
    body = await call(
        session,
        base,
        "POST",
        "/user/login",
        json_body={"account": account.email, "password": b64_password(account.password)},
    )
    account.id = body["user"]["id"]
    account.token = body["token"]
    account.ws_addr = body["ws_addr"]
    return account


class CodeSource(Protocol):
    async def code_for(self, email: str, timeout: float) -> str: ...

    async def close(self) -> None: ...


class LogCodes:
    """Codes read from the server's log file (the embedded mailer logs them in dev mode)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0
        self._partial = ""
        self._codes: dict[str, str] = {}

    def _scan(self) -> None:
        if not self._path.exists():
            return
        with self._path.open("r", encoding="utf-8", errors="replace") as file:
            file.seek(self._offset)
            chunk = file.read()
            self._offset = file.tell()
        lines = (self._partial + chunk).split("\n")
        self._partial = lines.pop()
        for line in lines:
            if "register_code" not in line:
                continue
            match = _TEXT_CODE.search(line)
            if match:
                self._codes[match.group(1)] = match.group(2)
            elif line.lstrip().startswith("{"):  # log.format: json
                record = json.loads(line)
                if record.get("event") == "register_code":
                    self._codes[str(record["email"])] = str(record["code"])

    async def code_for(self, email: str, timeout: float) -> str:
        async with asyncio.timeout(timeout):
            while True:
                self._scan()
                code = self._codes.pop(email, None)
                if code is not None:
                    return code
                await asyncio.sleep(0.02)

    async def close(self) -> None:
        return None


class RedisCodes:
    """Codes read from Redis: the key ``register_code:{email}`` or the original's hash."""

    def __init__(self, host: str, port: int, *, hash_layout: bool) -> None:
        self._host = host
        self._port = port
        self._hash = hash_layout
        self._client: redis.asyncio.Redis | None = None

    async def code_for(self, email: str, timeout: float) -> str:
        if self._client is None:
            self._client = redis.asyncio.Redis(host=self._host, port=self._port)
        client = self._client
        async with asyncio.timeout(timeout):
            while True:
                if self._hash:
                    value = await client.hget("register_code", email)
                else:
                    value = await client.get(f"register_code:{email}")
                if isinstance(value, bytes):
                    return value.decode()
                await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def code_source(spec: str) -> CodeSource:
    """``log:PATH``, ``redis-key:HOST:PORT`` or ``redis-hash:HOST:PORT``."""
    kind, _, rest = spec.partition(":")
    if kind == "log" and rest:
        return LogCodes(Path(rest))
    if kind in {"redis-key", "redis-hash"}:
        host, _, port = rest.rpartition(":")
        return RedisCodes(host or "127.0.0.1", int(port or 6379), hash_layout=kind == "redis-hash")
    raise ValueError(f"unknown code source {spec!r} (log:PATH, redis-key:H:P, redis-hash:H:P)")


async def register(
    session: aiohttp.ClientSession,
    base: str,
    codes: CodeSource,
    *,
    name: str,
    email: str,
    password: str,
) -> Account:
    """Register through the public API: ask for a code, read it from ``codes``, submit."""
    await call(session, base, "POST", "/user/mail/send", json_body={"email": email})
    code = await codes.code_for(email, timeout=10.0)
    body = await call(
        session,
        base,
        "POST",
        "/user",
        json_body={
            "avatar": "avatar1.png",
            "name": name,
            "password": password,
            "email": email,
            "code": code,
        },
    )
    return Account(id=body["id"], email=email, password=password)
