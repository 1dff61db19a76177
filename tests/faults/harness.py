"""A client stream that runs through a fault, and the checks made on it afterwards.

Each ``Peer`` is one user with one WebSocket that behaves like a patient web client: when
its socket drops it reconnects (logging in again for a fresh ``ws_addr`` when the old
gateway does not answer), and when a send gets no ack or an error ack it resends the same
``local_id`` (resends are idempotent). ``Stream`` runs senders until it is stopped.
``verify`` then pulls every receiver's and sender's boxes and checks that every acked message
is stored exactly once, that pushes agree with the store, that seqs are in order, and that
every seq hole is explained (a failed attempt, or the segment jump after Redis lost its
counters).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests import wire
from tests.client import Api, Socket, User, until

#: Run-wide counts for the closing summary (conftest prints them; docs/reliability.md).
TALLY = {"faults": 0, "acked": 0, "lost": 0, "duplicates": 0}

#: How long one attempt waits for its ack before the client resends.
ACK_TIMEOUT = 8.0
#: A client's pause between failed attempts (its retry pacing, not a wait for a condition).
BACKOFF = 0.2

_NETWORK_ERRORS = (
    ConnectionError,
    TimeoutError,
    aiohttp.ClientError,
    AssertionError,  # an HTTP status other than 200 while a backend is down
    OSError,
)


@dataclass
class Sent:
    """One message a sender tried to deliver, with every attempt's outcome."""

    sender: User
    target: str
    receivers: tuple[str, ...]
    local_id: str
    content: bytes
    group: bool = False
    ack: dict[str, Any] | None = None
    failures: int = 0
    errors: list[str] = field(default_factory=list)


class Peer:
    """One user's resilient connection: reconnects, records pushes and dispatches acks."""

    def __init__(
        self, api: Api, session: aiohttp.ClientSession, user: User, *, stay: bool = False
    ) -> None:
        """``stay``: reconnect as soon as the socket drops (a receiver that never sends)."""
        self.api = api
        self.stay = stay
        self._closing = False
        self._again: asyncio.Task[None] | None = None
        self.session = session
        self.user = user
        self.sock: Socket | None = None
        self.delivered: dict[int, bytes] = {}
        self.reconnects = 0
        self._acks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    @property
    def connected(self) -> bool:
        return self.sock is not None

    async def connect(self, timeout: float = 60.0) -> None:
        """(Re)connect within ``timeout``: the known ``ws_addr`` first, then a new login."""
        async with self._lock, asyncio.timeout(timeout):
            if self.sock is not None:
                return
            first = True
            while True:
                if not first:
                    with contextlib.suppress(*_NETWORK_ERRORS):
                        await self.api.login(self.user)
                first = False
                try:
                    sock = await Socket.connect(self.session, self.user)
                    await self._ready(sock)
                except _NETWORK_ERRORS:
                    await asyncio.sleep(BACKOFF)
                    continue
                self.sock = sock
                self._reader = asyncio.create_task(self._read(sock))
                return

    async def _ready(self, sock: Socket) -> None:
        """The empty Read round trip (registered everywhere), keeping pushes seen meanwhile."""
        await sock.send(msg_type=23, content=wire.read_payload([], self.user.id))
        async with asyncio.timeout(10):
            while True:
                frame = await sock.recv(10)
                if frame["msg_type"] == 24 and frame["local_id"] == "":
                    return
                self._take(frame)

    def _take(self, frame: dict[str, Any]) -> None:
        if frame["msg_type"] == 24:
            fut = self._acks.pop(frame["local_id"], None)
            if fut is not None and not fut.done():
                fut.set_result(frame)
        elif frame["msg_type"] in (0, 1) and frame["seq"]:
            self.delivered[frame["seq"]] = bytes(frame["content"])

    async def _read(self, sock: Socket) -> None:
        try:
            while True:
                self._take(await sock.recv(timeout=3600))
        except (*_NETWORK_ERRORS, asyncio.CancelledError):
            pass
        finally:
            if self.sock is sock:
                self.sock = None
                self.reconnects += 1
            for fut in self._acks.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("socket closed"))
            self._acks.clear()
            with contextlib.suppress(Exception):
                await sock.close()
            if self.stay and not self._closing:
                self._again = asyncio.create_task(self.connect())

    async def send(self, item: Sent) -> dict[str, Any]:
        """One attempt: send and wait for its ack (raises on a drop or a timeout)."""
        await self.connect()
        sock = self.sock
        if sock is None:
            raise ConnectionError("not connected")
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._acks[item.local_id] = fut
        fields: dict[str, Any] = {
            "receiver_id": item.target,
            "local_id": item.local_id,
            "content": item.content,
        }
        if item.group:
            fields.update(group_id=item.target, msg_type=1)
        await sock.send(**fields)
        try:
            return await asyncio.wait_for(fut, ACK_TIMEOUT)
        finally:
            self._acks.pop(item.local_id, None)

    async def close(self) -> None:
        self._closing = True
        if self._again is not None:
            self._again.cancel()
            with contextlib.suppress(BaseException):
                await self._again
        sock, self.sock = self.sock, None
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if sock is not None:
            with contextlib.suppress(Exception):
                await sock.close()


class Stream:
    """Senders sending, each to its targets in turn, until ``stop``."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.sent: list[Sent] = []
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._ids = itertools.count()

    def add_sender(
        self, peer: Peer, targets: Sequence[tuple[str, tuple[str, ...], bool]], pace: float = 0.0
    ) -> None:
        """``targets``: (receiver or group id, the user ids that get a copy, is a group)."""
        self._tasks.append(asyncio.create_task(self._run(peer, targets, pace)))

    def acked(self) -> int:
        return sum(1 for item in self.sent if item.ack is not None)

    async def until_acked(self, more: int, timeout: float, what: str) -> None:
        """Wait for ``more`` acks beyond the current count."""
        goal = self.acked() + more

        def reached() -> bool:
            self._raise_crashed()
            return self.acked() >= goal

        await until(reached, timeout, f"{more} more acks {what}")

    def _raise_crashed(self) -> None:
        for task in self._tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise AssertionError("a sender crashed") from task.exception()

    async def _run(
        self, peer: Peer, targets: Sequence[tuple[str, tuple[str, ...], bool]], pace: float
    ) -> None:
        for index in itertools.count():
            if self._stop.is_set():
                return
            target, receivers, group = targets[index % len(targets)]
            number = next(self._ids)
            item = Sent(
                sender=peer.user,
                target=target,
                receivers=receivers,
                local_id=f"{self.tag}-{number}",
                content=f"{self.tag}:{number}".encode(),
                group=group,
            )
            self.sent.append(item)
            while not self._stop.is_set():
                try:
                    ack = await peer.send(item)
                except _NETWORK_ERRORS as exc:
                    item.failures += 1
                    item.errors.append(type(exc).__name__)
                    await self._pause(BACKOFF)
                    continue
                if ack["content_type"] == 9:  # an error ack: the client tries again
                    item.failures += 1
                    item.errors.append(bytes(ack["content"]).decode(errors="replace"))
                    await self._pause(BACKOFF)
                    continue
                item.ack = ack
                break
            if pace:
                await self._pause(pace)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)


async def pull_box(api: Api, user: User, end: int, *, sent: bool) -> list[dict[str, Any]]:
    """Everything in ``(0, end]`` of the receive (or send) box, page by page."""
    out: list[dict[str, Any]] = []
    start = 0
    key = "send_seq" if sent else "seq"
    while start < end:
        body = {"user_id": user.id, "start": 0, "end": 0, "send_start": 0, "send_end": 0}
        body.update(
            {"send_start": start, "send_end": end} if sent else {"start": start, "end": end}
        )
        _, page = await api.call("POST", "/api/message", token=user.token, json=body)
        if not page:
            break
        out += page
        start = max(int(m[key]) for m in page)
    return out


@dataclass
class Report:
    acked: int
    unacked: int
    failed_attempts: int
    holes: int
    receivers: int


async def verify(
    api: Api,
    users: Sequence[User],
    peers: Sequence[Peer],
    stream: Stream,
    *,
    seq_jumps: int = 0,
    timeout: float = 90.0,
    parallel: int = 16,
) -> Report:
    """Every acked message stored exactly once in each receiver's and its sender's box,
    pushes equal to the store, seqs in order, and seq holes explained.

    ``seq_jumps``: how many runs of missing seqs per box may have any length (the segment
    jump after a Redis loss); other missing seqs must not outnumber the failed or unacked
    attempts that touched the box.
    """
    prefix = f"{stream.tag}:".encode()
    by_id = {user.id: user for user in users}
    delivered = {peer.user.id: peer.delivered for peer in peers}
    expect_rec: dict[str, set[bytes]] = {}
    expect_send: dict[str, set[bytes]] = {}
    burnt_rec: dict[str, int] = {}
    burnt_send: dict[str, int] = {}
    #: Each sender's messages in the order it sent them (one at a time, each acked first).
    order: dict[str, list[bytes]] = {}
    for item in stream.sent:
        order.setdefault(item.sender.id, []).append(item.content)
        burnt = item.failures + (0 if item.ack else 1)
        for receiver in item.receivers:
            burnt_rec[receiver] = burnt_rec.get(receiver, 0) + burnt
            if item.ack is not None:
                expect_rec.setdefault(receiver, set()).add(item.content)
        burnt_send[item.sender.id] = burnt_send.get(item.sender.id, 0) + burnt
        if item.ack is not None:
            expect_send.setdefault(item.sender.id, set()).add(item.content)
    gate = asyncio.Semaphore(parallel)

    async def check(user_id: str) -> int:
        """One user's boxes; returns its seq holes."""
        holes_total = 0
        await gate.acquire()
        user = by_id[user_id]
        boxes: dict[str, list[dict[str, Any]]] = {}

        async def complete(
            user: User = user, user_id: str = user_id, boxes: dict[str, Any] = boxes
        ) -> bool:
            _, seqs = await api.call("GET", f"/api/message/seq/{user.id}", token=user.token)
            boxes["rec"] = await pull_box(api, user, int(seqs["seq"]), sent=False)
            boxes["send"] = await pull_box(api, user, int(seqs["send_seq"]), sent=True)
            have_rec = {bytes(m["content"]) for m in boxes["rec"]}
            have_send = {bytes(m["content"]) for m in boxes["send"]}
            return (
                expect_rec.get(user_id, set()) <= have_rec
                and expect_send.get(user_id, set()) <= have_send
            )

        try:
            await until(complete, timeout, f"every acked message pullable by {user_id}")
        finally:
            gate.release()
        for box, key, expected, burnt in (
            ("rec", "seq", expect_rec.get(user_id, set()), burnt_rec.get(user_id, 0)),
            ("send", "send_seq", expect_send.get(user_id, set()), burnt_send.get(user_id, 0)),
        ):
            rows = boxes[box]
            seqs = [int(m[key]) for m in rows]
            assert len(seqs) == len(set(seqs)), f"{user_id} {box}: a seq given twice: {rows}"
            at = {bytes(m["content"]): int(m[key]) for m in rows}
            for sender_id, contents in order.items():
                mine_in_order = [at[c] for c in contents if c in at]
                assert mine_in_order == sorted(mine_in_order), (
                    f"{user_id} {box}: {sender_id}'s messages out of seq order"
                )
            mine = [bytes(m["content"]) for m in rows if bytes(m["content"]).startswith(prefix)]
            twice = {c for c in mine if mine.count(c) > 1}
            TALLY["duplicates"] += len(twice)
            assert not twice, f"{user_id} {box}: stored more than once: " + ", ".join(
                f"{item.content!r} after {item.errors}"
                for item in stream.sent
                if item.content in twice
            )
            TALLY["lost"] += len(expected - set(mine))
            if box == "rec":
                stored = {int(m["seq"]): bytes(m["content"]) for m in rows}
                for seq, content in delivered.get(user_id, {}).items():
                    if content.startswith(prefix):
                        assert stored.get(seq) == content, f"{user_id}: push {seq} != store"
            holes = _holes(sorted(seqs))
            runs = sorted(holes, key=len, reverse=True)
            unexplained = sum(len(run) for run in runs[seq_jumps:])
            assert unexplained <= burnt, (
                f"{user_id} {box}: {unexplained} seq holes but only {burnt} failed attempts"
            )
            holes_total += sum(len(run) for run in holes)
        return holes_total

    users_checked = sorted(set(expect_rec) | set(expect_send))
    holes_total = sum(await asyncio.gather(*(check(user_id) for user_id in users_checked)))
    acked = stream.acked()
    TALLY["acked"] += acked
    return Report(
        acked=acked,
        unacked=len(stream.sent) - acked,
        failed_attempts=sum(item.failures for item in stream.sent),
        holes=holes_total,
        receivers=len(expect_rec),
    )


def _holes(seqs: Sequence[int]) -> list[range]:
    """The runs of seqs missing below the highest one."""
    runs: list[range] = []
    last = 0
    for seq in seqs:
        if seq > last + 1:
            runs.append(range(last + 1, seq))
        last = seq
    return runs
