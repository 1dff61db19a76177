"""Load worker processes: each holds a slice of the connections and plays its part of a run.

The parent talks to a worker over a pipe: the worker connects its users, answers
``ready``, then serves ``run`` commands until ``stop``. Every send carries its *intended*
time (open loop), so a late generator shows up as latency instead of hiding it. Times are
``time.monotonic()``, one clock for every process on the machine.

A ``pipeline`` run is the exception: one sender writes its messages back to back, never
waiting for an ack, and the times are the ones it wrote them at (see ``PipelineRun``).
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import aiohttp

from benchmarks.load import codec, procstat, wsclient
from benchmarks.load.api import Account, call, login
from benchmarks.load.procstat import SelfMeter

#: The send loop's shortest sleep (seconds): uvloop's timer resolution.
_TICK = 0.001


@dataclass(slots=True)
class Setup:
    """What one worker holds: its users (global index, account) and how to connect them."""

    kind: str  # "traffic" | "idle" | "http"
    users: list[tuple[int, dict[str, str]]]
    api: str = ""
    platforms: tuple[int, ...] = (0,)
    source_addrs: tuple[str, ...] = ()
    connect_concurrency: int = 100


@dataclass(slots=True)
class TrafficRun:
    run_id: int
    kind: str  # "single" | "group"
    senders: list[int]
    user_ids: list[str]
    rate: float
    start_at: float
    warmup: float
    measure: float
    drain: float
    to: str = ""
    group_id: str = ""
    count: int = 0
    expect: int = 0  # group runs: messages every member should receive
    members: int = 0  # group runs: the members are the users with index < members
    payload_bytes: int = 32


@dataclass(slots=True)
class PipelineRun:
    """One sender pipelining ``count`` messages to one online receiver, unpaced.

    The worker holding the sender encodes every frame first, then from ``start_at`` writes
    them back to back (it yields to its readers between frames but never waits for an ack)
    and waits for every ack; the worker holding the receiver waits for every delivery. The
    server's CPU (``pids``) is read just before the first write and at the last delivery.
    A run ends when complete, when nothing arrived for ``stall`` seconds, or ``deadline``
    seconds after ``start_at``.
    """

    run_id: int
    sender: int  # global index of the sending user
    receiver: int  # global index of the receiving user
    receiver_id: str
    count: int
    start_at: float
    pids: tuple[int, ...] = ()
    stall: float = 30.0
    deadline: float = 600.0
    payload_bytes: int = 32


@dataclass(slots=True)
class HttpRun:
    kind: str  # "login" | "get"
    start_at: float
    warmup: float
    measure: float
    concurrency: int


@dataclass(slots=True)
class _Conn:
    index: int
    account: Account
    platform: int = 0
    ws: wsclient.WsClient | None = None
    last_seq: int = 0
    last_send_seq: int = 0
    pending: dict[str, float] = field(default_factory=dict)


def _follow_seq(conn: _Conn, seq: int) -> tuple[int, int]:
    """Record a pushed copy's ``seq`` on its connection (0 means no receive seq): whether it
    went backwards (1 or 0), and how many seqs it skipped."""
    if seq <= 0:
        return 0, 0
    last, conn.last_seq = conn.last_seq, seq
    if seq <= last:
        return 1, 0
    return 0, (seq - last - 1) if last else 0


class _Tally:
    """Everything one traffic run observed in this worker."""

    def __init__(self, run: TrafficRun) -> None:
        self.run = run
        self.prefix = f"{run.run_id}:".encode()
        self.win_start = run.start_at + run.warmup
        self.win_end = self.win_start + run.measure
        self.sent = 0
        self.acked = 0
        self.ack_errors = 0
        self.error_samples: list[str] = []
        self.ack_lat: list[float] = []
        self.recv_lat: list[float] = []
        self.delivered_window = 0
        self.delivered_total = 0
        self.stale = 0
        self.other_frames = 0
        self.acked_keys: list[tuple[int, int]] = []
        self.received_keys: list[tuple[int, int]] = []
        self.group_msgs: dict[int, list[float]] = {}
        self.per_conn: dict[int, int] = {}
        self.order_violations = 0
        self.seq_gaps = 0
        self.send_seq_violations = 0
        self.last_frame = time.monotonic()
        self.cpu_cores = 0.0

    def on_frame(self, conn: _Conn, data: bytes) -> None:
        now = time.monotonic()
        self.last_frame = now
        msg = codec.decode(data)
        kind = msg.msg_type
        if kind == codec.MSG_ACK:
            self._on_ack(conn, msg, now)
        elif kind in (codec.MSG_SINGLE, codec.MSG_GROUP):
            self._on_chat(conn, msg, now)
        else:
            self.other_frames += 1

    def _on_ack(self, conn: _Conn, msg: codec.Msg, now: float) -> None:
        intended = conn.pending.pop(msg.local_id, None)
        if intended is None:
            self.stale += 1
            return
        if msg.content_type == codec.CONTENT_ERROR:
            self.ack_errors += 1
            if len(self.error_samples) < 5:
                self.error_samples.append(msg.content.decode(errors="replace"))
            return
        self.acked += 1
        if msg.send_seq <= conn.last_send_seq:
            self.send_seq_violations += 1
        conn.last_send_seq = msg.send_seq
        if self.win_start <= intended < self.win_end:
            self.ack_lat.append(now - intended)
        if self.run.kind == "single":
            sender, _, j = msg.local_id.partition("-")[2].partition(".")
            self.acked_keys.append((int(sender), int(j)))

    def _on_chat(self, conn: _Conn, msg: codec.Msg, now: float) -> None:
        backwards, gap = _follow_seq(conn, msg.seq)
        self.order_violations += backwards
        self.seq_gaps += gap
        content = msg.content
        if not content.startswith(self.prefix):
            self.stale += 1
            return
        _, sender_raw, j_raw, intended_raw = content.split(b"|", 1)[0].split(b":")
        intended = int(intended_raw) / 1e6
        sender, j = int(sender_raw), int(j_raw)
        self.delivered_total += 1
        if self.win_start <= now < self.win_end:
            self.delivered_window += 1
        if self.win_start <= intended < self.win_end:
            self.recv_lat.append(now - intended)
        if self.run.kind == "single":
            self.received_keys.append((sender, j))
        else:
            self.per_conn[conn.index] = self.per_conn.get(conn.index, 0) + 1
            entry = self.group_msgs.get(j)
            if entry is None:
                self.group_msgs[j] = [1.0, intended, now]
            else:
                entry[0] += 1
                entry[2] = max(entry[2], now)

    def result(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "acked": self.acked,
            "ack_errors": self.ack_errors,
            "error_samples": self.error_samples,
            "ack_lat": self.ack_lat,
            "recv_lat": self.recv_lat,
            "delivered_window": self.delivered_window,
            "delivered_total": self.delivered_total,
            "stale": self.stale,
            "other_frames": self.other_frames,
            "acked_keys": self.acked_keys,
            "received_keys": self.received_keys,
            "group_msgs": self.group_msgs,
            "order_violations": self.order_violations,
            "seq_gaps": self.seq_gaps,
            "send_seq_violations": self.send_seq_violations,
            "cpu_cores": self.cpu_cores,
        }


class _PipeTally:
    """What one pipeline run observed in this worker: per message, when it was written,
    acked and delivered (index = message number ``j``), and the per-sender FIFO checks."""

    def __init__(self, run: PipelineRun) -> None:
        self.run = run
        self.count = run.count
        self.ack_prefix = f"{run.run_id}-{run.sender}."
        self.content_prefix = b"P%d:" % run.run_id
        self.sent = 0
        self.send_errors = 0
        self.sent_at = [0.0] * run.count
        self.ack_at = [0.0] * run.count
        self.recv_at = [0.0] * run.count
        self.acks = 0
        self.ack_errors = 0
        self.error_samples: list[str] = []
        self.error_js: list[int] = []
        self.duplicate_acks = 0
        self.ack_order_violations = 0
        self.last_ack_j = -1
        self.send_seq_violations = 0
        self.delivered = 0
        self.duplicates = 0
        self.delivery_order_violations = 0
        self.last_j = -1
        self.seq_order_violations = 0
        self.seq_gaps = 0
        self.stale = 0
        self.other_frames = 0
        self.last_frame = run.start_at
        self.start: procstat.Snapshot | None = None
        self.end: procstat.Snapshot | None = None

    def on_frame(self, conn: _Conn, data: bytes) -> None:
        now = time.monotonic()
        self.last_frame = now
        msg = codec.decode(data)
        if msg.msg_type == codec.MSG_ACK:
            self._on_ack(conn, msg, now)
        elif msg.msg_type == codec.MSG_SINGLE:
            self._on_chat(conn, msg, now)
        else:
            self.other_frames += 1

    def _on_ack(self, conn: _Conn, msg: codec.Msg, now: float) -> None:
        if not msg.local_id.startswith(self.ack_prefix):
            self.stale += 1
            return
        j = int(msg.local_id[len(self.ack_prefix) :])
        if j >= self.count:
            self.stale += 1
            return
        if self.ack_at[j]:
            self.duplicate_acks += 1
            return
        self.ack_at[j] = now
        if j <= self.last_ack_j:
            self.ack_order_violations += 1
        self.last_ack_j = max(self.last_ack_j, j)
        if msg.content_type == codec.CONTENT_ERROR:
            self.ack_errors += 1
            self.error_js.append(j)
            if len(self.error_samples) < 5:
                self.error_samples.append(msg.content.decode(errors="replace"))
            return
        self.acks += 1
        if msg.send_seq <= conn.last_send_seq:
            self.send_seq_violations += 1
        conn.last_send_seq = msg.send_seq

    def _on_chat(self, conn: _Conn, msg: codec.Msg, now: float) -> None:
        backwards, gap = _follow_seq(conn, msg.seq)
        self.seq_order_violations += backwards
        self.seq_gaps += gap
        content = msg.content
        if not content.startswith(self.content_prefix):
            self.stale += 1
            return
        j = int(content[len(self.content_prefix) : content.index(b"|")])
        if j >= self.count:
            self.stale += 1
            return
        if self.recv_at[j]:
            self.duplicates += 1
            return
        self.recv_at[j] = now
        self.delivered += 1
        if j <= self.last_j:
            self.delivery_order_violations += 1
        self.last_j = max(self.last_j, j)
        if self.delivered == self.count:
            self.end = procstat.snapshot(self.run.pids)

    def frames(self, conn: _Conn) -> list[bytes]:
        """Every frame of the run, encoded before the clock starts."""
        run = self.run
        pad = b"|" + b"x" * max(0, run.payload_bytes - 16)
        now_ms = int(time.time() * 1000)
        return [
            codec.encode(
                codec.Msg(
                    send_id=conn.account.id,
                    receiver_id=run.receiver_id,
                    local_id=f"{self.ack_prefix}{j}",
                    create_time=now_ms,
                    msg_type=codec.MSG_SINGLE,
                    content_type=codec.CONTENT_TEXT,
                    content=self.content_prefix + b"%d" % j + pad,
                    platform=conn.platform,
                )
            )
            for j in range(run.count)
        ]


class Worker:
    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.conns: list[_Conn] = []
        self.by_index: dict[int, _Conn] = {}
        self.sessions: list[aiohttp.ClientSession] = []
        #: Errors raised while handling a received frame (the first few).
        self.reader_errors: list[str] = []
        self.tally: _Tally | _PipeTally | None = None
        self.connect_errors: list[str] = []
        self.closed_by_server = 0
        #: The first server closes, as "closed by the server: CODE REASON".
        self.close_samples: list[str] = []
        self.stopping = False

    async def open(self) -> dict[str, Any]:
        setup = self.setup
        addrs = setup.source_addrs or ("",)
        for addr in addrs:
            connector = aiohttp.TCPConnector(
                limit=0, local_addr=(addr, 0) if addr else None, force_close=False
            )
            timeout = aiohttp.ClientTimeout(total=None, connect=30)
            self.sessions.append(aiohttp.ClientSession(connector=connector, timeout=timeout))
        if setup.kind == "http":
            return {"connected": 0}
        gate = asyncio.Semaphore(setup.connect_concurrency)
        jobs = [
            (index, Account.from_json(raw), platform)
            for index, raw in setup.users
            for platform in setup.platforms
        ]

        async def one(n: int, index: int, account: Account, platform: int) -> None:
            url = f"{account.ws_addr}/{account.id}/conn/{account.id}/{platform}/{account.token}"
            conn = _Conn(index, account, platform)
            async with gate:
                try:
                    conn.ws = await wsclient.connect(
                        url,
                        lambda data: self._on_message(conn, data),
                        lambda code: self._on_closed(conn),
                        local_addr=addrs[n % len(addrs)],
                    )
                except (OSError, TimeoutError) as exc:
                    if len(self.connect_errors) < 5:
                        self.connect_errors.append(f"{type(exc).__name__}: {exc}")
                    else:
                        self.connect_errors.append("")
                    return
            self.conns.append(conn)
            self.by_index.setdefault(index, conn)

        await asyncio.gather(*(one(n, *job) for n, job in enumerate(jobs)))
        return {
            "connected": len(self.conns),
            "failed": len(self.connect_errors),
            "errors": [e for e in self.connect_errors if e][:5],
        }

    def _on_message(self, conn: _Conn, data: bytes) -> None:
        tally = self.tally
        if tally is None:
            return
        try:
            tally.on_frame(conn, data)
        except Exception as exc:  # a frame the tally cannot read: reported, not fatal
            if len(self.reader_errors) < 3:
                self.reader_errors.append(repr(exc))

    def _on_closed(self, conn: _Conn) -> None:
        ws = conn.ws
        if ws is None or self.stopping:
            return
        self.closed_by_server += 1
        if len(self.close_samples) < 5:
            sample = f"closed by the server: {ws.close_code} {ws.close_reason}"
            self.close_samples.append(sample.strip())

    async def traffic(self, run: TrafficRun) -> dict[str, Any]:
        tally = self.tally = _Tally(run)
        senders = [self.by_index[i] for i in run.senders if i in self.by_index]
        meter = asyncio.create_task(self._meter(tally, run.start_at, run.warmup, run.measure))
        if senders and run.rate > 0:
            await self._send_loop(tally, run, senders)
        end = run.start_at + run.warmup + run.measure
        members = [
            c.index for c in self.conns if c.index < run.members and c.index not in run.senders
        ]
        while True:
            now = time.monotonic()
            waiting = any(conn.pending for conn in senders)
            if run.expect:  # a group run: wait for every member to get every message
                waiting = waiting or any(tally.per_conn.get(i, 0) < run.expect for i in members)
            if now >= end + run.drain or (
                now >= end and not waiting and now - tally.last_frame > 0.5
            ):
                break
            await asyncio.sleep(0.05)
        await meter
        self.tally = None
        for conn in senders:
            conn.pending.clear()
        out = tally.result()
        out["closed_by_server"] = self.closed_by_server
        out["close_samples"] = self.close_samples
        out["reader_errors"] = self.reader_errors[:3]
        return out

    @staticmethod
    async def _meter(tally: _Tally, start_at: float, warmup: float, measure: float) -> None:
        await asyncio.sleep(max(0.0, start_at + warmup - time.monotonic()))
        meter = SelfMeter()
        await asyncio.sleep(measure)
        tally.cpu_cores = meter.cores()

    @staticmethod
    async def _send_loop(tally: _Tally, run: TrafficRun, senders: list[_Conn]) -> None:
        n_senders = len(senders)
        n_users = len(run.user_ids)
        limit = run.count or int((run.warmup + run.measure) * run.rate)
        pad = b"|" + b"x" * max(0, run.payload_bytes - 40)
        kind = codec.MSG_GROUP if run.kind == "group" else codec.MSG_SINGLE
        m = 0
        while m < limit:
            now = time.monotonic()
            while m < limit:
                intended = run.start_at + m / run.rate
                if intended > now:
                    break
                conn = senders[m % n_senders]
                j = m // n_senders
                if run.group_id:
                    receiver = run.group_id
                elif run.to:
                    receiver = run.to
                else:
                    receiver = run.user_ids[(conn.index + 1 + j % (n_users - 1)) % n_users]
                local_id = f"{run.run_id}-{conn.index}.{j}"
                content = b"%d:%d:%d:%d" % (run.run_id, conn.index, j, int(intended * 1e6)) + pad
                frame = codec.encode(
                    codec.Msg(
                        send_id=conn.account.id,
                        receiver_id=receiver,
                        local_id=local_id,
                        create_time=int(time.time() * 1000),
                        msg_type=kind,
                        content_type=codec.CONTENT_TEXT,
                        content=content,
                        group_id=run.group_id,
                        platform=conn.platform,
                    )
                )
                conn.pending[local_id] = intended
                m += 1
                tally.sent += 1
                try:
                    assert conn.ws is not None
                    conn.ws.send_bytes(frame)
                except ConnectionError:
                    conn.pending.pop(local_id, None)
            if m < limit:
                # At least one tick: uvloop rounds a timer to whole milliseconds, so a
                # shorter sleep returns at once and the loop would poll until the next
                # message is due (at 2,000 msgs/s a worker then burnt a core doing that).
                # The messages due within a tick go out together, each with its own
                # intended time, so the lateness still counts as latency.
                await asyncio.sleep(max(_TICK, run.start_at + m / run.rate - time.monotonic()))

    async def pipeline(self, run: PipelineRun) -> dict[str, Any]:
        """This worker's part of a pipeline run: the sender's, the receiver's, or both."""
        tally = _PipeTally(run)
        sender = self.by_index.get(run.sender)
        receiving = run.receiver in self.by_index
        frames = tally.frames(sender) if sender is not None else []
        self.tally = tally
        await asyncio.sleep(max(0.0, run.start_at - time.monotonic()))
        meter = SelfMeter()
        tally.last_frame = time.monotonic()
        if sender is not None and sender.ws is not None:
            await self._pipe_send(tally, sender.ws, frames)
        deadline = run.start_at + run.deadline
        while True:
            now = time.monotonic()
            complete = (sender is None or tally.acks + tally.ack_errors >= tally.sent) and (
                not receiving or tally.delivered >= run.count
            )
            if complete or now >= deadline or now - tally.last_frame > run.stall:
                break
            await asyncio.sleep(0.01)
        if receiving and tally.end is None:  # incomplete: the server's CPU up to giving up
            tally.end = procstat.snapshot(run.pids)
        cores = meter.cores()
        self.tally = None
        return {
            "sender": None
            if sender is None
            else {
                "sent": tally.sent,
                "send_errors": tally.send_errors,
                "sent_at": tally.sent_at[: tally.sent],
                "ack_at": tally.ack_at,
                "acked": tally.acks,
                "ack_errors": tally.ack_errors,
                "error_samples": tally.error_samples,
                "error_js": tally.error_js,
                "duplicate_acks": tally.duplicate_acks,
                "ack_order_violations": tally.ack_order_violations,
                "send_seq_violations": tally.send_seq_violations,
                "start": None if tally.start is None else [tally.start.wall, tally.start.cpu],
            },
            "receiver": None
            if not receiving
            else {
                "recv_at": tally.recv_at,
                "delivered": tally.delivered,
                "duplicates": tally.duplicates,
                "delivery_order_violations": tally.delivery_order_violations,
                "seq_order_violations": tally.seq_order_violations,
                "seq_gaps": tally.seq_gaps,
                "end": None if tally.end is None else [tally.end.wall, tally.end.cpu],
            },
            "stale": tally.stale,
            "other_frames": tally.other_frames,
            "cpu_cores": cores,
            "closed_by_server": self.closed_by_server,
            "reader_errors": self.reader_errors[:3],
        }

    @staticmethod
    async def _pipe_send(tally: _PipeTally, ws: wsclient.WsClient, frames: list[bytes]) -> None:
        """Write every frame back to back: no pacing and no waiting for acks; a zero sleep
        every few frames lets this worker's readers take the acks as they come."""
        sent_at = tally.sent_at
        tally.start = procstat.snapshot(tally.run.pids)
        for j, frame in enumerate(frames):
            sent_at[j] = time.monotonic()
            try:
                ws.send_bytes(frame)
            except ConnectionError:
                tally.send_errors += 1
                break
            tally.sent += 1
            if j & 31 == 31:
                await asyncio.sleep(0)

    async def http(self, run: HttpRun) -> dict[str, Any]:
        session = self.sessions[0]
        accounts = [Account.from_json(raw) for _, raw in self.setup.users]
        win_start = run.start_at + run.warmup
        end = win_start + run.measure
        lat: list[float] = []
        errors: list[str] = []
        count = 0

        async def loop(k: int) -> None:
            nonlocal count
            i = k
            while True:
                begin = time.monotonic()
                if begin >= end:
                    return
                account = accounts[i % len(accounts)]
                i += run.concurrency
                try:
                    if run.kind == "login":
                        await login(session, self.setup.api, account)
                    else:
                        path = f"/message/seq/{account.id}"
                        await call(session, self.setup.api, "GET", path, token=account.token)
                except (aiohttp.ClientError, RuntimeError) as exc:
                    errors.append(str(exc)[:200])
                    continue
                done = time.monotonic()
                if win_start <= begin and done < end:
                    count += 1
                    lat.append(done - begin)

        await asyncio.sleep(max(0.0, run.start_at - time.monotonic()))
        meter_task = asyncio.create_task(self._http_meter(win_start, run.measure))
        await asyncio.gather(*(loop(k) for k in range(run.concurrency)))
        cores = await meter_task
        return {
            "count": count,
            "lat": lat,
            "errors": len(errors),
            "error_samples": errors[:3],
            "cpu_cores": cores,
        }

    @staticmethod
    async def _http_meter(win_start: float, measure: float) -> float:
        await asyncio.sleep(max(0.0, win_start - time.monotonic()))
        meter = SelfMeter()
        await asyncio.sleep(measure)
        return meter.cores()

    async def close(self) -> None:
        self.stopping = True
        for conn in self.conns:
            if conn.ws is not None:
                conn.ws.close()
        for session in self.sessions:
            await session.close()


async def _serve(pipe: Connection, setup: Setup) -> None:
    loop = asyncio.get_running_loop()
    worker = Worker(setup)
    try:
        pipe.send(("ready", await worker.open()))
        while True:
            command, arg = await loop.run_in_executor(None, pipe.recv)
            if command == "stop":
                break
            if command == "traffic":
                pipe.send(("result", await worker.traffic(arg)))
            elif command == "pipeline":
                pipe.send(("result", await worker.pipeline(arg)))
            elif command == "http":
                pipe.send(("result", await worker.http(arg)))
            elif command == "count":
                open_ = sum(c.ws is not None and not c.ws.closed for c in worker.conns)
                pipe.send(("result", {"open": open_}))
    finally:
        await worker.close()


def main(pipe: Connection, setup: Setup) -> None:
    """Entry point of a worker process."""
    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(_serve(pipe, setup))
    pipe.close()


class Pool:
    """The parent's handle on its worker processes."""

    def __init__(self, setups: list[Setup]) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._pipes: list[Connection] = []
        self._procs: list[multiprocessing.process.BaseProcess] = []
        for setup in setups:
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=main, args=(child, setup), daemon=True)
            proc.start()
            child.close()
            self._pipes.append(parent)
            self._procs.append(proc)

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self._procs if proc.pid is not None]

    async def _recv(self, pipe: Connection, timeout: float) -> Any:
        loop = asyncio.get_running_loop()

        def wait() -> Any:
            if not pipe.poll(timeout):
                raise TimeoutError("a load worker did not answer in time")
            return pipe.recv()

        _tag, value = await loop.run_in_executor(None, wait)
        return value

    async def ready(self, timeout: float = 300.0) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(self._recv(p, timeout) for p in self._pipes)))

    async def run(self, command: str, args: list[Any], timeout: float) -> list[dict[str, Any]]:
        for pipe, arg in zip(self._pipes, args, strict=True):
            pipe.send((command, arg))
        return list(await asyncio.gather(*(self._recv(p, timeout) for p in self._pipes)))

    async def stop(self) -> None:
        for pipe in self._pipes:
            with contextlib.suppress(OSError):
                pipe.send(("stop", None))
        loop = asyncio.get_running_loop()
        for proc in self._procs:
            await loop.run_in_executor(None, proc.join, 30.0)
            if proc.is_alive():
                proc.kill()
        for pipe in self._pipes:
            pipe.close()
