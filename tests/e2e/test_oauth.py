"""GitHub login end to end: the server against a local provider speaking GitHub's shapes
(``tests/oauth_provider.py``), over real sockets, in embedded and (SANDCAT_E2E_TARGET=
distributed) distributed mode."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import aiohttp
import pytest

from sandcat.admin import run_admin
from sandcat.cli import admin_request, build_parser
from sandcat.server import Running
from tests.client import Api, Socket, User
from tests.conftest import StartServer, make_config
from tests.oauth_provider import CLIENT_ID, Account, Provider, github_settings, running_provider


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    async with running_provider() as started:
        yield started


@pytest.fixture
async def server(start_server: StartServer, provider: Provider) -> AsyncIterator[Running]:
    """The embedded server of the ``api`` fixture, pointed at the provider."""
    async with start_server(**github_settings(provider.port)) as srv:
        yield srv


async def _get(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> aiohttp.ClientResponse:
    async with session.get(url, allow_redirects=False, **kwargs) as response:
        await response.read()
        return response


async def _to_callback(api: Api, *, web: bool = False) -> tuple[str, str]:
    """Start a sign-in and let the provider approve it: the callback URL it sends the
    browser to, and the cookie the start set (web sign-ins)."""
    start = await _get(
        api.session, f"{api.base}/api/user/auth/github" + ("?web=true" if web else "")
    )
    assert start.status == 302, start.status
    cookie = start.cookies.get("sandcat_oauth")
    approved = await _get(api.session, start.headers["Location"])
    assert approved.status == 302, approved.status
    return approved.headers["Location"], cookie.value if cookie else ""


async def _sign_in(api: Api, expect: int = 200) -> Any:
    callback, _ = await _to_callback(api)
    async with api.session.get(callback, allow_redirects=False) as response:
        body = await response.json()
        assert response.status == expect, body
        return body


def _account(provider: Provider, login: str, *emails: tuple[str, bool, bool]) -> Account:
    """A GitHub account unique to this test (the distributed topology is shared)."""
    account = Account(id=abs(hash((login, provider.port, id(provider)))), login=login)
    account.emails = list(emails)
    provider.account = account
    return account


async def test_providers_route_says_github_is_configured(api: Api, provider: Provider) -> None:
    _, body = await api.call("GET", "/api/user/auth/providers")
    assert body == {"providers": ["github"]}


async def test_start_redirects_with_state_and_s256_challenge(api: Api, provider: Provider) -> None:
    first = await _get(api.session, f"{api.base}/api/user/auth/github")
    second = await _get(api.session, f"{api.base}/user/auth/github")
    assert first.status == second.status == 302
    url = urlsplit(first.headers["Location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{provider.base}/login/oauth/authorize"
    query = {key: values[0] for key, values in parse_qs(url.query).items()}
    assert query["client_id"] == CLIENT_ID and query["response_type"] == "code"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert query["redirect_uri"] == f"{api.base}/api/user/auth/github/callback"
    assert query["scope"] == "read:user user:email"
    other = {k: v[0] for k, v in parse_qs(urlsplit(second.headers["Location"]).query).items()}
    assert len(query["state"]) >= 32 and other["state"] != query["state"]
    assert other["code_challenge"] != query["code_challenge"]


async def test_first_login_creates_an_account_then_signs_in_the_same_one(
    api: Api, provider: Provider, session: aiohttp.ClientSession
) -> None:
    login = f"octo{provider.port}"
    _account(provider, login, ("octo-unverified@example.com", True, False))
    provider.account.name = "Octo Cat"
    first = await _sign_in(api)
    user = first["user"]
    assert set(first) == {"user", "token", "refresh_token", "ws_addr"}
    assert user["name"] == "Octo Cat" and user["account"].startswith(login)
    assert user["email"] is None  # an unverified address is not taken
    # The provider saw the verifier whose S256 is the challenge (it checks), the client
    # secret and the same redirect_uri as the authorize request.
    token_request = provider.token_requests[-1]
    assert token_request["redirect_uri"] == provider.authorize_requests[-1]["redirect_uri"]
    assert len(token_request["code_verifier"]) >= 43
    # The avatar is GitHub's picture, copied into the avatar bucket.
    assert user["avatar"].endswith(".png") and user["avatar"] != "avatar1.png"
    _, picture = await api.call("GET", f"/api/file/avatar/get/{user['avatar']}")
    assert picture[:8] == b"\x89PNG\r\n\x1a\n"
    # The tokens are a login's: the profile, and a WebSocket connection.
    _, profile = await api.call("GET", f"/api/user/{user['id']}", token=first["token"])
    assert profile["id"] == user["id"]
    me = User(id=user["id"], email="", password="", token=first["token"], ws_addr=first["ws_addr"])
    me.refresh_token = first["refresh_token"]
    sock = await Socket.connect(session, me)
    await sock.close()
    _, fresh = await api.call(
        "GET", f"/api/user/refresh_token/{first['refresh_token']}/false", expect=200
    )
    assert isinstance(fresh, str) and fresh
    # Signing in again is the same account (the link), whatever the e-mails say now; each
    # sign-in is a device of its own, like a password login.
    second = await _sign_in(api)
    assert second["user"]["id"] == user["id"]
    _, devices = await api.call("GET", "/api/user/devices", token=second["token"])
    assert len(devices) == 2


async def test_a_primary_verified_email_links_the_existing_account(
    api: Api, provider: Provider
) -> None:
    alice = await api.new_user("alice", "alice@example.com")
    _account(
        provider,
        f"alice{provider.port}",
        ("alice-other@example.com", False, True),
        (alice.email.upper(), True, True),
    )
    signed_in = await _sign_in(api)
    assert signed_in["user"]["id"] == alice.id
    assert signed_in["user"]["email"] == alice.email
    # The password still works beside it.
    await api.login(alice)


async def test_an_unverified_or_secondary_email_does_not_link(api: Api, provider: Provider) -> None:
    bob = await api.new_user("bob", "bob@example.com")
    _account(provider, f"bob{provider.port}", (bob.email, True, False))
    unverified = await _sign_in(api)
    assert unverified["user"]["id"] != bob.id and unverified["user"]["email"] is None
    _account(provider, f"bob2{provider.port}", (bob.email, False, True))
    secondary = await _sign_in(api)
    assert secondary["user"]["id"] not in {bob.id, unverified["user"]["id"]}


async def test_a_taken_login_name_gets_a_unique_account(api: Api, provider: Provider) -> None:
    login = f"twin{provider.port}"
    _account(provider, login)
    first = (await _sign_in(api))["user"]
    _account(provider, login)  # another GitHub account with that login (renamed since)
    provider.account.id += 1
    second = (await _sign_in(api))["user"]
    assert first["id"] != second["id"]
    assert first["account"] != second["account"]
    assert second["account"].startswith(f"{first['account']}-")


async def test_state_is_single_use_and_must_be_known(api: Api, provider: Provider) -> None:
    _account(provider, f"once{provider.port}")
    callback, _ = await _to_callback(api)
    async with api.session.get(callback) as response:
        assert response.status == 200
    async with api.session.get(callback) as response:
        assert response.status == 400
        assert (await response.json())["kind"] == "OAuthState"
    async with api.session.get(f"{api.base}/api/user/auth/github/callback?code=x&state=nope") as r:
        assert r.status == 400 and (await r.json())["kind"] == "OAuthState"
    async with api.session.get(f"{api.base}/api/user/auth/github/callback?code=x") as r:
        assert r.status == 400


async def test_a_refused_code_is_401_and_the_state_is_spent(api: Api, provider: Provider) -> None:
    _account(provider, f"refused{provider.port}")
    callback, _ = await _to_callback(api)
    parts = urlsplit(callback)
    state = parse_qs(parts.query)["state"][0]
    forged = f"{parts.scheme}://{parts.netloc}{parts.path}?code=forged&state={state}"
    async with api.session.get(forged) as response:
        body = await response.json()
        assert response.status == 401 and body["kind"] == "OAuthRefused", body
    async with api.session.get(callback) as response:  # the real code, too late
        assert response.status == 400


async def test_the_provider_checks_the_verifier(provider: Provider, api: Api) -> None:
    """The provider's PKCE check can fail: a code redeemed with another verifier is refused
    (so the successful logins above prove the server sent the right one)."""
    callback, _ = await _to_callback(api)
    code = parse_qs(urlsplit(callback).query)["code"][0]
    form = {
        "client_id": CLIENT_ID,
        "client_secret": "test-client-secret",
        "code": code,
        "redirect_uri": provider.authorize_requests[-1]["redirect_uri"],
        "code_verifier": "x" * 64,
    }
    async with api.session.post(
        f"{provider.base}/login/oauth/access_token",
        data=form,
        headers={"Accept": "application/json"},
    ) as response:
        assert await response.json() == {"error": "bad_verification_code"}


@pytest.mark.parametrize(
    ("path", "status", "kind", "expect"),
    [
        ("/user", 500, "OAuthProvider", 502),
        ("/user/emails", 503, "OAuthProvider", 502),
        ("/login/oauth/access_token", 502, "OAuthProvider", 502),
        ("/user", 401, "OAuthRefused", 401),
    ],
)
async def test_provider_failures(
    api: Api, provider: Provider, path: str, status: int, kind: str, expect: int
) -> None:
    _account(provider, f"down{provider.port}")
    provider.fail[path] = status
    body = await _sign_in(api, expect=expect)
    assert body["kind"] == kind


async def test_a_browser_sign_in_needs_its_cookie_and_lands_on_the_page(
    api: Api, provider: Provider
) -> None:
    _account(provider, f"web{provider.port}")
    callback, cookie = await _to_callback(api, web=True)
    assert cookie
    # Another browser (no cookie, or another one) cannot finish it, and spends the state.
    stolen = await _get(api.session, callback, headers={"Cookie": "sandcat_oauth=other"})
    assert stolen.status == 302
    fragment = unquote(urlsplit(stolen.headers["Location"]).fragment)
    assert fragment.startswith("oauth_error=")
    assert json.loads(fragment.removeprefix("oauth_error="))["kind"] == "OAuthState"

    callback, cookie = await _to_callback(api, web=True)
    landed = await _get(api.session, callback, headers={"Cookie": f"sandcat_oauth={cookie}"})
    assert landed.status == 302 and landed.headers["Cache-Control"] == "no-store"
    location = urlsplit(landed.headers["Location"])
    assert location.path == "/" and location.fragment.startswith("oauth=")
    answer = json.loads(unquote(location.fragment.removeprefix("oauth=")))
    assert set(answer) == {"user", "token", "refresh_token", "ws_addr"}
    _, profile = await api.call("GET", f"/api/user/{answer['user']['id']}", token=answer["token"])
    assert profile["account"].startswith(f"web{provider.port}")


async def test_the_pages_nonce_comes_back_with_its_answer_only(
    api: Api, provider: Provider
) -> None:
    """The page's nonce (docs/protocol.md, "GitHub login") is echoed after the answer in
    the fragment; it is refused malformed or without web=true."""
    _account(provider, f"nonce{provider.port}")
    nonce = "n0nce-of_the-page-1234"
    start = await _get(api.session, f"{api.base}/api/user/auth/github?web=true&nonce={nonce}")
    cookie = start.cookies["sandcat_oauth"].value
    callback = (await _get(api.session, start.headers["Location"])).headers["Location"]
    landed = await _get(api.session, callback, headers={"Cookie": f"sandcat_oauth={cookie}"})
    fragment = urlsplit(landed.headers["Location"]).fragment
    encoded, _, tail = fragment.partition("&")
    assert encoded.startswith("oauth=") and tail == f"nonce={nonce}"
    assert set(json.loads(unquote(encoded.removeprefix("oauth=")))) == {
        "user",
        "token",
        "refresh_token",
        "ws_addr",
    }
    for query in ("web=true&nonce=short", "web=true&nonce=" + "x" * 65, f"nonce={nonce}"):
        refused = await _get(api.session, f"{api.base}/api/user/auth/github?{query}")
        assert refused.status == 400, query


async def test_a_stale_cookie_does_not_land_someone_elses_sign_in_on_the_page(
    api: Api, provider: Provider
) -> None:
    """Login CSRF through the page: a victim whose browser still holds the cookie of a
    sign-in it began and left opens a callback link the attacker made from a sign-in begun
    without ``web=true`` (bound to no browser). The answer is the JSON of the API flow,
    never a redirect that would sign the page into the attacker's account."""
    _account(provider, f"csrf{provider.port}")
    _, victims_cookie = await _to_callback(api, web=True)  # begun, never finished
    attackers_callback, _ = await _to_callback(api)
    answer = await _get(
        api.session, attackers_callback, headers={"Cookie": f"sandcat_oauth={victims_cookie}"}
    )
    assert answer.status == 200, answer.headers.get("Location")
    assert answer.content_type == "application/json"


@pytest.mark.embedded_only
@pytest.mark.parametrize(("command", "words"), [("disable", "disabled"), ("delete", "deleted")])
async def test_a_disabled_or_deleted_account_is_refused_403(
    api: Api, provider: Provider, tmp_path: Path, command: str, words: str
) -> None:
    """An operator's ``sandcat users disable`` or ``delete`` (over the control socket) stops
    GitHub login to the linked account too (a deleted one's e-mail stays taken, so it is
    not made again)."""
    carol = await api.new_user("carol", "carol@example.com")
    _account(provider, f"carol{provider.port}", (carol.email, True, True))
    assert (await _sign_in(api))["user"]["id"] == carol.id
    config = make_config(tmp_path / "data")
    op, params = admin_request(build_parser().parse_args(["users", command, "--", carol.id]))
    await run_admin(config, op, params)
    body = await _sign_in(api, expect=403)
    assert words in body["details"]


@pytest.mark.embedded_only
async def test_without_configuration_there_is_no_github_login(
    start_server: StartServer, session: aiohttp.ClientSession
) -> None:
    async with start_server() as srv:
        base = f"http://127.0.0.1:{srv.api_port}"
        async with session.get(f"{base}/user/auth/providers") as response:
            assert await response.json() == {"providers": []}
        for path in ("/user/auth/github", "/user/auth/github/callback?code=c&state=s"):
            response = await _get(session, base + path)
            assert response.status == 404, path
