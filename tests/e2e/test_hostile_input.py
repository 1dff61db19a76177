"""Hostile input at the HTTP edge: overflowing path integers, broken multipart bodies,
friend-request spam after a denial, and e-mail addresses that differ only in case or change
without proof. Each answer is a 4xx with an error kind, never a 500 (``docs/security.md``)."""

from __future__ import annotations

import asyncio
import struct
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.client import Api, CodeBook, Socket, User, apply_friend, befriend, pull, until
from tests.conftest import StartServer


async def _raw(api: Api, request: bytes) -> tuple[int, bytes]:
    """One request over a bare socket (bodies aiohttp's client would not send)."""
    url = urlsplit(api.base)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        writer.write(request)
        await writer.drain()
        async with asyncio.timeout(10):
            data = await reader.read()
    finally:
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def _upload(user: User, content_type: str, body: bytes) -> bytes:
    head = (
        "POST /api/file/upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
        f"Authorization: Bearer {user.token}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


PART_HEAD = b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a.txt"\r\n'


async def test_overflowing_integer_path_parameters_are_400(api: Api) -> None:
    alice = await api.new_user("alice", "alice@example.com")
    for value in ("99999999999999999999", "-99999999999999999999", "9223372036854775808"):
        _, err = await api.call(
            "GET", f"/api/friend/{alice.id}/{value}", token=alice.token, expect=400
        )
        assert err["kind"] == "PathParsing", value
    await api.call("GET", f"/api/friend/{alice.id}/9223372036854775807", token=alice.token)


async def test_broken_multipart_bodies_are_400_and_store_nothing(api: Api) -> None:
    alice = await api.new_user("alice", "alice@example.com")
    whole = PART_HEAD + b"\r\nhello world\r\n--XX--\r\n"
    cases = {
        "cut before the closing boundary": (
            "multipart/form-data; boundary=XX",
            PART_HEAD + b"\r\nhello world",
        ),
        "cut inside the closing boundary": (
            "multipart/form-data; boundary=XX",
            PART_HEAD + b"\r\nhello world\r\n--X",
        ),
        "no boundary": ("multipart/form-data", whole),
        "a 100 KB part header": (
            "multipart/form-data; boundary=XX",
            PART_HEAD + b"X-Big: " + b"a" * 100_000 + b"\r\n\r\nhello\r\n--XX--\r\n",
        ),
    }
    for case, (content_type, body) in cases.items():
        status, answer = await _raw(api, _upload(alice, content_type, body))
        assert status == 400, (case, answer[:200])
        assert b'"kind":"BodyParsing"' in answer, case
    status, key = await _raw(api, _upload(alice, "multipart/form-data; boundary=XX", whole))
    assert status == 200, key
    _, stored = await api.call("GET", f"/api/file/get/{key.decode()}")
    assert stored == b"hello world"


async def _seq(api: Api, user: User) -> int:
    _, body = await api.call("GET", f"/api/message/seq/{user.id}", token=user.token)
    return int(body["seq"])


async def test_friend_re_applies_are_not_stored_or_pushed_again(api: Api) -> None:
    alice = await api.new_user("alice", "alice@example.com")
    bob = await api.new_user("bob", "bob@example.com")
    first = await apply_friend(api, alice, bob)
    for _ in range(5):
        again = await apply_friend(api, alice, bob)
        assert again["fs_id"] == first["fs_id"] and again["status"] == 0
    assert await _seq(api, bob) == 1  # one notification, not six
    _, pending = await api.call("GET", f"/api/friend/{bob.id}/apply", token=bob.token)
    assert [p["fs_id"] for p in pending] == [first["fs_id"]]

    await api.call("PUT", "/api/friend/deny", token=bob.token, json={"fs_id": first["fs_id"]})
    for _ in range(3):
        err = await apply_friend(api, alice, bob, expect=429)
        assert err["kind"] == "BadRequest" and "denied" in str(err["details"])
    assert await _seq(api, bob) == 1
    _, pending = await api.call("GET", f"/api/friend/{bob.id}/apply", token=bob.token)
    assert pending == []
    # Bob may still ask Alice: the cool-down holds back only the one who was denied.
    await befriend(api, bob, alice)


@pytest.mark.embedded_only  # config keys of an embedded server of its own
async def test_after_the_cool_down_a_denied_user_may_apply_once_more(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    async with start_server(limits__friend_reapply_cooldown_seconds=0) as srv:
        api = Api(session, f"http://127.0.0.1:{srv.api_port}", codes)
        alice = await api.new_user("alice", "alice@example.com")
        bob = await api.new_user("bob", "bob@example.com")
        first = await apply_friend(api, alice, bob)
        await api.call("PUT", "/api/friend/deny", token=bob.token, json={"fs_id": first["fs_id"]})
        renewed = await apply_friend(api, alice, bob)
        assert renewed["fs_id"] == first["fs_id"]
        assert await _seq(api, bob) == 2


async def _code_for(api: Api, email: str) -> str:
    await api.call("POST", "/api/user/mail/send", json={"email": email})
    return await api.codes.wait(email)


async def test_email_is_unique_whatever_its_case_and_changes_only_with_a_code(
    api: Api,
) -> None:
    bob = await api.new_user("bob", "bob@example.com")
    alice = await api.new_user("alice", "alice@example.com")
    variant = bob.email.upper()
    code = await _code_for(api, variant)
    _, err = await api.call(
        "POST",
        "/api/user",
        json={"avatar": "", "name": "eve", "password": "pw", "email": variant, "code": code},
        expect=400,
    )
    assert err["kind"] == "BadRequest" and "already registered" in err["details"]

    profile = {"id": alice.id, "name": "alice", "avatar": "", "gender": ""}
    # PUT /user takes no new address: not another's, not a fresh one.
    for email in (variant, "fresh-" + alice.email):
        _, err = await api.call(
            "PUT", "/api/user", token=alice.token, json={**profile, "email": email}, expect=400
        )
        assert err["kind"] == "BadRequest" and "PUT /user/email" in err["details"]
    # The address it already has (as the web client sends it back, in any case) is fine.
    _, same = await api.call(
        "PUT", "/api/user", token=alice.token, json={**profile, "email": alice.email.upper()}
    )
    assert same["email"] == alice.email

    # The verified route: a code sent to the new address, and not another's address.
    change = {"user_id": alice.id, "email": variant, "code": await _code_for(api, variant)}
    _, err = await api.call("PUT", "/api/user/email", token=alice.token, json=change, expect=400)
    assert "already registered" in err["details"]
    fresh = "fresh-" + alice.email
    _, err = await api.call(
        "PUT",
        "/api/user/email",
        token=alice.token,
        json={"user_id": alice.id, "email": fresh, "code": "000000"},
        expect=400,
    )
    assert err["kind"] in {"CodeIsExpired", "CodeIsInvalid"}
    change = {"user_id": alice.id, "email": fresh, "code": await _code_for(api, fresh)}
    _, moved = await api.call("PUT", "/api/user/email", token=alice.token, json=change)
    assert moved["email"] == fresh
    alice.email = fresh.upper()  # logging in by e-mail ignores case too
    await api.login(alice)


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _closed_within(reader: asyncio.StreamReader, seconds: float) -> bytes:
    """What the server sent before closing the connection, which it must do in time."""
    async with asyncio.timeout(seconds):
        return await reader.read()


@pytest.mark.embedded_only  # config keys of an embedded server of its own
async def test_half_sent_and_silent_connections_are_closed(start_server: StartServer) -> None:
    async with start_server(limits__http_header_timeout=0.5, limits__http_body_timeout=0.5) as srv:
        assert srv.api_port is not None
        silent = await _connect(srv.api_port)
        half_head = await _connect(srv.api_port)
        half_head[1].write(b"POST /api/user/login HTTP/1.1\r\nHost: x\r\nContent-Le")
        half_body = await _connect(srv.api_port)
        half_body[1].write(
            b"POST /api/user/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 100\r\n\r\n{"account": '
        )
        assert await _closed_within(silent[0], 5) == b""
        assert await _closed_within(half_head[0], 5) == b""
        answer = await _closed_within(half_body[0], 5)
        assert answer.startswith(b"HTTP/1.1 408"), answer[:100]
        assert b'"kind":"BadRequest"' in answer
        for _, writer in (silent, half_head, half_body):
            writer.close()


@pytest.mark.embedded_only  # config keys of an embedded server of its own
async def test_http_connections_are_capped_per_address_and_in_all(
    start_server: StartServer,
) -> None:
    async with start_server(limits__http_connections_per_ip=3) as srv:
        assert srv.api_port is not None
        held = [await _connect(srv.api_port) for _ in range(3)]
        reader, writer = await _connect(srv.api_port)
        refused = await _closed_within(reader, 5)
        assert refused.startswith(b"HTTP/1.1 503"), refused[:100]
        assert b'"kind":"BadRequest"' in refused and b"from this address" in refused
        writer.close()
        # A request on a held connection is served; once one closes, a new one is admitted.
        reader, writer = held[0]
        writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await _closed_within(reader, 5)).startswith(b"HTTP/1.1 200")
        writer.close()

        async def admitted() -> bool:
            reader, writer = await _connect(srv.api_port or 0)
            writer.write(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = await _closed_within(reader, 5)
            writer.close()
            return answer.startswith(b"HTTP/1.1 200")

        await until(admitted, what="a slot freed by a closed connection")
        for _, writer in held[1:]:
            writer.close()
    async with start_server(limits__http_connections=2) as srv:
        assert srv.api_port is not None
        held = [await _connect(srv.api_port) for _ in range(2)]
        reader, writer = await _connect(srv.api_port)
        refused = await _closed_within(reader, 5)
        assert refused.startswith(b"HTTP/1.1 503") and b"too many open connections" in refused
        writer.close()
        for _, writer in held:
            writer.close()


async def test_an_unmasked_client_frame_is_closed_with_1002(api: Api) -> None:
    """RFC 6455 §5.1: a server MUST close the connection on an unmasked client frame."""
    alice = await api.new_user("alice", "alice@example.com")
    ws = urlsplit(alice.ws_addr)
    reader, writer = await asyncio.open_connection(ws.hostname, ws.port)
    try:
        upgrade = (
            f"GET {ws.path}/{alice.id}/conn/{alice.id}/0/{alice.token} HTTP/1.1\r\n"
            f"Host: {ws.hostname}:{ws.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        writer.write(upgrade.encode())
        async with asyncio.timeout(10):
            head = await reader.readuntil(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head
        payload = b"\x01\x02\x03"
        writer.write(bytes((0x82, len(payload))) + payload)  # FIN + binary, mask bit clear
        async with asyncio.timeout(10):
            while True:  # skip what the server sends first (pings), up to its close frame
                b0, b1 = await reader.readexactly(2)
                body = await reader.readexactly(b1 & 0x7F)
                if b0 & 0x0F == 0x8:
                    break
        assert struct.unpack("!H", body[:2])[0] == 1002
    finally:
        writer.close()


async def test_a_local_id_reused_for_another_receiver_is_another_message(
    api: Api, session: aiohttp.ClientSession
) -> None:
    """The idempotency key is (sender, conversation, local_id): a resend to the same
    receiver is answered with the first ack, the same local_id to someone else is a new
    message that reaches them (it used to be answered with the first ack, and dropped)."""
    alice = await api.new_user("alice", "alice@example.com")
    bob = await api.new_user("bob", "bob@example.com")
    carol = await api.new_user("carol", "carol@example.com")
    await befriend(api, alice, bob)
    await befriend(api, alice, carol)
    sock = await Socket.connect(session, alice)

    async def send(to: User, text: bytes) -> dict[str, Any]:
        await sock.send(receiver_id=to.id, local_id="same-local-id", content=text)
        return await sock.recv_until(
            lambda m: m["msg_type"] == 24 and m["local_id"] == "same-local-id"
        )

    first = await send(bob, b"for bob")
    again = await send(bob, b"for bob")
    assert (again["server_id"], again["send_seq"]) == (first["server_id"], first["send_seq"])
    other = await send(carol, b"for carol")
    assert other["content_type"] != 9 and other["server_id"] != first["server_id"]
    assert other["send_seq"] == first["send_seq"] + 1
    _, seqs = await api.call("GET", f"/api/message/seq/{carol.id}", token=carol.token)
    got = await pull(api, carol, start=1, end=seqs["seq"])  # seq 1: the friend request
    assert [bytes(m["content"]) for m in got] == [b"for carol"]
    await sock.close()
