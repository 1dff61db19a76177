"""Bots end to end (docs/protocol.md, "Bots"): accounts made by the admin commands, friends
auto-accepted or answered over the bot API, messages to the bot POSTed to a webhook
receiver run by the test (signature checked, first attempts failed to see the retries,
dead letters and their replay), answers through ``POST /bot/message`` with idempotency,
groups, a stalled receiver beside another bot's, and no loss across a server restart.
Runs against the embedded server and (``SANDCAT_E2E_TARGET=distributed``) the topology,
whose msg-server runs the webhook worker."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from sandcat import control
from sandcat.admin import run_admin
from sandcat.cli import admin_request, build_parser
from sandcat.config import load_config
from sandcat.errors import SandcatError
from sandcat.ids import nanoid
from tests.client import Api, Socket, User, apply_friend, create_group, pull, until
from tests.conftest import E2E_TARGET, StartServer
from tests.loopback import serve_app
from tests.process import QUICK_WEBHOOKS

Admin = Callable[[str, dict[str, Any]], Awaitable[Any]]
ATTEMPTS = int(QUICK_WEBHOOKS["SANDCAT__BOTS__WEBHOOK_ATTEMPTS"])


@dataclass
class Receiver:
    """A webhook endpoint: records every POST; answers 503 to the next ``fail`` ones (all
    of them while ``down``)."""

    url: str = ""
    posts: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    #: The server ids answered with a 2xx.
    delivered: list[str] = field(default_factory=list)
    fail: int = 0
    down: bool = False
    #: While set and not yet released, each POST waits on it (a receiver that stalls).
    hold: asyncio.Event | None = None
    #: POSTs waiting on ``hold`` now.
    held: int = 0

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.posts.append((dict(request.headers), raw))
        if self.hold is not None:
            self.held += 1
            try:
                await self.hold.wait()
            finally:
                self.held -= 1
        if self.down or self.fail > 0:
            self.fail -= 1
            return web.Response(status=503)
        self.delivered.append(json.loads(raw)["server_id"])
        return web.json_response({})

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(raw) for _, raw in self.posts]

    def posted(self) -> list[str]:
        """The server id of each POST, in order (retries repeat it)."""
        return [json.loads(raw)["server_id"] for _, raw in self.posts]


@contextlib.asynccontextmanager
async def serve_receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    async with serve_app(app) as base:
        rec.url = base + "/hook"
        try:
            yield rec
        finally:
            if rec.hold is not None:
                rec.hold.set()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as rec:
        yield rec


@pytest.fixture
async def other_receiver() -> AsyncIterator[Receiver]:
    async with serve_receiver() as rec:
        yield rec


@pytest.fixture
def admin(request: pytest.FixtureRequest, tmp_path: Path) -> Admin:
    """The admin commands (``sandcat bot ...``) where they run: the embedded server's
    control socket, or PostgreSQL for the topology."""
    if E2E_TARGET == "distributed":
        env = request.getfixturevalue("cluster").topology.base_env
        config = load_config(
            None, environ={k: v for k, v in env.items() if k.startswith("SANDCAT__")}
        ).config
        return lambda op, args: run_admin(config, op, args)
    return lambda op, args: control.request(tmp_path / "data", op, args)


def verify(secret: str, headers: dict[str, str], raw: bytes) -> None:
    """The receiver's side of the signature, written out from docs/protocol.md."""
    timestamp = headers["X-Sandcat-Timestamp"]
    assert abs(time.time() - int(timestamp)) < 300
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + raw, hashlib.sha256)
    assert hmac.compare_digest(headers["X-Sandcat-Signature"], "sha256=" + expected.hexdigest())


async def new_bot(admin: Admin, url: str, auto_accept: bool = True) -> dict[str, Any]:
    name = "bot" + nanoid(8).replace("-", "x")
    return dict(
        await admin("bot.create", {"name": name, "webhook": url, "auto_accept": auto_accept})
    )


async def friends_with_bot(api: Api, user: User, bot: dict[str, Any]) -> None:
    """The user asks the bot; its worker accepts (auto-accept)."""
    await apply_friend(api, user, User(id=bot["id"], email="", password=""))

    async def accepted() -> bool:
        _, changes = await api.call("GET", f"/api/friend/{user.id}/0", token=user.token)
        return any(f["friend_id"] == bot["id"] and f["status"] == 1 for f in changes["friends"])

    # The worker takes a new bot at its next lease round (a third of the lease, 5 s) and
    # then polls; a loaded CI machine has been seen to need more than 15 s for all of it.
    await until(accepted, 30, "the bot accepted the friend request")


async def bot_and_friend(api: Api, admin: Admin, url: str) -> tuple[dict[str, Any], User]:
    """A new bot posting to ``url`` and a new user, alice, its friend (auto-accepted)."""
    bot = await new_bot(admin, url)
    alice = await api.new_user("alice", "alice@example.com")
    await friends_with_bot(api, alice, bot)
    return bot, alice


async def acked(sock: Socket, local_id: str) -> str:
    """The server id of the ack of the message sent with ``local_id``."""
    ack = await sock.recv_until(lambda m: m["msg_type"] == 24 and m["local_id"] == local_id)
    return str(ack["server_id"])


async def bot_send(api: Api, token: str, expect: int = 200, **body: Any) -> Any:
    _, answer = await api.call("POST", "/api/bot/message", token=token, json=body, expect=expect)
    return answer


async def test_bot_chat_signed_retried_and_answered(
    api: Api, admin: Admin, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    bot, alice = await bot_and_friend(api, admin, receiver.url)
    sock = await Socket.connect(session, alice)
    receiver.fail = 2
    await sock.send(send_id=alice.id, receiver_id=bot["id"], local_id="l1", content=b"hello")
    ack = await sock.recv_until(lambda m: m["msg_type"] == 24 and m["local_id"] == "l1")
    await until(lambda: len(receiver.posts) == 3, 15, "two failures and a success")
    for headers, raw in receiver.posts:
        verify(bot["secret"], headers, raw)
        assert headers["X-Sandcat-Delivery"] == ack["server_id"]
    assert [h["X-Sandcat-Attempt"] for h, _ in receiver.posts] == ["1", "2", "3"]
    body = receiver.bodies()[-1]
    assert body["bot_id"] == bot["id"] and body["chat"] == "single"
    assert (body["sender_id"], body["text"]) == (alice.id, "hello")
    assert body["server_id"] == body["message"]["server_id"] == ack["server_id"]
    # A wrong secret does not verify.
    headers, raw = receiver.posts[-1]
    with pytest.raises(AssertionError):
        verify("not-the-secret", headers, raw)

    # The answer goes through the message path: alice's socket gets it, with a seq.
    first = await bot_send(api, bot["token"], receiver_id=alice.id, content="hi", local_id="r1")
    pushed = await sock.recv_until(lambda m: m["msg_type"] == 0 and m["send_id"] == bot["id"])
    assert pushed["server_id"] == first["server_id"] and bytes(pushed["content"]) == b"hi"
    # The same local_id answers the first ack; nothing is stored twice.
    again = await bot_send(api, bot["token"], receiver_id=alice.id, content="hi", local_id="r1")
    assert again["server_id"] == first["server_id"]
    _, seqs = await api.call("GET", f"/api/message/seq/{alice.id}", token=alice.token)
    copies = await pull(api, alice, start=0, end=seqs["seq"])
    from_bot = [m["server_id"] for m in copies if m["send_id"] == bot["id"] and m["msg_type"] == 0]
    assert from_bot == [first["server_id"]]
    me = await api.call("GET", "/api/bot/me", token=bot["token"])
    assert me[1]["id"] == bot["id"]
    _, directory = await api.call("GET", "/api/bot/directory", token=alice.token)
    assert {"id": bot["id"], "name": bot["name"]} in directory
    await sock.close()


async def test_bot_in_a_group(
    api: Api, admin: Admin, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    bot, alice = await bot_and_friend(api, admin, receiver.url)
    group = (await create_group(api, alice, [bot["id"]], name="with a bot"))["info"]
    sock = await Socket.connect(session, alice)
    await sock.send(
        send_id=alice.id,
        receiver_id=group["id"],
        group_id=group["id"],
        msg_type=1,
        local_id="g1",
        content=b"all of you",
    )
    await until(lambda: any(b["chat"] == "group" for b in receiver.bodies()), 15, "group post")
    body = next(b for b in receiver.bodies() if b["chat"] == "group")
    assert (body["group_id"], body["text"]) == (group["id"], "all of you")
    answer = await bot_send(api, bot["token"], group_id=group["id"], content="noted")
    pushed = await sock.recv_until(lambda m: m["msg_type"] == 1 and m["send_id"] == bot["id"])
    assert pushed["server_id"] == answer["server_id"]
    await sock.close()


async def test_dead_letters_and_token_commands(
    api: Api, admin: Admin, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    bot, alice = await bot_and_friend(api, admin, receiver.url)
    sock = await Socket.connect(session, alice)
    receiver.down = True
    await sock.send(send_id=alice.id, receiver_id=bot["id"], local_id="d1", content=b"lost?")
    dead = await acked(sock, "d1")

    async def dead_lettered() -> bool:
        letters = await admin("bot.dead-letters", {"bot": bot["id"]})
        return [letter["server_id"] for letter in letters] == [dead]

    await until(dead_lettered, 15, "the message dead-lettered")
    assert len(receiver.posts) == ATTEMPTS
    letter = (await admin("bot.dead-letters", {"bot": bot["id"]}))[0]
    assert letter["attempts"] == ATTEMPTS and letter["last_error"] == "HTTP 503"
    # The cursor moved past it: the next message is delivered once the receiver is back.
    receiver.down = False
    await sock.send(send_id=alice.id, receiver_id=bot["id"], local_id="d2", content=b"next")
    after = await acked(sock, "d2")
    await until(lambda: receiver.posted()[-1:] == [after], 15, "the next one delivered")
    assert receiver.posted().count(after) == 1

    # Tokens: a user's token is not a bot's; a rotated token replaces the old one at once.
    await bot_send(api, alice.token, 401, receiver_id=alice.id, content="x")
    await bot_send(api, "", 401, receiver_id=alice.id, content="x")
    rotated = await admin("bot.rotate-token", {"bot": bot["id"]})
    await bot_send(api, bot["token"], 401, receiver_id=alice.id, content="x")
    await bot_send(api, rotated["token"], receiver_id=alice.id, content="x")
    # Refusals of the message path, and of the body.
    stranger = await api.new_user("stranger", "stranger@example.com")
    await bot_send(api, rotated["token"], 400, receiver_id=stranger.id, content="x")
    await bot_send(api, rotated["token"], 400, receiver_id=alice.id, group_id="g", content="x")
    await bot_send(api, rotated["token"], 400, receiver_id=alice.id)
    listed = await admin("bot.list", {})
    assert [b["webhook_url"] for b in listed if b["id"] == bot["id"]] == [receiver.url]
    changed = await admin("bot.set-webhook", {"bot": bot["id"], "webhook": ""})
    assert changed["webhook_url"] == ""
    await admin("bot.delete", {"bot": bot["id"]})
    await bot_send(api, rotated["token"], 401, receiver_id=alice.id, content="x")
    await sock.close()


async def test_bot_answers_friend_requests(
    api: Api, admin: Admin, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """Without auto-accept the bot lists its pending requests and accepts or refuses each
    through the user's path: the requester is told as by a user's acceptance."""
    bot = await new_bot(admin, receiver.url, auto_accept=False)
    bot_user = User(id=bot["id"], email="", password="")
    token = bot["token"]
    alice = await api.new_user("alice", "alice@example.com")
    bob = await api.new_user("bob", "bob@example.com")
    sock = await Socket.connect(session, alice)
    asked = await apply_friend(api, alice, bot_user, apply_msg="hello bot")
    await apply_friend(api, bob, bot_user)
    _, pending = await api.call("GET", "/api/bot/friend/requests", token=token)
    by_user = {fs["user_id"]: fs for fs in pending}
    assert set(by_user) == {alice.id, bob.id}
    assert by_user[alice.id]["fs_id"] == asked["fs_id"]
    assert by_user[alice.id]["apply_msg"] == "hello bot"
    # Only the bot's own token; only requests sent to the bot.
    await api.call("GET", "/api/bot/friend/requests", token=alice.token, expect=401)
    mine = await apply_friend(api, bob, alice)
    await api.call("PUT", f"/api/bot/friend/{mine['fs_id']}/agree", token=token, expect=403)

    _, friend = await api.call(
        "PUT",
        f"/api/bot/friend/{asked['fs_id']}/agree",
        token=token,
        json={"resp_msg": "welcome"},
    )
    assert friend["friend_id"] == alice.id
    told = await sock.recv_until(lambda m: m["msg_type"] == 11 and m["send_id"] == bot["id"])
    assert told["receiver_id"] == alice.id
    await api.call("PUT", f"/api/bot/friend/{by_user[bob.id]['fs_id']}/refuse", token=token)
    _, pending = await api.call("GET", "/api/bot/friend/requests", token=token)
    assert pending == []
    # Answered already, or no such request.
    await api.call("PUT", f"/api/bot/friend/{asked['fs_id']}/refuse", token=token, expect=400)
    await api.call("PUT", "/api/bot/friend/nosuch/agree", token=token, expect=404)
    # Friends now: the bot may write to alice, not to bob.
    await bot_send(api, token, receiver_id=alice.id, content="hi alice")
    await bot_send(api, token, 400, receiver_id=bob.id, content="hi bob")
    await sock.close()


async def test_dead_letters_replayed(
    api: Api, admin: Admin, receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    """``sandcat bot replay`` queues dead letters; the worker delivers each again, signed,
    numbered on from its attempts, and removes it only after a 2xx."""
    bot, alice = await bot_and_friend(api, admin, receiver.url)

    async def replay(*ids: int, every: bool = False) -> Any:
        """``sandcat bot replay``'s request, sent where the admin commands run."""
        flags = ["--all"] if every else []
        argv = ["bot", "replay", *flags, "--", bot["id"], *map(str, ids)]
        return await admin(*admin_request(build_parser().parse_args(argv)))

    sock = await Socket.connect(session, alice)
    receiver.down = True
    server_ids = []
    for local_id in ("x1", "x2"):
        await sock.send(send_id=alice.id, receiver_id=bot["id"], local_id=local_id, content=b"?")
        server_ids.append(await acked(sock, local_id))

    async def letters() -> list[dict[str, Any]]:
        return list(await admin("bot.dead-letters", {"bot": bot["id"]}))

    async def dead_lettered() -> bool:
        return {letter["server_id"] for letter in await letters()} == set(server_ids)

    await until(dead_lettered, 15, "both dead-lettered")
    first = next(x for x in await letters() if x["server_id"] == server_ids[0])
    with pytest.raises(SandcatError):
        await replay(first["id"], first["id"] + 1000)
    with pytest.raises(SandcatError):
        await admin("bot.replay", {"bot": bot["id"]})
    assert [x["replay_time"] for x in await letters()] == [0, 0]  # refused as a whole

    # Still down: the replay fails, the letter stays with the attempts added.
    assert (await replay(first["id"]))["queued"] == 1

    async def failed_again() -> bool:
        return any(x["attempts"] == 2 * ATTEMPTS for x in await letters())

    await until(failed_again, 15, "the replay given up")
    assert [x["replay_time"] for x in await letters()] == [0, 0]

    receiver.down = False
    await replay(first["id"])
    await until(lambda: receiver.delivered == [server_ids[0]], 15, "the first replayed")
    headers, raw = receiver.posts[-1]
    verify(bot["secret"], headers, raw)
    assert headers["X-Sandcat-Attempt"] == str(2 * ATTEMPTS + 1)
    assert json.loads(raw)["server_id"] == server_ids[0]

    async def left(expected: list[str]) -> bool:
        return [x["server_id"] for x in await letters()] == expected

    await until(lambda: left([server_ids[1]]), 15, "the first removed")
    assert (await replay(every=True))["queued"] == 1
    await until(lambda: left([]), 15, "the second removed")
    assert receiver.delivered == server_ids
    await sock.close()


async def test_a_stalled_webhook_does_not_delay_another_bot(
    api: Api,
    admin: Admin,
    receiver: Receiver,
    other_receiver: Receiver,
    session: aiohttp.ClientSession,
) -> None:
    """Each bot's deliveries run on their own: while one bot's receiver holds a POST open,
    another bot's messages are delivered."""
    slow, fast = await new_bot(admin, receiver.url), await new_bot(admin, other_receiver.url)
    alice = await api.new_user("alice", "alice@example.com")
    await friends_with_bot(api, alice, slow)
    await friends_with_bot(api, alice, fast)
    sock = await Socket.connect(session, alice)
    receiver.hold = asyncio.Event()
    await sock.send(send_id=alice.id, receiver_id=slow["id"], local_id="s1", content=b"slow")
    stalled = await acked(sock, "s1")
    await until(lambda: receiver.held == 1, 15, "the slow receiver holding a POST")
    sent = []
    for local_id in ("f1", "f2"):
        await sock.send(send_id=alice.id, receiver_id=fast["id"], local_id=local_id, content=b"!")
        sent.append(await acked(sock, local_id))
    # Well within bots.webhook_timeout_seconds (10 s), so the slow POST is still open.
    await until(lambda: other_receiver.delivered == sent, 5, "the other bot's messages")
    assert receiver.held == 1 and receiver.delivered == []
    receiver.hold.set()
    await until(lambda: receiver.delivered == [stalled], 15, "the slow one delivered")
    await sock.close()


@pytest.mark.embedded_only
async def test_no_loss_across_a_restart(
    start_server: StartServer,
    tmp_path: Path,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    codes: Any,
) -> None:
    """A message whose deliveries failed until the server stopped is delivered by the next
    server on the same data (the cursor had not moved); nothing acked is lost."""

    async def admin(op: str, args: dict[str, Any]) -> Any:
        return await control.request(tmp_path / "data", op, args)

    async with start_server(bots__webhook_attempts=1000) as srv:
        api = Api(session, f"http://127.0.0.1:{srv.api_port}", codes)
        bot, alice = await bot_and_friend(api, admin, receiver.url)
        sock = await Socket.connect(session, alice)
        await sock.send(send_id=alice.id, receiver_id=bot["id"], local_id="a", content=b"a")
        first = await acked(sock, "a")
        await until(lambda: receiver.posted() == [first], 15, "the first delivered")
        receiver.down = True
        await sock.send(send_id=alice.id, receiver_id=bot["id"], local_id="b", content=b"b")
        second = await acked(sock, "b")
        await until(lambda: receiver.posted()[-1:] == [second], 15, "a failing attempt")
        await sock.close()
    failed = len(receiver.posts)
    receiver.down = False
    async with start_server(bots__webhook_attempts=1000) as srv:
        api = Api(session, f"http://127.0.0.1:{srv.api_port}", codes)
        await api.login(alice)
        await bot_send(api, bot["token"], receiver_id=alice.id, content="back")
        await until(lambda: len(receiver.posts) > failed, 15, "the retry after the restart")
        await until(lambda: receiver.posted()[-1] == second, 15, "delivered")
    assert set(receiver.posted()) == {first, second}


@pytest.mark.embedded_only
async def test_a_bot_has_a_send_budget(
    start_server: StartServer,
    tmp_path: Path,
    receiver: Receiver,
    session: aiohttp.ClientSession,
    codes: Any,
) -> None:
    """``limits.messages_per_second`` and ``messages_burst`` hold per bot as per connection."""
    async with start_server(limits__messages_per_second=0.01, limits__messages_burst=2) as srv:
        api = Api(session, f"http://127.0.0.1:{srv.api_port}", codes)
        admin = partial(control.request, tmp_path / "data")
        bot, alice = await bot_and_friend(api, admin, "")
        for _ in range(2):
            await bot_send(api, bot["token"], receiver_id=alice.id, content="x")
        await bot_send(api, bot["token"], 429, receiver_id=alice.id, content="x")
