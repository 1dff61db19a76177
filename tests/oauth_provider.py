"""A local OAuth2 provider speaking GitHub's shapes, for the GitHub login tests.

``/login/oauth/authorize`` signs in ``provider.account`` at once (the user "approves") and
redirects to ``redirect_uri`` with a code and the ``state`` passed through;
``/login/oauth/access_token`` checks the client id and secret, the code (single use), the
``redirect_uri`` and the PKCE verifier against the challenge (RFC 7636 S256, computed here
by hand, independently of the server's library) and answers like GitHub: 200 with
``{"error": ...}`` for a refused code; ``/user``, ``/user/emails`` and ``/avatar.png``
answer the account. ``fail`` makes a call answer a status instead (GitHub down).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from scripts.topology import free_port

CLIENT_ID = "test-client-id"
CLIENT_SECRET = "test-client-secret"
#: One port per test session, so the distributed topology (started once) can be pointed
#: at the provider that each test starts and stops.
PORT = free_port()
#: A 1x1 PNG.
AVATAR = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg=="
)


def github_settings(port: int = PORT) -> dict[str, str]:
    """``server.oauth2.github`` pointed at a provider on ``port`` (dotted keys)."""
    base = f"http://127.0.0.1:{port}"
    return {
        "server.oauth2.github.client_id": CLIENT_ID,
        "server.oauth2.github.client_secret": CLIENT_SECRET,
        "server.oauth2.github.auth_url": f"{base}/login/oauth/authorize",
        "server.oauth2.github.token_url": f"{base}/login/oauth/access_token",
        "server.oauth2.github.user_info_url": f"{base}/user",
        "server.oauth2.github.email_url": f"{base}/user/emails",
    }


#: The same settings as ``SANDCAT__*`` variables (a process's environment).
GITHUB_ENV = {
    "SANDCAT__" + key.upper().replace(".", "__"): value for key, value in github_settings().items()
}


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class Account:
    id: int
    login: str
    name: str | None = None
    #: ``(address, primary, verified)``
    emails: list[tuple[str, bool, bool]] = field(default_factory=list)


@dataclass
class _Grant:
    redirect_uri: str
    challenge: str
    account: Account


class Provider:
    def __init__(self, port: int) -> None:
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.account = Account(id=1, login="octocat")
        #: Path -> status to answer instead (``/user``, ``/login/oauth/access_token``...).
        self.fail: dict[str, int] = {}
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self._codes: dict[str, _Grant] = {}
        self._tokens: dict[str, Account] = {}

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._failures])
        app.router.add_get("/login/oauth/authorize", self.authorize)
        app.router.add_post("/login/oauth/access_token", self.access_token)
        app.router.add_get("/user", self.user)
        app.router.add_get("/user/emails", self.emails)
        app.router.add_get("/avatar.png", self.avatar)
        return app

    @web.middleware
    async def _failures(self, request: web.Request, handler: Any) -> web.StreamResponse:
        status = self.fail.get(request.path)
        if status is not None:
            return web.json_response({"message": "failing on purpose"}, status=status)
        response: web.StreamResponse = await handler(request)
        return response

    async def authorize(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        self.authorize_requests.append(query)
        if (
            query.get("client_id") != CLIENT_ID
            or query.get("response_type") != "code"
            or query.get("code_challenge_method") != "S256"
            or not query.get("code_challenge")
            or not query.get("state")
        ):
            return web.json_response({"error": "bad authorize request", "got": query}, status=400)
        code = secrets.token_hex(10)
        self._codes[code] = _Grant(query["redirect_uri"], query["code_challenge"], self.account)
        target = query["redirect_uri"] + "?" + urlencode({"code": code, "state": query["state"]})
        return web.Response(status=302, headers={"Location": target})

    async def access_token(self, request: web.Request) -> web.StreamResponse:
        form = dict(await request.post())
        self.token_requests.append({k: str(v) for k, v in form.items()})
        if request.headers.get("Accept") != "application/json":
            return web.Response(text="access_token=x&scope=&token_type=bearer")
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return web.json_response({"error": "incorrect_client_credentials"})
        grant = self._codes.pop(str(form.get("code", "")), None)
        if grant is None or form.get("redirect_uri") != grant.redirect_uri:
            return web.json_response({"error": "bad_verification_code"})
        if s256(str(form.get("code_verifier", ""))) != grant.challenge:
            return web.json_response({"error": "bad_verification_code"})
        token = secrets.token_hex(16)
        self._tokens[token] = grant.account
        return web.json_response(
            {"access_token": token, "token_type": "bearer", "scope": "read:user,user:email"}
        )

    def _account_of(self, request: web.Request) -> Account | None:
        header = request.headers.get("Authorization", "")
        return self._tokens.get(header.removeprefix("Bearer ")) if header else None

    async def user(self, request: web.Request) -> web.StreamResponse:
        account = self._account_of(request)
        if account is None:
            return web.json_response({"message": "Bad credentials"}, status=401)
        return web.json_response(
            {
                "id": account.id,
                "login": account.login,
                "name": account.name,
                "avatar_url": f"{self.base}/avatar.png",
            }
        )

    async def emails(self, request: web.Request) -> web.StreamResponse:
        account = self._account_of(request)
        if account is None:
            return web.json_response({"message": "Bad credentials"}, status=401)
        return web.json_response(
            [
                {"email": address, "primary": primary, "verified": verified, "visibility": None}
                for address, primary, verified in account.emails
            ]
        )

    async def avatar(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=AVATAR, content_type="image/png")


@asynccontextmanager
async def running_provider(port: int = PORT) -> AsyncIterator[Provider]:
    provider = Provider(port)
    runner = web.AppRunner(provider.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True)
    await site.start()
    try:
        yield provider
    finally:
        await runner.cleanup()
