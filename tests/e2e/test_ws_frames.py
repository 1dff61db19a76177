"""The gateway's own WebSocket protocol, byte by byte over a raw socket (RFC 6455): the
upgrade, fragments, pings with a payload, the closing handshake, protocol errors, and the
requests it hands to aiohttp."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os

import aiohttp

from sandcat.server import Running
from tests import wire
from tests.client import Api, CodeBook, User, befriend
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


async def test_upgrade_fragments_pings_and_the_closing_handshake(
    server: Running, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    api = _api(server, session, codes)
    alice = await api.new_user("alice", "alice@example.com")
    bob = await api.new_user("bob", "bob@example.com")
    await befriend(api, alice, bob)
    assert server.ws_port is not None
    sock, head = await Raw.upgrade(server.ws_port, alice)
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
    api = _api(server, session, codes)
    alice = await api.new_user("alice", "alice@example.com")
    bob = await api.new_user("bob", "bob@example.com")
    await befriend(api, alice, bob)
    assert server.ws_port is not None
    sock, _ = await Raw.upgrade(server.ws_port, alice)
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
    api = _api(server, session, codes)
    alice = await api.new_user("alice", "alice@example.com")
    assert server.ws_port is not None
    for bad in (
        frame(0x2, b"unmasked", masked=False),
        frame(0x0, b"a continuation of nothing"),
        frame(0x9, b"a fragmented ping", fin=False),
        frame(0x3, b"a reserved opcode"),
    ):
        sock, _ = await Raw.upgrade(server.ws_port, alice)
        sock.writer.write(bad)
        opcode, payload = await sock.read_data()
        assert (opcode, payload[:2]) == (0x88, (1002).to_bytes(2, "big")), bad
        assert await asyncio.wait_for(sock.reader.read(), 5) == b""
        sock.writer.close()


async def test_other_requests_on_the_gateway_port_are_served_by_aiohttp(
    server: Running, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    api = _api(server, session, codes)
    alice = await api.new_user("alice", "alice@example.com")
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
