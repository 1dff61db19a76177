"""Who may call what: every authenticated HTTP route and the WebSocket URL, called with
every kind of bad credential, and with the right one.

The table ``ROUTES`` is the authorization matrix: each route names the user it acts for
(the token must be that user's), and every cell of ``BAD_TOKENS`` must be refused with 401
``UnAuthorized`` on every route, at the root and under ``/api``; the WebSocket closes
with 4002. ``docs/security.md`` describes the same rules in prose.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import aiohttp
import jwt
import pytest

from tests.client import Api, Socket, User
from tests.conftest import TEST_OVERRIDES
from tests.e2e.test_bots import Admin, new_bot
from tests.e2e.test_bots import admin as bot_admin  # noqa: F401 (a fixture, used by name)

SECRET = TEST_OVERRIDES["server.jwt_secret"]

#: (method, path, body) per authenticated route, for the acting user ``u`` (and ``g``, a
#: group id the test does not need to exist: authentication comes before everything else).
Route = tuple[str, str, Callable[[User], Any]]
ROUTES: list[Route] = [
    ("GET", "/message/seq/{u}", lambda u: None),
    (
        "POST",
        "/message",
        lambda u: {"user_id": u.id, "start": 0, "end": 1, "send_start": 0, "send_end": 0},
    ),
    ("DELETE", "/message", lambda u: {"user_id": u.id, "msg_id": [1]}),
    ("PUT", "/user", lambda u: {"id": u.id, "name": "x", "avatar": "", "gender": ""}),
    ("PUT", "/user/email", lambda u: {"user_id": u.id, "email": "n@example.com", "code": "1"}),
    ("DELETE", "/user/logout/{u}", lambda u: None),
    ("GET", "/user/{u}/search/x", lambda u: None),
    (
        "POST",
        "/friend",
        lambda u: {
            "user_id": u.id,
            "friend_id": "nobody",
            "apply_msg": "",
            "req_remark": None,
            "source": "",
        },
    ),
    ("PUT", "/friend/agree", lambda u: {"fs_id": "nothing", "resp_msg": None, "resp_remark": None}),
    ("PUT", "/friend/deny", lambda u: {"fs_id": "nothing"}),
    ("DELETE", "/friend", lambda u: {"user_id": u.id, "friend_id": "nobody"}),
    ("PUT", "/friend/remark", lambda u: {"user_id": u.id, "friend_id": "nobody", "remark": "r"}),
    ("GET", "/friend/{u}/apply", lambda u: None),
    ("GET", "/friend/{u}/0", lambda u: None),
    ("POST", "/group/member", lambda u: {"user_id": u.id, "group_id": "g", "mem_ids": []}),
    ("DELETE", "/group/member", lambda u: {"user_id": u.id, "group_id": "g", "mem_id": []}),
    ("GET", "/group/member/{u}/g", lambda u: None),
    ("PUT", "/group/invite", lambda u: {"user_id": u.id, "group_id": "g", "members": []}),
    (
        "POST",
        "/group/{u}",
        lambda u: {"id": "", "owner": u.id, "avatar": "", "group_name": "n", "members_id": []},
    ),
    ("PUT", "/group/{u}", lambda u: {"id": "g", "owner": u.id, "name": "n", "avatar": ""}),
    ("DELETE", "/group", lambda u: {"user_id": u.id, "group_id": "g"}),
    ("GET", "/group/{u}/g", lambda u: None),
    ("POST", "/file/upload", lambda u: None),
    ("POST", "/file/avatar/upload", lambda u: None),
    ("GET", "/user/devices", lambda u: None),
    ("POST", "/user/devices/logout-others", lambda u: None),
    ("DELETE", "/user/devices/nothing", lambda u: None),
    ("PUT", "/friend/nothing/read", lambda u: None),
    ("GET", "/conversation", lambda u: None),
    ("PUT", "/conversation/{u}", lambda u: {"pinned": True}),
    ("POST", "/conversation/{u}/read", lambda u: None),
    ("GET", "/bot/directory", lambda u: None),
]


#: Routes that name no user: they act for the token's user, whoever that is, so "another
#: user's token" is simply that user acting (and is checked by the service's own rules).
TOKEN_IS_THE_ACTOR = {
    "/friend/agree",
    "/friend/deny",
    "/file/upload",
    "/file/avatar/upload",
    "/user/devices",
    "/user/devices/logout-others",
    "/user/devices/nothing",
    "/friend/nothing/read",
    "/conversation",
    "/conversation/{u}",
    "/conversation/{u}/read",
    "/bot/directory",
}

#: Routes any logged-in user may call about another user: a profile is public to users.
PUBLIC_TO_USERS: list[Route] = [
    ("GET", "/user/{u}", lambda u: None),
    ("GET", "/friend/query/{u}", lambda u: None),
]


def _token(user: User, **changes: Any) -> str:
    now = int(time.time())
    claims = {"sub": user.id, "iat": now, "exp": now + 3600, "typ": "access", "gen": 0}
    claims.update(changes)
    key, algorithm = changes.pop("_key", SECRET), changes.pop("_alg", "HS256")
    claims.pop("_key", None)
    claims.pop("_alg", None)
    return jwt.encode(claims, key, algorithm=algorithm)


#: Every kind of bad credential, built for the victim ``alice`` (and ``bob``, another user).
BAD_TOKENS: dict[str, Callable[[User, User], str | None]] = {
    "no token": lambda alice, bob: None,
    "malformed": lambda alice, bob: "not.a.jwt",
    "expired": lambda alice, bob: _token(alice, iat=1, exp=2),
    "alg none": lambda alice, bob: _token(alice, _key=None, _alg="none"),
    "another secret": lambda alice, bob: _token(alice, _key="x" * 40),
    "refresh token": lambda alice, bob: alice.refresh_token,
    "no sub": lambda alice, bob: _token(alice, sub=""),
    "another user's valid token": lambda alice, bob: bob.token,
    "a logged-out device's token": lambda alice, bob: _token(alice, did="logged-out-device"),
}


def _path(template: str, user: User) -> str:
    return template.replace("{u}", user.id)


@pytest.mark.parametrize("kind", list(BAD_TOKENS))
async def test_every_authenticated_route_refuses(api: Api, kind: str) -> None:
    alice = await api.new_user("alice", "a@example.com")
    bob = await api.new_user("bob", "b@example.com")
    token = BAD_TOKENS[kind](alice, bob)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if kind == "another user's valid token":
        routes = [route for route in ROUTES if route[1] not in TOKEN_IS_THE_ACTOR]
    else:
        routes = ROUTES + PUBLIC_TO_USERS
    for method, template, body in routes:
        for prefix in ("", "/api"):
            url = api.base + prefix + _path(template, alice)
            async with api.session.request(method, url, json=body(alice), headers=headers) as resp:
                assert resp.status == 401, (kind, method, template, resp.status)
                assert (await resp.json())["kind"] == "UnAuthorized", (kind, template)


async def test_the_right_token_passes_authentication_on_every_route(api: Api) -> None:
    """The other side of the matrix: with alice's own token no route answers 401."""
    alice = await api.new_user("alice", "a@example.com")
    headers = {"Authorization": f"Bearer {alice.token}"}
    for method, template, body in ROUTES + PUBLIC_TO_USERS:
        if template == "/user/logout/{u}":
            continue  # it would end the session the rest of the loop uses
        url = api.base + _path(template, alice)
        async with api.session.request(method, url, json=body(alice), headers=headers) as resp:
            assert resp.status != 401, (method, template, await resp.text())


async def test_a_profile_is_readable_by_any_logged_in_user_without_contact_fields(api: Api) -> None:
    alice = await api.new_user("alice", "a@example.com")
    bob = await api.new_user("bob", "b@example.com")
    _, own = await api.call(
        "PUT",
        "/user",
        token=alice.token,
        json={
            "id": alice.id,
            "name": "alice",
            "avatar": "",
            "gender": "",
            "phone": "555",
            "address": "street 1",
        },
    )
    assert (own["email"], own["phone"], own["address"]) == (alice.email, "555", "street 1")
    _, profile = await api.call("GET", f"/user/{alice.id}", token=bob.token)
    assert profile["id"] == alice.id and profile["name"] == "alice"
    # the contact fields are alice's own: null for anyone else, hers for her
    assert (profile["email"], profile["phone"], profile["address"]) == (None, None, None)
    _, mine = await api.call("GET", f"/user/{alice.id}", token=alice.token)
    assert (mine["email"], mine["phone"], mine["address"]) == (alice.email, "555", "street 1")
    _, info = await api.call("GET", f"/friend/query/{alice.id}", token=bob.token)
    assert info["id"] == alice.id and info["email"] == ""


@pytest.mark.parametrize("kind", [k for k in BAD_TOKENS if k != "no token"])
async def test_the_websocket_closes_4002_for_every_bad_token(
    api: Api, session: aiohttp.ClientSession, kind: str
) -> None:
    alice = await api.new_user("alice", "a@example.com")
    bob = await api.new_user("bob", "b@example.com")
    token = BAD_TOKENS[kind](alice, bob)
    assert token is not None
    sock = await Socket.connect(session, alice, token=token)
    assert await sock.expect_close() == 4002, kind


#: The bot API: only a bot's own token opens it (docs/protocol.md, "Bots").
BOT_ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/bot/me", None),
    ("POST", "/bot/message", {"receiver_id": "nobody", "content": "hi"}),
    ("GET", "/bot/friend/requests", None),
    ("PUT", "/bot/friend/nothing/agree", None),
    ("PUT", "/bot/friend/nothing/refuse", None),
]


async def test_bot_routes_refuse_user_tokens_and_user_routes_refuse_bot_tokens(
    api: Api, session: aiohttp.ClientSession, request: pytest.FixtureRequest
) -> None:
    alice = await api.new_user("alice", "a@example.com")
    bob = await api.new_user("bob", "b@example.com")
    admin: Admin = request.getfixturevalue("bot_admin")
    bot = await new_bot(admin, "")
    bot_user = User(bot["id"], "", "", token=bot["token"], ws_addr=alice.ws_addr)
    not_bots: dict[str, Callable[[User, User], str | None]] = {
        **BAD_TOKENS,
        "a user's access token": lambda a, b: a.token,
    }
    for kind, make in not_bots.items():
        token = make(alice, bob)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for method, path, body in BOT_ROUTES:
            async with api.session.request(
                method, api.base + "/api" + path, json=body, headers=headers
            ) as resp:
                assert resp.status == 401, (kind, method, path, resp.status)
                assert (await resp.json())["kind"] == "UnAuthorized", (kind, path)
    # The bot's own token opens its routes (authentication passed: no 401)...
    headers = {"Authorization": f"Bearer {bot['token']}"}
    for method, path, body in BOT_ROUTES:
        async with api.session.request(
            method, api.base + "/api" + path, json=body, headers=headers
        ) as resp:
            assert resp.status != 401, (method, path, await resp.text())
    # ...and no user route, acting for the bot's own id, nor a WebSocket.
    for method, template, make_body in ROUTES + PUBLIC_TO_USERS:
        url = api.base + "/api" + _path(template, bot_user)
        async with api.session.request(
            method, url, json=make_body(bot_user), headers=headers
        ) as resp:
            assert resp.status == 401, ("bot token", method, template, resp.status)
    sock = await Socket.connect(session, bot_user, token=bot["token"])
    assert await sock.expect_close() == 4002
