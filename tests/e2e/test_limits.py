"""One test per limit of ``decisions.md`` §5: over the limit is a clear, typed refusal."""

from __future__ import annotations

import asyncio
import base64

import aiohttp
import pytest

from sandcat.adapters.embedded.sqlite import DataDirBusy
from sandcat.gateway.connections import Connection
from sandcat.server import Running
from tests.client import Api, CodeBook, Socket, alice_and_bob, until
from tests.conftest import StartServer


def _api(server_port: int | None, session: aiohttp.ClientSession, codes: CodeBook) -> Api:
    return Api(session, f"http://127.0.0.1:{server_port}", codes)


async def _registered(srv: Running, user_id: str) -> Connection:
    # the handler registers right after its (async) token check
    await until(lambda: bool(srv.apps.registry.connections(user_id)), what="registered")
    return srv.apps.registry.connections(user_id)[0]


async def test_text_bytes(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    async with start_server(limits__text_bytes=10) as srv:
        api = _api(srv.api_port, session, codes)
        alice, bob = await alice_and_bob(api)
        a = await Socket.connect(session, alice)
        await a.send(receiver_id=bob.id, local_id="big", content=b"x" * 11)
        err = await a.recv_until(lambda m: m["msg_type"] == 24)
        assert err["content_type"] == 9 and b"larger than 10 bytes" in err["content"]
        await a.send(receiver_id=bob.id, local_id="ok", content=b"x" * 10)
        assert (await a.recv_until(lambda m: m["msg_type"] == 24))["send_seq"] == 1
        await a.close()


async def test_ws_message_bytes(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    async with start_server(limits__ws_message_bytes=300) as srv:
        api = _api(srv.api_port, session, codes)
        alice, bob = await alice_and_bob(api)
        a = await Socket.connect(session, alice)
        await a.send(receiver_id=bob.id, content=b"x" * 100)
        assert (await a.recv_until(lambda m: m["msg_type"] == 24))["send_seq"] == 1
        await a.send(receiver_id=bob.id, content=b"x" * 400)
        assert await a.expect_close() == 1009


async def test_http_body_bytes(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    async with start_server(limits__http_body_bytes=100) as srv:
        api = _api(srv.api_port, session, codes)
        _, err = await api.call(
            "POST", "/user/login", expect=413, json={"account": "x" * 200, "password": "y"}
        )
        assert err["kind"] == "BadRequest"
        await api.call("POST", "/user/login", expect=401, json={"account": "x", "password": "eQ"})


async def test_upload_bytes(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    async with start_server(limits__upload_bytes=1000) as srv:
        api = _api(srv.api_port, session, codes)
        alice = await api.new_user("alice", "alice@example.com")
        form = aiohttp.FormData()
        form.add_field("file", b"x" * 1001, filename="big.bin")
        _, err = await api.call("POST", "/file/upload", data=form, token=alice.token, expect=413)
        assert err["kind"] == "BadRequest"
        form = aiohttp.FormData()
        form.add_field("file", b"x" * 1000, filename="ok.bin")
        await api.call("POST", "/file/upload", data=form, token=alice.token)


async def test_send_queue_closes_slow_client(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    async with start_server(limits__send_queue_frames=5, limits__send_queue_bytes=1_000_000) as srv:
        api = _api(srv.api_port, session, codes)
        alice, bob = await alice_and_bob(api)
        b = await Socket.connect(session, bob)
        conn = await _registered(srv, bob.id)
        # Fill Bob's queue faster than his writer can drain it: queue frames directly.
        for _ in range(10):
            conn.send(b"\x00" * 10)
        assert await b.expect_close() == 4008
        # Nothing accepted is lost: Bob reconnects and pulls.
        a = await Socket.connect(session, alice)
        await a.send(receiver_id=bob.id, local_id="after", content=b"kept")
        await a.recv_until(lambda m: m["msg_type"] == 24)
        _, pulled = await api.call(
            "POST",
            "/message",
            token=bob.token,
            json={"user_id": bob.id, "send_start": 0, "send_end": 0, "start": 1, "end": 2},
        )
        assert bytes(pulled[0]["content"]) == b"kept"
        await a.close()


async def test_send_queue_bytes(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    async with start_server(limits__send_queue_bytes=100) as srv:
        api = _api(srv.api_port, session, codes)
        bob = await api.new_user("bob", "bob@example.com")
        b = await Socket.connect(session, bob)
        (await _registered(srv, bob.id)).send(b"\x00" * 101)
        assert await b.expect_close() == 4008


async def test_connections_per_ip(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    async with start_server(limits__connections_per_ip=2) as srv:
        api = _api(srv.api_port, session, codes)
        alice, bob = await alice_and_bob(api)
        s1 = await Socket.connect(session, alice, platform=0)
        s2 = await Socket.connect(session, alice, platform=1)
        s3 = await Socket.connect(session, bob)
        assert await s3.expect_close() == 1008
        await s1.close()
        await until(lambda: srv.apps.registry.count_ip("127.0.0.1") == 1, what="slot freed")
        s4 = await Socket.connect(session, bob)
        await s4.send(receiver_id=alice.id, local_id="x", content=b"hi")
        assert (await s4.recv_until(lambda m: m["msg_type"] == 24))["send_seq"] == 1
        await s2.close()
        await s4.close()


async def test_login_per_account(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    async with start_server(limits__login_per_minute_per_account=3) as srv:
        api = _api(srv.api_port, session, codes)
        alice = await api.register("alice", "alice@example.com")
        bad = {"account": alice.email, "password": base64.b64encode(b"no").decode()}
        for _ in range(3):
            await api.call("POST", "/user/login", json=bad, expect=401)
        async with session.post(api.base + "/user/login", json=bad) as resp:
            assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1
            assert (await resp.json())["kind"] == "BadRequest"


async def test_login_per_ip(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    async with start_server(limits__login_per_minute_per_ip=2) as srv:
        api = _api(srv.api_port, session, codes)
        for i in range(2):
            await api.call(
                "POST",
                "/user/login",
                expect=401,
                json={"account": f"u{i}@example.com", "password": "eQ"},
            )
        await api.call(
            "POST",
            "/user/login",
            expect=429,
            json={"account": "other@example.com", "password": "eQ"},
        )


async def test_code_sends_per_email(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    async with start_server(limits__code_sends_per_5_minutes_per_email=2) as srv:
        api = _api(srv.api_port, session, codes)
        for _ in range(2):
            await api.call("POST", "/user/mail/send", json={"email": "x@example.com"})
        _, err = await api.call(
            "POST", "/user/mail/send", json={"email": "x@example.com"}, expect=429
        )
        assert err["kind"] == "BadRequest"
        await api.call("POST", "/user/mail/send", json={"email": "y@example.com"})


async def test_code_sends_per_ip(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    async with start_server(limits__code_sends_per_minute_per_ip=2) as srv:
        api = _api(srv.api_port, session, codes)
        for i in range(2):
            await api.call("POST", "/user/mail/send", json={"email": f"{i}@example.com"})
        await api.call("POST", "/user/mail/send", json={"email": "z@example.com"}, expect=429)


async def test_messages_per_second(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    async with start_server(limits__messages_per_second=1, limits__messages_burst=3) as srv:
        api = _api(srv.api_port, session, codes)
        alice, bob = await alice_and_bob(api)
        a = await Socket.connect(session, alice)
        for i in range(5):
            await a.send(receiver_id=bob.id, local_id=f"m{i}", content=b"x")
        acks = [await a.recv_until(lambda m: m["msg_type"] == 24) for _ in range(5)]
        assert [ack["content_type"] == 9 for ack in acks] == [False] * 3 + [True] * 2
        assert b"rate limited" in acks[3]["content"]
        await a.close()


@pytest.mark.embedded_only
async def test_large_json_bodies_are_read_whole(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    """A body larger than one network read (here ~600 KB) must arrive whole."""
    async with start_server(limits__http_body_bytes=1 << 20) as srv:
        api = _api(srv.api_port, session, codes)
        alice = await api.new_user("alice", "alice@example.com")
        big = {"user_id": alice.id, "msg_id": list(range(10_000)), "pad": "x" * 500_000}
        await api.call("DELETE", "/message", token=alice.token, json=big)


async def test_a_slow_reader_is_closed_and_released(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    """A client that stops reading fills its socket; past the byte limit it is closed with
    4008 and its descriptor and per-address slot are released within the close grace,
    not held until TCP gives up."""
    async with start_server(limits__send_queue_bytes=200_000) as srv:
        api = _api(srv.api_port, session, codes)
        bob = await api.new_user("bob", "bob@example.com")
        sleeper = await Socket.connect(session, bob)  # never reads from here on
        conn = await _registered(srv, bob.id)
        frame = b"\x00" * 60_000
        for _ in range(200):  # ~12 MB: far beyond what socket buffers hold
            conn.send(frame)
            if conn not in srv.apps.registry.all_connections():
                break
            await asyncio.sleep(0)  # let the flush write what is queued
        await until(
            lambda: srv.apps.registry.count_ip("127.0.0.1") == 0, timeout=15, what="released"
        )
        assert not srv.apps.registry.connections(bob.id)
        await sleeper.ws.close()


async def test_server_frames_of_every_length_class_reach_the_client(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    """The gateway frames its own writes (RFC 6455 §5.2): 7-bit, 16-bit and 64-bit payload
    lengths, at their boundaries, arrive intact and in order, several per write."""
    async with start_server(limits__send_queue_bytes=10_000_000) as srv:
        api = _api(srv.api_port, session, codes)
        bob = await api.new_user("bob", "bob@example.com")
        sock = await Socket.connect(session, bob)
        conn = await _registered(srv, bob.id)
        sizes = [0, 1, 125, 126, 127, 65535, 65536, 70000]
        payloads = [bytes([n % 251]) * n for n in sizes]
        for payload in payloads:
            conn.send(payload)
        got = []
        for _ in payloads:
            frame = await sock.ws.receive(timeout=10)
            assert frame.type == aiohttp.WSMsgType.BINARY
            got.append(frame.data)
        assert [len(g) for g in got] == sizes and got == payloads
        await sock.close()


async def test_shutdown_closes_every_socket_with_1001(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    """Stopping the server (SIGTERM ends the same way) sends each client a 1001 close while
    the listeners still run, instead of cutting the sockets (1006)."""
    async with start_server() as srv:
        api = _api(srv.api_port, session, codes)
        bob = await api.new_user("bob", "bob@example.com")
        socks = [await Socket.connect(session, bob, platform=p) for p in (0, 1)]
        await until(lambda: len(srv.apps.registry.connections(bob.id)) == 2, what="both")
        codes_seen = [asyncio.ensure_future(sock.expect_close(timeout=15)) for sock in socks]
    assert await asyncio.gather(*codes_seen) == [1001, 1001]


async def test_a_second_server_on_the_same_data_folder_is_refused(
    start_server: StartServer,
) -> None:
    """Two embedded servers on one folder used to start and then fail alternate sends with
    UNIQUE constraint errors (each caches what it writes): the second is refused at start,
    and the folder is free again once the first has stopped."""
    async with start_server():
        with pytest.raises(DataDirBusy, match="another sandcat process"):
            async with start_server():
                pass
    async with start_server():  # released
        pass
