"""A client that speaks only the public protocol (HTTP JSON + bincode WebSocket)."""

from __future__ import annotations

import asyncio
import base64
import inspect
import json
import os
import re
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests import wire

#: How long the exposed seqs must stay put before a distributed test takes them as final.
SETTLE_SECONDS = 1.0
CODE_LINE = re.compile(r"register_code email=(\S+) code=(\d{6})")


async def until(
    condition: Callable[[], bool | Awaitable[bool]], timeout: float = 10.0, what: str = ""
) -> None:
    """Wait for ``condition`` to hold, checking every 20 ms, failing after ``timeout``:
    a test waits for what it needs, never for a fixed time that a loaded machine may need
    more of."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                result = condition()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"not true after {timeout} s: {what or condition}") from None


class CodeBook:
    """Collects verification codes from log lines (the embedded mailer's output)."""

    def __init__(self) -> None:
        self.codes: dict[str, str] = {}
        self._waiters: list[tuple[str, asyncio.Future[str]]] = []

    def feed(self, line: str) -> None:
        match = CODE_LINE.search(line)
        if match:
            email, code = match.group(1), match.group(2)
            self.codes[email] = code
            for want, fut in list(self._waiters):
                if want == email and not fut.done():
                    fut.set_result(code)

    async def wait(self, email: str, timeout: float = 10.0) -> str:
        if email in self.codes:
            return self.codes.pop(email)
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters.append((email, fut))
        code = await asyncio.wait_for(fut, timeout)
        self.codes.pop(email, None)
        return code


@dataclass
class User:
    id: str
    email: str
    password: str
    token: str = ""
    refresh_token: str = ""
    ws_addr: str = ""
    info: dict[str, Any] = field(default_factory=dict)


class Api:
    def __init__(
        self, session: aiohttp.ClientSession, base: str, codes: CodeBook, tag: str = ""
    ) -> None:
        """``tag`` makes e-mails unique (``a@x`` -> ``a+tag@x``) on a shared server."""
        self.session = session
        self.base = base
        self.codes = codes
        self.tag = tag

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        token: str | None = None,
        data: Any = None,
        expect: int | None = 200,
    ) -> tuple[int, Any]:
        if self.tag and method == "GET" and "/message/seq/" in path:
            return await self._settled(path, token)
        return await self._call(method, path, json=json, token=token, data=data, expect=expect)

    async def _settled(self, path: str, token: str | None) -> tuple[int, Any]:
        """On the distributed topology a sent message is stored asynchronously, so the
        exposed seqs catch up a while after the ack: read until they have not moved for
        ``SETTLE_SECONDS`` (a fixed pair of equal reads was too short on a loaded machine,
        where the msg-server can take longer than one poll to store a batch)."""
        loop = asyncio.get_running_loop()
        last: Any = None
        since = loop.time()
        async with asyncio.timeout(30):
            while True:
                status, body = await self._call(
                    "GET", path, json=None, token=token, data=None, expect=200
                )
                if body != last:
                    last, since = body, loop.time()
                elif loop.time() - since >= SETTLE_SECONDS:
                    return status, body
                await asyncio.sleep(0.1)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        token: str | None,
        data: Any,
        expect: int | None,
    ) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with self.session.request(
            method, self.base + path, json=json, data=data, headers=headers
        ) as resp:
            raw = await resp.read()
            body: Any = raw
            if resp.content_type == "application/json":
                body = await resp.json()
            elif resp.content_type == "text/plain":
                body = raw.decode()
            if expect is not None:
                assert resp.status == expect, (method, path, resp.status, raw[:300])
            return resp.status, body

    async def register(self, name: str, email: str, password: str = "pass-word-1") -> User:
        if self.tag:
            local, _, domain = email.partition("@")
            email = f"{local}+{self.tag}@{domain}"
        await self.call("POST", "/api/user/mail/send", json={"email": email})
        code = await self.codes.wait(email)
        _, info = await self.call(
            "POST",
            "/api/user",
            json={
                "avatar": "avatar1.png",
                "name": name,
                "password": password,
                "email": email,
                "code": code,
            },
        )
        return User(id=info["id"], email=email, password=password, info=info)

    async def login(self, user: User, account: str | None = None) -> dict[str, Any]:
        pwd = base64.b64encode(user.password.encode()).decode().rstrip("=")
        _, body = await self.call(
            "POST", "/api/user/login", json={"account": account or user.email, "password": pwd}
        )
        user.token = body["token"]
        user.refresh_token = body["refresh_token"]
        user.ws_addr = body["ws_addr"]
        return dict(body)

    async def new_user(self, name: str, email: str) -> User:
        user = await self.register(name, email)
        await self.login(user)
        return user


class Socket:
    """One WebSocket connection of a user, with helpers to send and await frames.

    A v2 connection (``connect(..., v2=True)``) also gets JSON events in text frames: they
    are kept for ``event`` while ``recv`` reads messages, and messages read while waiting
    for an event are kept for ``recv``, so neither loses the other's frames."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._msgs: deque[dict[str, Any]] = deque()
        self._events: deque[dict[str, Any]] = deque()

    @classmethod
    async def connect(
        cls,
        session: aiohttp.ClientSession,
        user: User,
        platform: int = 0,
        token: str | None = None,
        *,
        v2: bool = False,
    ) -> Socket:
        url = f"{user.ws_addr}/{user.id}/conn/{user.id}/{platform}/{token or user.token}"
        if v2:
            url += "?v=2"
        sock = cls(await session.ws_connect(url, autoping=True, max_msg_size=0))
        if token is None and os.environ.get("SANDCAT_E2E_TARGET") == "distributed":
            # Across processes, presence is written just after the handshake: wait for it,
            # as a long-connected web client would have, before expecting pushes.
            await sock.ready(user)
        return sock

    async def send(self, **fields: Any) -> None:
        await self.ws.send_bytes(wire.encode(wire.msg(**fields)))

    async def _read(self, timeout: float) -> None:
        """One frame from the socket into ``_msgs`` or ``_events``."""
        frame = await self.ws.receive(timeout=timeout)
        if frame.type == aiohttp.WSMsgType.BINARY:
            self._msgs.append(wire.decode(frame.data))
        elif frame.type == aiohttp.WSMsgType.TEXT:
            self._events.append(json.loads(frame.data))
        elif frame.type in {
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.CLOSING,
            aiohttp.WSMsgType.ERROR,
        }:
            raise ConnectionError(f"closed: {frame.type} {frame.data} {frame.extra}")

    async def recv(self, timeout: float = 5.0) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while not self._msgs:
                await self._read(timeout)
        return self._msgs.popleft()

    async def event(
        self, name: str, pred: Callable[[dict[str, Any]], bool] | None = None, timeout: float = 5.0
    ) -> dict[str, Any]:
        """The ``data`` of the next v2 event called ``name`` (and matching ``pred``);
        events before it that do not match are dropped."""
        async with asyncio.timeout(timeout):
            while True:
                while self._events:
                    event = self._events.popleft()
                    if event["event"] == name and (pred is None or pred(event["data"])):
                        return dict(event["data"])
                await self._read(timeout)

    def events_seen(self) -> list[dict[str, Any]]:
        """The v2 events read so far and not taken by ``event``."""
        return list(self._events)

    async def ready(self, user: User) -> None:
        """Round-trip an empty Read: once it is acked the server has registered this
        connection everywhere (presence included), so unstored relays can reach it."""
        await self.send(msg_type=23, content=wire.read_payload([], user.id))
        await self.recv_until(lambda m: m["msg_type"] == 24 and m["local_id"] == "")

    async def recv_until(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.recv(timeout)
                if pred(frame):
                    return frame

    async def expect_close(self, timeout: float = 5.0) -> int | None:
        """The close code the server sent, as a browser's ``CloseEvent.code`` reports it
        (the code in the close frame, even if the server drops TCP before our reply)."""
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.ws.receive()
                if frame.type == aiohttp.WSMsgType.CLOSE:
                    return int(frame.data)
                if frame.type in {
                    aiohttp.WSMsgType.CLOSED,
                    aiohttp.WSMsgType.CLOSING,
                    aiohttp.WSMsgType.ERROR,
                }:
                    return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()


async def apply_friend(
    api: Api,
    requester: User,
    target: User,
    *,
    apply_msg: str = "hi",
    expect: int = 200,
    path: str = "/api/friend",
) -> dict[str, Any]:
    """``requester`` asks ``target`` for friendship (no remark, source "search"); returns the
    answer (the request, or the error when ``expect`` is an error status)."""
    _, body = await api.call(
        "POST",
        path,
        token=requester.token,
        json={
            "user_id": requester.id,
            "friend_id": target.id,
            "apply_msg": apply_msg,
            "req_remark": None,
            "source": "search",
        },
        expect=expect,
    )
    return dict(body)


async def befriend(api: Api, requester: User, target: User) -> str:
    """``requester`` applies, ``target`` agrees; returns the friendship id.

    Each side receives one notification (10, then 11): one receive seq each, no send seq.
    """
    fs = await apply_friend(api, requester, target)
    await api.call(
        "PUT",
        "/api/friend/agree",
        token=target.token,
        json={"fs_id": fs["fs_id"], "resp_msg": None, "resp_remark": None},
    )
    return str(fs["fs_id"])


async def alice_and_bob(api: Api) -> tuple[User, User]:
    """Two friends (one-to-one chat needs an accepted friendship): Bob's receive seq 1 is
    Alice's request, Alice's receive seq 1 is Bob's acceptance; send seqs stay at 0."""
    alice = await api.new_user("alice", "alice@example.com")
    bob = await api.new_user("bob", "bob@example.com")
    await befriend(api, alice, bob)
    return alice, bob


async def alice_and_two_friends(api: Api) -> tuple[User, User, User]:
    """Alice, Bob and Carol; Alice befriends the other two (``befriend_all``)."""
    alice = await api.new_user("alice", "alice@example.com")
    bob = await api.new_user("bob", "bob@example.com")
    carol = await api.new_user("carol", "carol@example.com")
    await befriend_all(api, alice, [bob, carol])
    return alice, bob, carol


async def create_group(
    api: Api, owner: User, member_ids: list[str], *, name: str, avatar: str = "avatar1.png"
) -> dict[str, Any]:
    """``owner`` creates a group of ``member_ids``; returns the invitation (its ``info``)."""
    _, invitation = await api.call(
        "POST",
        f"/api/group/{owner.id}",
        token=owner.token,
        json={
            "id": "",
            "owner": owner.id,
            "avatar": avatar,
            "group_name": name,
            "members_id": member_ids,
        },
    )
    return dict(invitation)


async def befriend_all(api: Api, user: User, others: list[User]) -> None:
    """``user`` befriends each of ``others`` (two requests each, all at once): a group is
    created with, and members invited from, only the actor's friends."""
    await asyncio.gather(*(befriend(api, user, other) for other in others))


async def pull(
    api: Api, user: User, *, start: int, end: int, send_start: int = 0, send_end: int = 0
) -> list[dict[str, Any]]:
    """``POST /message`` for ``(start, end]`` and ``(send_start, send_end]``."""
    _, messages = await api.call(
        "POST",
        "/api/message",
        token=user.token,
        json={
            "user_id": user.id,
            "start": start,
            "end": end,
            "send_start": send_start,
            "send_end": send_end,
        },
    )
    return list(messages)
