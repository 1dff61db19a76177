"""GitHub login routes: the providers on offer, the start (a redirect to GitHub) and the
callback (``docs/protocol.md``, "GitHub login").

A sign-in begun with ``?web=true`` (the built-in page) is bound to the browser by a
cookie, and its callback answers with a redirect to the page carrying the login answer
(or the error) in the URL fragment; any other callback answers the login JSON.
"""

from __future__ import annotations

from urllib.parse import quote

import orjson
from aiohttp import web

from sandcat.api.audit import audit
from sandcat.api.common import Handler, client_ip, json_response
from sandcat.api.users import WsAddress, device_info, login_json
from sandcat.errors import BadRequest, SandcatError
from sandcat.services.oauth import PROVIDER, OAuthService

#: The browser's half of a sign-in begun on the built-in page.
COOKIE = "sandcat_oauth"
#: Where the built-in page is served.
PAGE = "/"


class OAuthRoutes:
    def __init__(
        self, *, oauth: OAuthService, ws_addr: WsAddress, trust_forwarded: bool, ttl: int
    ) -> None:
        self._oauth = oauth
        self._ws_addr = ws_addr
        self._trust = trust_forwarded
        self._ttl = ttl

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/user/auth/providers", self.providers),
            ("GET", "/user/auth/github", self.start),
            ("GET", "/user/auth/github/callback", self.callback),
        ]

    async def providers(self, request: web.Request) -> web.StreamResponse:
        return json_response({"providers": [PROVIDER] if self._oauth.enabled else []})

    async def start(self, request: web.Request) -> web.StreamResponse:
        web_flag = request.query.get("web", "false")
        if web_flag not in {"true", "false"}:
            raise BadRequest("web must be true or false")
        browser = web_flag == "true"
        own_callback = str(request.url.with_query(None).with_path(request.path + "/callback"))
        started = await self._oauth.start(
            redirect_uri=self._oauth.redirect_uri(own_callback),
            browser=browser,
            ip=client_ip(request, self._trust),
            nonce=request.query.get("nonce", ""),
        )
        response = web.Response(status=302, headers={"Location": started.url})
        if browser:
            response.set_cookie(
                COOKIE,
                started.browser_key,
                max_age=self._ttl,
                path="/",
                httponly=True,
                samesite="Lax",
                secure=request.secure,
            )
        return response

    async def callback(self, request: web.Request) -> web.StreamResponse:
        browser_key = request.cookies.get(COOKIE, "")
        try:
            signed_in = await self._oauth.finish(
                code=request.query.get("code", ""),
                state=request.query.get("state", ""),
                browser_key=browser_key,
                device=device_info(request, client_ip(request, self._trust)),
            )
        except SandcatError as exc:
            audit(request, self._trust, "login_failed", actor="-", target=PROVIDER, reason=exc.kind)
            if not browser_key:
                raise
            return _to_page("oauth_error", exc.body())
        user = signed_in.login.user
        audit(
            request,
            self._trust,
            "login",
            actor=user.id,
            target=user.id,
            provider=PROVIDER,
            created=signed_in.created,
        )
        answer = await login_json(signed_in.login, self._ws_addr)
        # The page gets the tokens only for a sign-in begun there: a cookie left by another
        # sign-in must not land someone else's callback link on the page (login CSRF).
        if not signed_in.browser:
            return json_response(answer)
        return _to_page("oauth", answer, signed_in.nonce)


def _to_page(key: str, value: object, nonce: str = "") -> web.StreamResponse:
    """A redirect to the built-in page with ``#key=<JSON>`` (and ``&nonce=`` the page's
    own, given at the start): a fragment never reaches a server or a log; the page reads
    it and removes it from the address bar at once."""
    fragment = quote(orjson.dumps(value).decode(), safe="")
    if nonce:
        fragment += "&nonce=" + nonce
    response = web.Response(status=302, headers={"Location": f"{PAGE}#{key}={fragment}"})
    response.del_cookie(COOKIE, path="/")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
