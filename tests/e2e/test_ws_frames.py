"""The gateway's own WebSocket protocol, byte by byte over a raw socket (RFC 6455): the
upgrade, fragments, pings with a payload, the closing handshake, protocol errors, and the
requests it hands to aiohttp."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os

import aiohttp
import orjson

from sandcat.gateway.connections import INBOX_PAUSE, Connection
from sandcat.gateway.websocket import MAX_HEAD_BYTES
from sandcat.server import Running
from tests import wire
from tests.client import Api, CodeBook, User, alice_and_bob, until
from tests.conftest import StartServer

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True) -> bytes:
    """A client frame (masked unless told otherwise)."""
    size = len(payload)
    head = bytes((0x80 * fin | opcode,))
    mask_bit = 0x80 if masked else 0
    if size < 126:
        head += bytes((mask_bit | size,))
    else:
        head += bytes((mask_bit | 126,)) + size.to_bytes(2, "big")
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class Raw:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def upgrade(cls, port: int, user: User) -> tuple[Raw, bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        key = base64.b64encode(os.urandom(16))
        writer.write(
            f"GET /ws/{user.id}/conn/{user.id}/0/{user.token} HTTP/1.1\r\nHost: x\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n".encode()
            + b"Sec-WebSocket-Key: "
            + key
            + b"\r\n\r\n"
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        return cls(reader, writer), head.replace(accept, b"<accept>")

    async def read(self) -> tuple[int, bytes]:
        b0, b1 = await asyncio.wait_for(self.reader.readexactly(2), 5)
        size = b1 & 0x7F
        if size == 126:
            size = int.from_bytes(await self.reader.readexactly(2), "big")
        elif size == 127:
            size = int.from_bytes(await self.reader.readexactly(8), "big")
        return b0, await self.reader.readexactly(size)

    async def read_data(self) -> tuple[int, bytes]:
        """The next frame that is not a ping."""
        while (got := await self.read())[0] == 0x89:
            pass
        return got


def _api(server: Running, session: aiohttp.ClientSession, codes: CodeBook) -> Api:
    """The in-process server's API (these tests read its registry, whatever the target)."""
    return Api(session, f"http://127.0.0.1:{server.api_port}", codes)


def _ws_port(server: Running) -> int:
    assert server.ws_port is not None
    return server.ws_port


async def _alice(server: Running, session: aiohttp.ClientSession, codes: CodeBook) -> User:
    return await _api(server, session, codes).new_user("alice", "alice@example.com")


async def _friends(
    server: Running, session: aiohttp.ClientSession, codes: CodeBook
) -> tuple[User, User]:
    return await alice_and_bob(_api(server, session, codes))


async def _closed_by(port: int, user: User, data: bytes) -> tuple[int, bytes, bytes]:
    """``data`` on a fresh socket: the answer's opcode, its close code, and what the socket
    still sends before it ends."""
    sock, _ = await Raw.upgrade(port, user)
    sock.writer.write(data)
    opcode, payload = await sock.read_data()
    rest = await asyncio.wait_for(sock.reader.read(), 5)
    sock.writer.close()
    return opcode, payload[:2], rest


async def test_upgrade_fragments_pings_and_the_closing_handshake(
    server: Running, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    alice, bob = await _friends(server, session, codes)
    sock, head = await Raw.upgrade(_ws_port(server), alice)
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"Sec-WebSocket-Accept: <accept>\r\n" in head
    assert await sock.read() == (0x89, b"")  # the ping right after connect
    sock.writer.write(frame(0x9, b"are you there"))
    assert await sock.read() == (0x8A, b"are you there")
    # One message in three fragments, a ping between two of them.
    body = wire.encode(wire.msg(send_id=alice.id, receiver_id=bob.id, local_id="f1"))
    sock.writer.write(
        frame(0x2, body[:10], fin=False)
        + frame(0x0, body[10:20], fin=False)
        + frame(0x9, b"mid")
        + frame(0x0, body[20:])
    )
    assert await sock.read() == (0x8A, b"mid")
    opcode, payload = await sock.read_data()
    ack = wire.decode(payload)
    assert opcode == 0x82 and ack["msg_type"] == 24 and ack["local_id"] == "f1"
    assert ack["send_seq"] == 1
    # The client closes: the gateway answers with the same code and ends the socket.
    sock.writer.write(frame(0x8, (4321).to_bytes(2, "big") + b"done"))
    assert await sock.read_data() == (0x88, (4321).to_bytes(2, "big"))
    assert await asyncio.wait_for(sock.reader.read(), 5) == b""
    sock.writer.close()


async def test_a_message_in_one_byte_fragments_is_one_message(
    server: Running, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    """Every byte its own frame (and empty continuations between them): reassembled into
    the one message, acked once."""
    alice, bob = await _friends(server, session, codes)
    sock, _ = await Raw.upgrade(_ws_port(server), alice)
    assert await sock.read() == (0x89, b"")
    body = wire.encode(wire.msg(send_id=alice.id, receiver_id=bob.id, local_id="tiny"))
    frames = [frame(0x2, body[:1], fin=False)]
    for byte in body[1:-1]:
        frames += [frame(0x0, bytes((byte,)), fin=False), frame(0x0, b"", fin=False)]
    frames.append(frame(0x0, body[-1:]))
    sock.writer.write(b"".join(frames))
    opcode, payload = await sock.read_data()
    ack = wire.decode(payload)
    assert opcode == 0x82 and ack["msg_type"] == 24 and ack["local_id"] == "tiny"
    assert ack["send_seq"] == 1
    sock.writer.close()


async def test_protocol_errors_close_with_1002(
    server: Running, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    alice = await _alice(server, session, codes)
    for bad in (
        frame(0x2, b"unmasked", masked=False),
        frame(0x0, b"a continuation of nothing"),
        frame(0x9, b"a fragmented ping", fin=False),
        frame(0x3, b"a reserved opcode"),
    ):
        answer = await _closed_by(_ws_port(server), alice, bad)
        assert answer == (0x88, (1002).to_bytes(2, "big"), b""), bad


async def test_other_requests_on_the_gateway_port_are_served_by_aiohttp(
    server: Running, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    alice = await _alice(server, session, codes)
    base = f"http://127.0.0.1:{server.ws_port}"
    async with session.get(f"{base}/ws/{alice.id}/conn/{alice.id}/0/{alice.token}") as resp:
        assert resp.status == 400  # the route without an upgrade
    async with aiohttp.ClientSession() as other, other.get(f"{base}/no/such/path") as resp:
        assert resp.status == 404
    # The 400 closed its connection: the upgrade that follows gets a new one, read by the
    # gateway's protocol (an upgrade is read as a connection's first request only).
    ws = await session.ws_connect(f"{alice.ws_addr}/{alice.id}/conn/{alice.id}/0/{alice.token}")
    assert server.apps.registry.holds(alice.id, 0)
    await ws.close()


async def test_a_socket_without_a_whole_request_head_is_dropped(
    start_server: StartServer,
) -> None:
    async with start_server(limits__http_header_timeout=0.3) as srv:
        reader, writer = await asyncio.open_connection("127.0.0.1", srv.ws_port)
        writer.write(b"GET /ws/a/conn/b/0/c HTTP/1.1\r\nUpgrade: websocket\r\n")  # and no more
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()


def _head(user: User, *lines: str, target: str = "") -> bytes:
    """An upgrade request for ``user`` with these header lines (and no others)."""
    target = target or f"/ws/{user.id}/conn/{user.id}/0/{user.token}"
    return "\r\n".join((f"GET {target} HTTP/1.1", *lines, "", "")).encode()


async def _answer(port: int, head: bytes) -> bytes:
    """The status line the gateway's port answers ``head`` with."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head)
    line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 5)
    writer.close()
    return line


async def test_only_a_well_formed_upgrade_head_is_answered_101(
    server: Running, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    """Token lists, case, repeated list headers and a query string are read as HTTP reads
    them; what HTTP or RFC 6455 forbids (folded or repeated single headers, a space before
    the colon, no Host, a key that is not the base64 of 16 bytes) is aiohttp's 400."""
    alice = await _alice(server, session, codes)
    key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
    version = "Sec-WebSocket-Version: 13"
    good = [
        _head(
            alice, "host: x", "upgrade: WebSocket", "connection: keep-alive, upgrade", key, version
        ),
        _head(
            alice,
            "Host: x",
            "Upgrade: websocket",
            "Connection: keep-alive",
            "Connection: Upgrade",
            key,
            version,
        ),
        _head(
            alice,
            "Host: x",
            "Upgrade: websocket",
            "Connection: Upgrade",
            key,
            version,
            target=f"/ws/{alice.id}/conn/{alice.id}/0/{alice.token}?v=2",
        ),
    ]
    bad = [
        _head(alice, "Host: x", "Upgrade: notwebsocket", "Connection: Upgrade", key, version),
        _head(alice, "Host: x", "Upgrade: websocket", "Connection: upgraded", key, version),
        _head(
            alice,
            "Host: x",
            "X-Note: folded",
            " Upgrade: websocket",
            "Connection: Upgrade",
            key,
            version,
        ),
        _head(alice, "Host: x", "Upgrade : websocket", "Connection: Upgrade", key, version),
        _head(alice, "Upgrade: websocket", "Connection: Upgrade", key, version),
        _head(alice, "Host: x", "Upgrade: websocket", "Connection: Upgrade", key, key, version),
        _head(
            alice,
            "Host: x",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==",
            version,
        ),
        _head(
            alice,
            "Host: x",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAAA",
            version,
        ),  # 18 bytes
    ]
    for head in good:
        assert (await _answer(_ws_port(server), head)).startswith(b"HTTP/1.1 101 "), head
    for head in bad:
        assert (await _answer(_ws_port(server), head)).split(b" ")[1] == b"400", head


async def test_a_close_frame_is_answered_with_its_code_or_the_fault_in_it(
    server: Running, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    """Codes a client may send are echoed; a one-byte payload, a reserved, unassigned or
    out-of-range code is a protocol error (1002), a reason that is not UTF-8 is 1007."""
    alice = await _alice(server, session, codes)
    cases = {
        b"": 1000,
        (1001).to_bytes(2, "big"): 1001,
        (1014).to_bytes(2, "big") + "été".encode(): 1014,
        (3000).to_bytes(2, "big"): 3000,
        (4999).to_bytes(2, "big"): 4999,
        b"\x03": 1002,
        (999).to_bytes(2, "big"): 1002,
        (1004).to_bytes(2, "big"): 1002,
        (1005).to_bytes(2, "big"): 1002,
        (1006).to_bytes(2, "big"): 1002,
        (1015).to_bytes(2, "big"): 1002,
        (2999).to_bytes(2, "big"): 1002,
        (5000).to_bytes(2, "big"): 1002,
        (65535).to_bytes(2, "big"): 1002,
        (1000).to_bytes(2, "big") + b"\xff\xfe": 1007,
    }
    for payload, code in cases.items():
        answer = await _closed_by(_ws_port(server), alice, frame(0x8, payload))
        assert answer == (0x88, code.to_bytes(2, "big"), b""), payload


async def test_a_64_bit_length_with_its_top_bit_set_is_a_protocol_error(
    server: Running, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    alice = await _alice(server, session, codes)
    sock, _ = await Raw.upgrade(_ws_port(server), alice)
    sock.writer.write(b"\x82\xff" + (1 << 63 | 5).to_bytes(8, "big") + os.urandom(4) + b"hello")
    opcode, payload = await sock.read_data()
    assert (opcode, payload[:2]) == (0x88, (1002).to_bytes(2, "big"))
    sock.writer.close()


async def test_pings_from_a_client_that_does_not_read_count_toward_its_send_queue(
    start_server: StartServer, codes: CodeBook
) -> None:
    """Each ping is answered with a pong into the socket's buffer: a client that pings and
    never reads is closed as slow (4008) once the pongs pass the send-queue bound."""
    async with (
        start_server(limits__send_queue_bytes=65536) as srv,
        aiohttp.ClientSession() as session,
    ):
        alice = await _alice(srv, session, codes)
        sock, _ = await Raw.upgrade(_ws_port(srv), alice)
        await until(lambda: srv.apps.registry.holds(alice.id, 0))
        (conn,) = srv.apps.registry.connections(alice.id)
        pings = frame(0x9, b"p" * 125) * 500  # 64 KB of pings, 62 KB of pongs
        sent = 0
        while conn.close_code is None and sent < 64 << 20:
            sock.writer.write(pings)
            await sock.writer.drain()
            sent += len(pings)
        assert conn.close_code == 4008, f"{sent} bytes of pings left it open"
        sock.writer.close()


async def test_an_upgrade_after_a_plain_request_in_the_same_client_session(
    server: Running, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    """The gateway's port answers a plain request with ``Connection: close``, so a client
    that pools connections sends the upgrade that follows on a new one, which the gateway
    reads (a kept-alive one belongs to aiohttp, whose route answers an upgrade 400)."""
    alice = await _alice(server, session, codes)
    async with aiohttp.ClientSession() as client:
        async with client.get(f"http://127.0.0.1:{server.ws_port}/health") as resp:
            assert resp.status == 200
        ws = await client.ws_connect(f"{alice.ws_addr}/{alice.id}/conn/{alice.id}/0/{alice.token}")
        await until(lambda: server.apps.registry.holds(alice.id, 0))
        await ws.close()


async def test_messages_read_ahead_wait_in_the_read_buffer_not_as_objects(
    server: Running, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    """Thousands of tiny messages in one read while the first is being handled: at most
    ``INBOX_PAUSE`` become queued message objects, the rest stay bytes in the read buffer
    (6 bytes each, not a tuple and a bytes object each), and all are handled in order."""
    alice = await _alice(server, session, codes)
    edge = server.apps.gateway_edge
    assert edge is not None
    handled: list[bytes] = []
    gate = asyncio.Event()

    async def message(conn: Connection, opcode: int, payload: bytes) -> None:
        await gate.wait()
        handled.append(payload)

    sock, _ = await Raw.upgrade(_ws_port(server), alice)
    await until(lambda: server.apps.registry.holds(alice.id, 0))
    (conn,) = server.apps.registry.connections(alice.id)
    edge.message = message  # type: ignore[method-assign]
    try:
        count = 5000
        sock.writer.write(b"".join(frame(0x2, i.to_bytes(2, "big")) for i in range(count)))
        await until(lambda: conn._inbox is not None)  # read, the first one being handled
        assert len(conn._inbox or ()) < INBOX_PAUSE and conn._buf is not None
        gate.set()
        await until(lambda: len(handled) == count)
        assert handled == [i.to_bytes(2, "big") for i in range(count)]
    finally:
        del edge.message
    sock.writer.close()


async def test_an_upgrade_head_over_the_head_limit_is_not_read_as_an_upgrade(
    server: Running, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    """A head longer than ``MAX_HEAD_BYTES`` is aiohttp's to refuse, even when it arrives
    whole in one read."""
    alice = await _alice(server, session, codes)
    head = _head(
        alice,
        "Host: x",
        f"X-Pad: {'p' * MAX_HEAD_BYTES}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    )
    assert (await _answer(_ws_port(server), head)).split(b" ")[1] in (b"400", b"431")


async def test_text_is_checked_as_utf_8_across_its_fragments(
    server: Running, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    """A character split between two fragments is valid text; a message whose bytes are
    not UTF-8 once joined is closed with 1007."""
    alice, bob = await _friends(server, session, codes)
    sock, _ = await Raw.upgrade(_ws_port(server), alice)
    msg = wire.msg(send_id=alice.id, receiver_id=bob.id, local_id="é8", content=b"hi")
    msg["content"] = list(msg["content"])
    body = orjson.dumps(msg)
    split = body.index("é".encode()) + 1
    sock.writer.write(frame(0x1, body[:split], fin=False) + frame(0x0, body[split:]))
    opcode, payload = await sock.read_data()
    assert opcode == 0x82 and wire.decode(payload)["local_id"] == "é8"
    sock.writer.write(frame(0x1, b'{"a":"\xc3', fin=False) + frame(0x0, b'("}'))
    opcode, payload = await sock.read_data()
    assert (opcode, payload[:2]) == (0x88, (1007).to_bytes(2, "big"))
    sock.writer.close()
