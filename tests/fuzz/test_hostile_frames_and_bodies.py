"""A bounded fuzz run at every edge of a real embedded server (Hypothesis, real sockets).

- random and mutated bincode ``Msg`` frames over a WebSocket: every ``msg_type`` and
  ``content_type`` (and unknown ones), lengths up to 2^64-1, truncated fields, invalid
  UTF-8, random bytes;
- JSON bodies with wrong types, sizes and shapes on every HTTP route (the ``/bot`` routes
  with a bot's token, made through the control socket);
- path parameters and query values with traversal sequences, encoded separators and odd
  Unicode, on every route that takes one.

The documented answers are the only ones allowed: a frame gets decodable frames back
(acks, error acks: ``content_type`` 9) and the connection stays up (malformed frames are
counted, ``limits.bad_frames_before_close`` is raised here so one connection takes the whole
run); an HTTP request gets a status below 500 with a JSON error kind. After the run the
server still serves a fresh client and its memory grew by less than ``RSS_GROWTH_MB``.
``SANDCAT_FUZZ_EXAMPLES`` scales the run (``docs/security.md`` records the counts);
the ``ci`` Hypothesis profile is derandomized so a failure replays.
"""

from __future__ import annotations

import json
import os
import struct
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from yarl import URL

from sandcat import control
from sandcat.server import Running
from tests import wire
from tests.client import Api, CodeBook, Socket, User, befriend
from tests.conftest import StartServer
from tests.process import rss_mb

EXAMPLES = int(os.environ.get("SANDCAT_FUZZ_EXAMPLES", "200"))
RSS_GROWTH_MB = 150
settings.register_profile(
    "ci",
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
#: Applied per test (not loaded globally): other suites keep Hypothesis's defaults.
FUZZ = settings.get_profile("ci")

#: What each test sent, for the run's closing line (and docs/security.md).
COUNTS: Counter[str] = Counter()


class World:
    """A running server, two friends on it and a socket of the first."""

    def __init__(
        self, server: Running, api: Api, alice: User, bob: User, sock: Socket, bot_token: str
    ) -> None:
        self.server, self.api, self.alice, self.bob, self.sock = server, api, alice, bob, sock
        self.bot_token = bot_token
        self.sentinels = 0

    def token(self, path: str) -> str:
        """A bot's token on the bot's routes, alice's on every other."""
        bot_route = path.startswith("/bot/") and path != "/bot/directory"
        return self.bot_token if bot_route else self.alice.token

    def path(self, template: str) -> str:
        return template.replace("{u}", self.alice.id).replace("{b}", self.bob.id)


@pytest.fixture
async def world(
    start_server: StartServer,
    session: aiohttp.ClientSession,
    codes: CodeBook,
    tmp_path: Path,
) -> AsyncIterator[World]:
    async with start_server(
        limits__bad_frames_before_close=10**9, limits__ws_message_bytes=1 << 20
    ) as srv:
        api = Api(session, f"http://127.0.0.1:{srv.api_port}", codes)
        alice = await api.new_user("alice", "alice@example.com")
        bob = await api.new_user("bob", "bob@example.com")
        await befriend(api, alice, bob)
        bot = await control.request(
            tmp_path / "data",
            "bot.create",
            {"name": "fuzzbot", "webhook": "", "auto_accept": False},
        )
        sock = await Socket.connect(session, alice)
        rss_before = rss_mb()
        yield World(srv, api, alice, bob, sock, str(bot["token"]))
        # Still serving: a fresh client registers, logs in and is acked on a new socket.
        carol = await api.new_user("carol", "carol@example.com")
        await befriend(api, carol, alice)
        fresh = await Socket.connect(session, carol)
        await fresh.send(receiver_id=alice.id, local_id="after-the-run", content=b"still up")
        ack = await fresh.recv_until(lambda m: m["local_id"] == "after-the-run", timeout=10)
        assert ack["msg_type"] == 24 and ack["content_type"] != 9
        await fresh.close()
        await sock.close()
        growth = rss_mb() - rss_before
        assert growth < RSS_GROWTH_MB, f"RSS grew {growth:.0f} MB during the run"
        print(f"\nfuzz counts: {dict(COUNTS)}; RSS growth {growth:.1f} MB")


# --- bincode frames --------------------------------------------------------------------

LENGTHS = st.sampled_from([0, 1, 7, 8, 255, 2**31 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 1])
TEXT = st.text(max_size=40)
MSG_TYPES = st.one_of(st.integers(-1, 28), st.integers(-(2**31), 2**31 - 1))
CONTENT_TYPES = st.one_of(st.integers(-1, 10), st.integers(-(2**31), 2**31 - 1))
INT64 = st.integers(-(2**63), 2**63 - 1)


@st.composite
def messages(draw: st.DrawFn, world_ids: tuple[str, str]) -> dict[str, Any]:
    alice, bob = world_ids
    party = st.sampled_from([alice, bob, "", "nobody"]) | TEXT
    return wire.msg(
        send_id=draw(st.sampled_from([alice, alice, bob]) | TEXT),
        receiver_id=draw(party),
        local_id=draw(TEXT),
        server_id=draw(TEXT),
        create_time=draw(INT64),
        send_time=draw(INT64),
        seq=draw(INT64),
        msg_type=draw(MSG_TYPES),
        content_type=draw(CONTENT_TYPES),
        content=draw(st.binary(max_size=300)),
        is_read=draw(st.booleans()),
        group_id=draw(st.sampled_from(["", "no-such-group"]) | TEXT),
        platform=draw(st.integers(-(2**31), 2**31 - 1)),
        avatar=draw(TEXT),
        nickname=draw(TEXT),
        related_msg_id=draw(st.none() | TEXT),
        send_seq=draw(INT64),
    )


@st.composite
def mutated(draw: st.DrawFn, frame: bytes) -> bytes:
    """``frame`` truncated, with a length prefix replaced, invalid UTF-8 spliced in, a
    stray boolean or option tag, or bytes flipped."""
    how = draw(st.sampled_from(["truncate", "length", "utf8", "tag", "flip", "append"]))
    if not frame or how == "append":
        return frame + draw(st.binary(min_size=1, max_size=16))
    at = draw(st.integers(0, len(frame) - 1))
    if how == "truncate":
        return frame[:at]
    if how == "length":
        return frame[:at] + struct.pack("<Q", draw(LENGTHS)) + frame[at + 8 :]
    if how == "utf8":
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80"]))
        return frame[:at] + bad + frame[at + len(bad) :]
    if how == "tag":
        return frame[:at] + bytes([draw(st.integers(2, 255))]) + frame[at + 1 :]
    flips = draw(st.lists(st.integers(0, len(frame) - 1), min_size=1, max_size=4))
    data = bytearray(frame)
    for i in flips:
        data[i] ^= 0xFF
    return bytes(data)


async def _exchange(w: World, frames: list[bytes]) -> None:
    """Send ``frames`` then a sentinel Read; everything that comes back before the
    sentinel's ack must be a well-formed frame (the socket stays open)."""
    w.sentinels += 1
    sentinel = f"sentinel-{w.sentinels}"
    for frame in frames:
        await w.sock.ws.send_bytes(frame)
    await w.sock.send(msg_type=23, local_id=sentinel, content=wire.read_payload([], w.alice.id))
    while True:
        got = await w.sock.recv(timeout=10)  # decodes with the test's own codec, or fails
        if got["msg_type"] == 24 and got["local_id"] == sentinel:
            return
        if got["msg_type"] == 24 and got["content_type"] == 9:
            COUNTS["error acks"] += 1


@pytest.mark.timeout(180)  # a loaded machine: the run is bounded by its examples
@FUZZ
@given(data=st.data())
async def test_random_and_mutated_frames_get_documented_answers(
    world: World, data: st.DataObject
) -> None:
    ids = (world.alice.id, world.bob.id)
    frames: list[bytes] = []
    for _ in range(data.draw(st.integers(1, 6))):
        kind = data.draw(st.sampled_from(["valid", "mutated", "random"]))
        if kind == "random":
            frames.append(data.draw(st.binary(max_size=200)))
        else:
            frame = wire.encode(data.draw(messages(ids)))
            frames.append(data.draw(mutated(frame)) if kind == "mutated" else frame)
        COUNTS[f"frames {kind}"] += 1
    await _exchange(world, frames)


async def test_every_msg_type_and_content_type(world: World) -> None:
    """The whole grid once, valid frames from Alice to Bob: each gets its answer."""
    frames = [
        wire.encode(
            wire.msg(
                send_id=world.alice.id,
                receiver_id=world.bob.id,
                local_id=f"grid-{msg_type}-{content_type}",
                msg_type=msg_type,
                content_type=content_type,
                content=b"\x00" * 8,
            )
        )
        for msg_type in range(-1, 29)
        for content_type in range(-1, 11)
    ]
    for start in range(0, len(frames), 40):
        await _exchange(world, frames[start : start + 40])
    COUNTS["frames grid"] += len(frames)


# --- JSON bodies -----------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=12,
)
#: Every route that reads a JSON body (method, path), with the user ``{u}`` acting.
BODY_ROUTES = [
    ("POST", "/user/mail/send"),
    ("POST", "/user"),
    ("POST", "/user/login"),
    ("PUT", "/user/pwd"),
    ("PUT", "/user"),
    ("PUT", "/user/email"),
    ("POST", "/message"),
    ("DELETE", "/message"),
    ("POST", "/friend"),
    ("PUT", "/friend/agree"),
    ("PUT", "/friend/deny"),
    ("DELETE", "/friend"),
    ("PUT", "/friend/remark"),
    ("POST", "/group/member"),
    ("DELETE", "/group/member"),
    ("PUT", "/group/invite"),
    ("POST", "/group/{u}"),
    ("PUT", "/group/{u}"),
    ("DELETE", "/group"),
    ("PUT", "/conversation/{b}"),
    ("PUT", "/conversation/{u}"),
    ("POST", "/conversation/{b}/read"),
    ("POST", "/bot/message"),
    ("PUT", "/bot/friend/{b}/agree"),
    ("PUT", "/bot/friend/{b}/refuse"),
]
FIELDS = [
    "user_id", "id", "friend_id", "fs_id", "group_id", "email", "code", "pwd", "password",
    "account", "name", "avatar", "gender", "owner", "group_name", "members_id", "members",
    "mem_id", "mem_ids", "msg_id", "start", "end", "send_start", "send_end", "remark",
    "apply_msg", "req_remark", "source", "resp_msg", "is_dismiss", "birthday", "phone",
    "platform", "client", "pinned", "muted", "hidden", "seq", "receiver_id", "content",
    "content_type", "local_id", "resp_remark",
]  # fmt: skip


@st.composite
def bodies(draw: st.DrawFn, user_id: str) -> bytes:
    """A JSON body: random JSON, an object of known fields with values of any type (the
    user's own id where it passes authorization), a huge string, or broken JSON."""
    how = draw(st.sampled_from(["json", "fields", "fields", "big", "broken"]))
    if how == "json":  # the standard encoder: integers of any size are valid JSON
        return json.dumps(draw(JSON)).encode()
    if how == "broken":
        return draw(st.binary(max_size=60))
    obj: dict[str, Any] = {
        name: draw(JSON | st.just(user_id))
        for name in draw(st.lists(st.sampled_from(FIELDS), max_size=10, unique=True))
    }
    if how == "big":
        obj[draw(st.sampled_from(FIELDS))] = "x" * draw(st.sampled_from([10_000, 70_000]))
    return json.dumps(obj).encode()


def _assert_documented(method: str, path: str, status: int, raw: bytes) -> None:
    assert status < 500, (method, path, status, raw[:300])
    if status >= 400:
        body = orjson.loads(raw)
        assert isinstance(body, dict) and isinstance(body.get("kind"), str), (path, raw[:300])


@pytest.mark.timeout(180)  # a loaded machine: the run is bounded by its examples
@FUZZ
@given(data=st.data())
async def test_json_bodies_of_every_shape_on_every_route(world: World, data: st.DataObject) -> None:
    w = world
    method, template = data.draw(st.sampled_from(BODY_ROUTES))
    path = "/api" + w.path(template)
    body = data.draw(bodies(w.alice.id))
    headers = {"Authorization": f"Bearer {w.token(template)}", "Content-Type": "application/json"}
    async with w.api.session.request(method, w.api.base + path, data=body, headers=headers) as r:
        _assert_documented(method, path, r.status, await r.read())
    COUNTS["json bodies"] += 1


# --- path parameters -------------------------------------------------------------------

ODD = [
    "..", "../..", "../../etc/passwd", "..%2f..%2fetc%2fpasswd", "%2e%2e%2f%2e%2e", "%00",
    "a%00b", "%ff%fe", "\u202e\u0635", "\U0001f600", "\ufeff", "\u0000", "%", "%zz",
    "C:%5cWindows", "....//....//", ";", "%3Bx", " ", "~", "9" * 30, "-1", "1e3", "\u0661",
    "\u00b2", "%C2%B2",
]  # fmt: skip
PATH_ROUTES = [
    ("GET", "/user/{x}"),
    ("GET", "/user/{u}/search/{x}"),
    ("GET", "/user/refresh_token/{x}/{x}"),
    ("GET", "/friend/query/{x}"),
    ("GET", "/friend/{u}/{x}"),
    ("GET", "/friend/{x}/apply"),
    ("GET", "/group/{u}/{x}"),
    ("GET", "/group/member/{u}/{x}"),
    ("GET", "/message/seq/{x}"),
    ("GET", "/file/get/{x}"),
    ("GET", "/file/avatar/get/{x}"),
    ("GET", "/conversation?since={x}"),
    ("PUT", "/conversation/{x}"),
    ("POST", "/conversation/{x}/read"),
    ("DELETE", "/user/devices/{x}"),
    ("PUT", "/friend/{x}/read"),
    ("PUT", "/bot/friend/{x}/agree"),
    ("PUT", "/bot/friend/{x}/refuse"),
    ("GET", "/user/auth/github?web={x}"),
    ("GET", "/user/auth/github/callback?code={x}&state={x}"),
]


@pytest.mark.timeout(180)  # a loaded machine: the run is bounded by its examples
@FUZZ
@given(data=st.data())
async def test_path_parameters_with_traversal_and_odd_unicode(
    world: World, data: st.DataObject
) -> None:
    w = world
    method, template = data.draw(st.sampled_from(PATH_ROUTES))
    value = data.draw(
        st.sampled_from(ODD)
        | st.text(max_size=20).map(lambda t: t.replace("/", "%2F").replace("?", "%3F"))
    )
    # Sent as written (encoded=True): the server, not the client library, decodes it.
    raw = w.path(template).replace("{x}", value)
    quoted = "".join(c if c.isascii() and c.isprintable() else _pct(c) for c in raw)
    url = URL(w.api.base + "/api" + quoted.replace(" ", "%20"), encoded=True)
    headers = {"Authorization": f"Bearer {w.token(template)}"}
    async with w.api.session.request(method, url, headers=headers) as resp:
        raw_body = await resp.read()
        _assert_documented(method, raw, resp.status, raw_body)
        if template.startswith("/file/") and resp.status == 200:
            assert b"root:" not in raw_body  # never a file outside the store
    COUNTS["paths"] += 1


def _pct(char: str) -> str:
    return "".join(f"%{b:02X}" for b in char.encode("utf-8", "surrogatepass"))
