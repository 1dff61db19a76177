"""Every ``/user`` and ``/file`` route over real sockets, JSON shapes checked field by field."""

from __future__ import annotations

import asyncio
import base64
import json

import aiohttp
import jwt

from tests.client import Api, CodeBook, Socket
from tests.conftest import StartServer

USER_FIELDS = [
    "id",
    "name",
    "account",
    "avatar",
    "gender",
    "age",
    "phone",
    "email",
    "address",
    "region",
    "birthday",
    "create_time",
    "update_time",
    "signature",
]


def b64(password: str) -> str:
    return base64.b64encode(password.encode()).decode().rstrip("=")


async def test_register_and_login_shapes(api: Api) -> None:
    user = await api.register("carol", "carol@example.com", "s3cret!")
    info = user.info
    assert list(info) == USER_FIELDS
    assert info["id"] == info["account"] and len(info["id"]) == 21
    assert info["birthday"] is None and info["gender"] == "" and info["age"] == 0
    assert info["email"] == "carol@example.com" and info["avatar"] == "avatar1.png"
    assert "password" not in info and "salt" not in info

    for account in (user.email, user.id):
        body = await api.login(user, account=account)
        assert list(body) == ["user", "token", "refresh_token", "ws_addr"]
        assert list(body["user"]) == USER_FIELDS and body["user"]["birthday"] is None
        assert body["ws_addr"].startswith("ws://127.0.0.1:") and body["ws_addr"].endswith("/ws")
        for token in (body["token"], body["refresh_token"]):
            payload = token.split(".")[1]
            assert "-" not in payload and "_" not in payload  # the client's std base64
            claims = json.loads(base64.b64decode(payload + "=" * (-len(payload) % 4)))
            assert claims["sub"] == user.id and isinstance(claims["exp"], int)
        assert jwt.get_unverified_header(body["token"])["alg"] == "HS256"


async def test_login_failures_are_identical(api: Api) -> None:
    user = await api.register("dave", "dave@example.com", "right")
    wrong = await api.call(
        "POST", "/user/login", expect=401, json={"account": user.email, "password": b64("wrong")}
    )
    unknown = await api.call(
        "POST",
        "/user/login",
        expect=401,
        json={"account": "nobody@example.com", "password": b64("wrong")},
    )
    assert (
        wrong[1]
        == unknown[1]
        == {"kind": "AccountOrPassword", "details": "wrong account or password"}
    )
    _, body = await api.call("POST", "/user/login", expect=400, json={"account": user.email})
    assert body["kind"] == "BodyParsing"
    _, body = await api.call(
        "POST", "/user/login", expect=400, json={"account": user.email, "password": "!!!"}
    )
    assert body["kind"] == "BadRequest"


async def test_registration_codes(api: Api) -> None:
    email = "erin@example.com"
    _, body = await api.call(
        "POST",
        "/user",
        expect=400,
        json={
            "avatar": "avatar2.png",
            "name": "erin",
            "password": "p",
            "email": email,
            "code": "1",
        },
    )
    assert body["kind"] == "CodeIsExpired"
    await api.call("POST", "/user/mail/send", json={"email": email})
    code = await api.codes.wait(email)
    bad = "000000" if code != "000000" else "111111"
    _, body = await api.call(
        "POST",
        "/user",
        expect=400,
        json={
            "avatar": "avatar2.png",
            "name": "erin",
            "password": "p",
            "email": email,
            "code": bad,
        },
    )
    assert body["kind"] == "CodeIsInvalid"
    await api.call(
        "POST",
        "/user",
        json={
            "avatar": "avatar2.png",
            "name": "erin",
            "password": "p",
            "email": email,
            "code": code,
        },
    )
    # Single use, and the e-mail is now taken.
    await api.call("POST", "/user/mail/send", json={"email": email})
    code2 = await api.codes.wait(email)
    _, body = await api.call(
        "POST",
        "/user",
        expect=400,
        json={
            "avatar": "avatar2.png",
            "name": "erin2",
            "password": "p",
            "email": email,
            "code": code2,
        },
    )
    assert body["kind"] == "BadRequest" and "already registered" in body["details"]
    _, body = await api.call("POST", "/user/mail/send", expect=400, json={"email": "not-an-email"})
    assert body["kind"] == "BadRequest"


async def test_token_of_another_user_is_401_everywhere(api: Api) -> None:
    alice = await api.new_user("alice", "a@example.com")
    bob = await api.new_user("bob", "b@example.com")
    cases = [
        ("GET", f"/message/seq/{alice.id}", None),
        (
            "POST",
            "/message",
            {"user_id": alice.id, "send_start": 0, "send_end": 0, "start": 0, "end": 1},
        ),
        ("DELETE", "/message", {"user_id": alice.id, "msg_id": [1]}),
        ("GET", f"/user/{alice.id}/search/x", None),
        ("PUT", "/user", {"id": alice.id, "name": "evil", "avatar": "", "gender": ""}),
        ("DELETE", f"/user/logout/{alice.id}", None),
    ]
    for method, path, body in cases:
        for prefix in ("", "/api"):
            _, err = await api.call(method, prefix + path, json=body, token=bob.token, expect=401)
            assert err["kind"] == "UnAuthorized", path
            await api.call(method, prefix + path, json=body, token="garbage", expect=401)
            await api.call(method, prefix + path, json=body, expect=401)
    # A refresh token is not an access token.
    await api.call("GET", f"/message/seq/{alice.id}", token=alice.refresh_token, expect=401)


async def test_profile_update_search_and_get(api: Api) -> None:
    alice = await api.new_user("alice", "a@example.com")
    bob = await api.new_user("bob", "b@example.com")
    _, updated = await api.call(
        "PUT",
        "/api/user",
        token=alice.token,
        json={
            "id": alice.id,
            "name": "Alice A.",
            "avatar": "",
            "gender": "f",
            "phone": "12345",
            "signature": "hello",
            "email": None,
        },
    )
    assert list(updated) == USER_FIELDS
    assert updated["name"] == "Alice A." and updated["avatar"] == "avatar1.png"
    assert updated["phone"] == "12345" and updated["signature"] == "hello"
    assert updated["update_time"] >= updated["create_time"]

    _, found = await api.call("GET", f"/api/user/{bob.id}/search/12345", token=bob.token)
    assert found["id"] == alice.id and found["match_type"] == "phone"
    assert list(found) == [
        "id",
        "name",
        "account",
        "avatar",
        "gender",
        "age",
        "email",
        "region",
        "birthday",
        "match_type",
        "signature",
        "is_friend",
    ]
    assert found["is_friend"] is False
    _, by_mail = await api.call("GET", f"/user/{bob.id}/search/a@example.com", token=bob.token)
    assert by_mail["match_type"] == "email"
    _, none = await api.call("GET", f"/user/{bob.id}/search/nothing", token=bob.token)
    assert none is None
    _, self_search = await api.call("GET", f"/user/{bob.id}/search/b@example.com", token=bob.token)
    assert self_search is None  # the caller is excluded
    long = "x" * 33
    await api.call("GET", f"/user/{bob.id}/search/{long}", token=bob.token, expect=400)

    _, got = await api.call("GET", f"/user/{alice.id}", token=bob.token)
    assert got["name"] == "Alice A." and list(got) == USER_FIELDS
    _, missing = await api.call("GET", "/user/nope", token=bob.token, expect=404)
    assert missing == {"kind": "NotFound", "details": "no such user"}
    # Phone works as a login too.
    body = await api.login(alice, account="12345")
    assert body["user"]["id"] == alice.id


async def test_refresh_tokens(api: Api) -> None:
    alice = await api.new_user("alice", "a@example.com")
    _, access = await api.call("GET", f"/api/user/refresh_token/{alice.refresh_token}/false")
    await api.call("GET", f"/message/seq/{alice.id}", token=access)
    _, refresh = await api.call("GET", f"/user/refresh_token/{alice.refresh_token}/true")
    await api.call("GET", f"/user/refresh_token/{refresh}/false")
    await api.call("GET", f"/user/refresh_token/{alice.token}/false", expect=401)
    await api.call("GET", "/user/refresh_token/garbage/false", expect=401)
    await api.call("GET", f"/user/refresh_token/{alice.refresh_token}/maybe", expect=400)


async def test_password_change_needs_the_users_own_email(api: Api) -> None:
    alice = await api.new_user("alice", "a@example.com")
    bob = await api.new_user("bob", "b@example.com")
    await api.call("POST", "/user/mail/send", json={"email": bob.email})
    code = await api.codes.wait(bob.email)
    _, err = await api.call(
        "PUT",
        "/user/pwd",
        expect=400,
        json={"user_id": alice.id, "email": bob.email, "pwd": b64("hijack"), "code": code},
    )
    assert "not the user's" in err["details"]
    await api.call("POST", "/user/mail/send", json={"email": alice.email})
    code = await api.codes.wait(alice.email)
    await api.call(
        "PUT",
        "/api/user/pwd",
        json={"user_id": alice.id, "email": alice.email, "pwd": b64("new-pass"), "code": code},
    )
    alice.password = "new-pass"
    await api.login(alice)
    await api.call(
        "POST",
        "/user/login",
        expect=401,
        json={"account": alice.email, "password": b64("pass-word-1")},
    )


async def test_logout_ends_every_session(api: Api, session: aiohttp.ClientSession) -> None:
    alice = await api.new_user("alice", "a@example.com")
    old_access, old_refresh = alice.token, alice.refresh_token
    opened = [await Socket.connect(session, alice, platform=p) for p in (0, 1)]
    await opened[0].ready(alice)
    await api.call("DELETE", f"/user/logout/{alice.id}", token=alice.token)
    for sock in opened:  # sockets opened before the logout are closed too
        assert await sock.expect_close() == 4002
    await api.call("GET", f"/message/seq/{alice.id}", token=old_access, expect=401)
    await api.call("GET", f"/user/refresh_token/{old_refresh}/false", expect=401)
    sock = await Socket.connect(session, alice, token=old_access)
    assert await sock.expect_close() == 4002


async def test_logout_race_stress(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    """1,000 cycles of login -> logout -> the old tokens, with requests in flight during the
    logout: every old token is refused once the logout has answered, every new one works.
    (Revocation used to compare millisecond clocks, so a login and a logout within one
    millisecond left the token valid.)"""
    async with start_server(limits__login_per_minute_per_account=100_000) as srv:
        api = Api(session, f"http://127.0.0.1:{srv.api_port}", codes)
        alice = await api.new_user("alice", "a@example.com")
        seq_path = f"/message/seq/{alice.id}"
        in_flight_answers: set[int] = set()
        for cycle in range(1000):
            await api.login(alice)
            access, refresh = alice.token, alice.refresh_token
            if cycle % 10 == 0:
                await api.call("GET", seq_path, token=access)
                await api.call("GET", f"/user/refresh_token/{refresh}/false")
            racing = [
                asyncio.create_task(api.call("GET", seq_path, token=access, expect=None))
                for _ in range(cycle % 3)
            ]
            await api.call("DELETE", f"/user/logout/{alice.id}", token=access)
            for status, _ in await asyncio.gather(*racing):
                in_flight_answers.add(status)
            await api.call("GET", seq_path, token=access, expect=401)
            await api.call("GET", f"/user/refresh_token/{refresh}/true", expect=401)
            if cycle % 100 == 0:
                sock = await Socket.connect(session, alice, token=access)
                assert await sock.expect_close() == 4002
        assert in_flight_answers <= {200, 401}
        await api.login(alice)  # the newest login still works
        await api.call("GET", seq_path, token=alice.token)


async def test_password_change_ends_every_session(api: Api) -> None:
    alice = await api.new_user("alice", "a@example.com")
    old_access, old_refresh = alice.token, alice.refresh_token
    await api.call("POST", "/api/user/mail/send", json={"email": alice.email})
    code = await api.codes.wait(alice.email)
    await api.call(
        "PUT",
        "/user/pwd",
        json={"user_id": alice.id, "email": alice.email, "pwd": b64("new-pass-1"), "code": code},
    )
    await api.call("GET", f"/message/seq/{alice.id}", token=old_access, expect=401)
    await api.call("GET", f"/user/refresh_token/{old_refresh}/false", expect=401)
    alice.password = "new-pass-1"
    await api.login(alice)
    await api.call("GET", f"/message/seq/{alice.id}", token=alice.token)


async def test_files_upload_and_download(api: Api) -> None:
    alice = await api.new_user("alice", "a@example.com")
    for route, get in (
        ("/api/file/upload", "/api/file/get/"),
        ("/file/avatar/upload", "/file/avatar/get/"),
    ):
        form = aiohttp.FormData()
        form.add_field(
            "file", b"\x89PNG-data", filename="../../etc/passwd.PNG", content_type="image/png"
        )
        _, key = await api.call("POST", route, data=form, token=alice.token)
        assert key.endswith(".png") and "/" not in key and len(key) == 21 + 4
        async with api.session.get(api.base + get + key) as resp:  # no token needed
            assert resp.status == 200 and await resp.read() == b"\x89PNG-data"
            assert resp.headers["Cache-Control"] == "private, max-age=31536000"
        form = aiohttp.FormData()
        form.add_field("file", b"x", filename="a.png")
        await api.call("POST", route, data=form, expect=401)  # uploads need a token
    for name in ("avatar1.png", "avatar2.png", "avatar3.png"):
        async with api.session.get(f"{api.base}/api/file/avatar/get/{name}") as resp:
            assert resp.status == 200 and (await resp.read()).startswith(b"\x89PNG")
    _, err = await api.call("GET", "/file/get/missing.png", expect=404)
    assert err["kind"] == "NotFound"
    await api.call("GET", "/file/get/..%2F..%2Fetc%2Fpasswd", expect=404)


async def test_malformed_bodies_and_unknown_routes(api: Api) -> None:
    async with api.session.post(api.base + "/user/login", data=b"{not json") as resp:
        assert resp.status == 400 and (await resp.json())["kind"] == "BodyParsing"
    async with api.session.post(api.base + "/user/login", data=b"[1,2]") as resp:
        assert resp.status == 400
    _, err = await api.call("GET", "/nothing/here", expect=404)
    assert err["kind"] == "NotFound"


async def test_a_code_dies_after_five_wrong_guesses(api: Api) -> None:
    """Brute-forcing the 6-digit code behind a password change (an account takeover): the
    fifth wrong guess voids the code, so even the right one is refused afterwards."""
    alice = await api.new_user("alice", "a@example.com")
    await api.call("POST", "/api/user/mail/send", json={"email": alice.email})
    code = await api.codes.wait(alice.email)
    wrong = f"{(int(code) + 1) % 900000 + 100000}"
    body = {"user_id": alice.id, "email": alice.email, "pwd": b64("taken-over")}
    for _ in range(5):
        _, err = await api.call("PUT", "/user/pwd", json={**body, "code": wrong}, expect=400)
        assert err["kind"] == "CodeIsInvalid"
    _, err = await api.call("PUT", "/user/pwd", json={**body, "code": code}, expect=400)
    assert err["kind"] == "CodeIsExpired"
    await api.login(alice)  # the old password still works


async def test_uploads_never_run_script_on_the_api_origin(api: Api) -> None:
    """Stored XSS through uploads: HTML, SVG and XHTML were served inline from the API's
    origin, where the web client keeps its tokens. Only media is inline now; everything
    else is an attachment of bytes, and nothing is sniffed or allowed to run script."""
    alice = await api.new_user("alice", "a@example.com")
    cases = {
        "page.html": ("text/html", "application/octet-stream", True),
        "logo.svg": ("image/svg+xml", "application/octet-stream", True),
        "doc.xhtml": ("application/xhtml+xml", "application/octet-stream", True),
        "data.xml": ("text/xml", "application/octet-stream", True),
        "photo.png": ("image/png", "image/png", False),
        "voice.mp3": ("audio/mpeg", "audio/mpeg", False),
        "clip.mp4": ("video/mp4", "video/mp4", False),
    }
    for filename, (sent_type, served, attachment) in cases.items():
        form = aiohttp.FormData()
        form.add_field(
            "file", b"<script>alert(1)</script>", filename=filename, content_type=sent_type
        )
        _, key = await api.call("POST", "/api/file/upload", data=form, token=alice.token)
        async with api.session.get(f"{api.base}/api/file/get/{key}") as resp:
            assert resp.status == 200, filename
            assert resp.headers["Content-Type"] == served, filename
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
            assert "sandbox" in resp.headers["Content-Security-Policy"]
            disposition = resp.headers.get("Content-Disposition", "")
            assert disposition.startswith("attachment") == attachment, filename
