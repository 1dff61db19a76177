"""The scenarios, run from the parent process: provisioning, worker pools, measurement.

A target is only URLs plus, optionally, the PIDs of the server's processes (for CPU-µs per
unit of work and RSS): the same code drives an embedded server it started, a server it did
not start, or (later) a distributed topology.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.load import procstat
from benchmarks.load.api import Account, ApiError, CodeSource, call, login, register
from benchmarks.load.refusals import Refusals
from benchmarks.load.stats import latency_summary
from benchmarks.load.worker import HttpRun, PipelineRun, Pool, Setup, TrafficRun

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Target:
    """Where the server is: API base URLs (one per gateway process) and optional PIDs."""

    api: tuple[str, ...]
    pids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Timing:
    warmup: float = 1.0
    measure: float = 3.0
    drain: float = 5.0


@dataclass(slots=True)
class Context:
    target: Target
    workers: int = 2
    timing: Timing = field(default_factory=Timing)
    progress: Progress = lambda _: None
    gen_cpu_warn: float = 0.8
    warnings: list[str] = field(default_factory=list)
    refusals: Refusals = field(default_factory=Refusals)
    _run_id: int = 0

    def refused(self, where: str, count: int, samples: Sequence[str]) -> None:
        """Print a step's refusals and errors now, with their cause and the key to change."""
        for line in self.refusals.lines(where, count, samples):
            self.progress(line)

    def next_run(self) -> int:
        self._run_id += 1
        return self._run_id

    def check_generator(self, cores: float, what: str) -> None:
        if cores > self.gen_cpu_warn:
            text = (
                f"{what}: a load worker used {cores:.0%} of a core; the generator may be "
                "the bottleneck (add --workers)"
            )
            self.warnings.append(text)
            self.progress("WARNING " + text)


# ---------------------------------------------------------------- users


def read_users_file(path: Path) -> list[Account]:
    """The JSON that ``sandcat users seed`` prints: ``{"password": ..., "users": [...]}``."""
    data = json.loads(path.read_text(encoding="utf-8"))
    password = data.get("password", "")
    return [
        Account(id=u["id"], email=u["email"], password=u.get("password", password))
        for u in data["users"]
    ]


async def register_users(
    base: str, codes: CodeSource, *, count: int, prefix: str, password: str, concurrency: int = 16
) -> list[Account]:
    """Create ``count`` users through the public API (e-mail code, then ``POST /user``)."""
    gate = asyncio.Semaphore(concurrency)
    stamp = int(time.time())
    async with aiohttp.ClientSession() as session:

        async def one(i: int) -> Account:
            async with gate:
                return await register(
                    session,
                    base,
                    codes,
                    name=f"{prefix}{i}",
                    email=f"{prefix}{stamp}-{i}@bench.example.com",
                    password=password,
                )

        return list(await asyncio.gather(*(one(i) for i in range(count))))


class LoginsFailed(RuntimeError):
    """Some logins of ``login_all`` failed: how many, and some of their errors."""

    def __init__(self, count: int, total: int, samples: list[str]) -> None:
        super().__init__(f"{count} of {total} logins failed: {samples[:1]}")
        self.count = count
        self.samples = samples


async def login_all(
    target: Target, accounts: Sequence[Account], concurrency: int = 64
) -> dict[str, float]:
    """Log every account in (user ``i`` at ``target.api[i % n]``); returns the login rate.
    Raises :class:`LoginsFailed` once every login was tried, if any failed."""
    gate = asyncio.Semaphore(concurrency)
    begin = time.monotonic()
    errors: list[str] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(i: int, account: Account) -> None:
            async with gate:
                try:
                    await login(session, target.api[i % len(target.api)], account)
                except (ApiError, aiohttp.ClientError) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}"[:300])

        await asyncio.gather(*(one(i, a) for i, a in enumerate(accounts)))
    if errors:
        raise LoginsFailed(len(errors), len(accounts), errors[:3])
    elapsed = time.monotonic() - begin
    return {"users": float(len(accounts)), "seconds": elapsed, "per_s": len(accounts) / elapsed}


def _slices(accounts: Sequence[Account], workers: int) -> list[list[tuple[int, dict[str, str]]]]:
    out: list[list[tuple[int, dict[str, str]]]] = [[] for _ in range(workers)]
    for i, account in enumerate(accounts):
        out[i % workers].append((i, account.to_json()))
    return out


async def open_pool(ctx: Context, accounts: Sequence[Account], **setup: Any) -> Pool:
    workers = max(1, min(ctx.workers, len(accounts)))
    pool = Pool([Setup(users=part, **setup) for part in _slices(accounts, workers)])
    answers = await pool.ready()
    connected = sum(int(a.get("connected", 0)) for a in answers)
    failed = sum(int(a.get("failed", 0)) for a in answers)
    if failed:
        errors = [e for a in answers for e in a.get("errors", [])]
        ctx.refused("WebSocket connect", failed, errors)
    ctx.progress(f"{connected} connection(s) open in {len(answers)} worker(s)")
    return pool


# ---------------------------------------------------------------- traffic


class ServerWatch:
    """CPU of the server's processes over the measurement window of a run."""

    def __init__(self, pids: tuple[int, ...]) -> None:
        self.pids = pids
        self.usage: procstat.Usage | None = None

    async def window(self, start: float, length: float) -> None:
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        before = procstat.snapshot(self.pids)
        await asyncio.sleep(length)
        self.usage = procstat.usage(before, procstat.snapshot(self.pids))

    def report(self, units: float) -> dict[str, float | None]:
        if self.usage is None or not self.pids:
            return {"server_cores": None, "server_cpu_us_per_unit": None}
        return {
            "server_cores": self.usage.cores,
            "server_cpu_us_per_unit": self.usage.us_per(units),
        }


async def traffic(
    ctx: Context,
    pool: Pool,
    workers: int,
    user_ids: list[str],
    senders: Sequence[int],
    rate: float,
    *,
    kind: str = "single",
    group_id: str = "",
    to: str = "",
    count: int = 0,
    members: int = 0,
    timing: Timing | None = None,
) -> tuple[list[dict[str, Any]], ServerWatch, Timing]:
    """One open-loop run at ``rate`` msgs/s spread over ``senders``; raw worker results."""
    timing = timing or ctx.timing
    run_id = ctx.next_run()
    start_at = time.monotonic() + 0.3
    per_worker: list[list[int]] = [[] for _ in range(workers)]
    for s in senders:
        per_worker[s % workers].append(s)
    runs = [
        TrafficRun(
            run_id=run_id,
            kind=kind,
            senders=mine,
            user_ids=user_ids,
            rate=rate * len(mine) / len(senders),
            start_at=start_at,
            warmup=timing.warmup,
            measure=timing.measure,
            drain=timing.drain,
            to=to,
            group_id=group_id,
            count=round(count * len(mine) / len(senders)) if count else 0,
            expect=count if kind == "group" else 0,
            members=members,
        )
        for mine in per_worker
    ]
    watch = ServerWatch(ctx.target.pids)
    window = asyncio.create_task(watch.window(start_at + timing.warmup, timing.measure))
    total = timing.warmup + timing.measure + timing.drain + 60.0
    results = await pool.run("traffic", list(runs), timeout=total)
    await window
    for res in results:
        ctx.check_generator(float(res["cpu_cores"]), f"{kind} at {rate:.0f}/s")
    return results, watch, timing


def chat_summary(
    offered: float, results: list[dict[str, Any]], watch: ServerWatch, timing: Timing
) -> dict[str, Any]:
    """Throughput, latencies and the loss / duplicate / order check of a one-to-one run."""
    acked = Counter(k for r in results for k in r["acked_keys"])
    received = Counter(k for r in results for k in r["received_keys"])
    delivered = sum(int(r["delivered_window"]) for r in results)
    out: dict[str, Any] = {
        "offered_per_s": offered,
        "sent": sum(int(r["sent"]) for r in results),
        "acked": sum(int(r["acked"]) for r in results),
        "ack_errors": sum(int(r["ack_errors"]) for r in results),
        "error_samples": [e for r in results for e in r["error_samples"]][:3],
        "delivered_per_s": delivered / timing.measure,
        "ack_latency": latency_summary(x for r in results for x in r["ack_lat"]),
        "e2e_latency": latency_summary(x for r in results for x in r["recv_lat"]),
        "lost": sum(1 for k in acked if k not in received),
        "duplicates": sum(n - 1 for n in received.values() if n > 1),
        "order_violations": sum(int(r["order_violations"]) for r in results)
        + sum(int(r["send_seq_violations"]) for r in results),
        "seq_gaps": sum(int(r["seq_gaps"]) for r in results),
        "closed_by_server": max(int(r["closed_by_server"]) for r in results),
        "close_samples": [e for r in results for e in r["close_samples"]][:3],
        "generator_max_core": max(float(r["cpu_cores"]) for r in results),
        "reader_errors": [e for r in results for e in r["reader_errors"]][:3],
    }
    out.update(watch.report(delivered))
    return out


def healthy(summary: dict[str, Any], slo_ms: float) -> bool:
    """A rate the server sustains: ≥ 95 % delivered, no errors, p99 within ``slo_ms``."""
    return bool(
        summary["delivered_per_s"] >= 0.95 * summary["offered_per_s"]
        and summary["ack_errors"] == 0
        and summary["lost"] == 0
        and summary["e2e_latency"]["p99_ms"] <= slo_ms
    )


# ---------------------------------------------------------------- (a) one-to-one


async def one_to_one(
    ctx: Context,
    accounts: Sequence[Account],
    *,
    senders: int,
    start_rate: float,
    max_rate: float,
    slo_ms: float,
    repeats: int,
    find_max: bool = True,
    min_rate: float = 50.0,
) -> dict[str, Any]:
    """N connected users, K senders: a find-max search, a latency curve, repeats at 75 %."""
    if len(accounts) < 2:
        raise ValueError("one-to-one needs at least two users")
    user_ids = [a.id for a in accounts]
    pool = await open_pool(ctx, accounts, kind="traffic")
    workers = min(ctx.workers, len(accounts))
    sender_ids = list(range(min(senders, len(accounts))))
    probes: list[dict[str, Any]] = []
    closed = 0  # connections the server has closed so far (the workers count them all along)

    async def probe(rate: float, stage: str) -> dict[str, Any]:
        nonlocal closed
        results, watch, timing = await traffic(ctx, pool, workers, user_ids, sender_ids, rate)
        summary = chat_summary(rate, results, watch, timing)
        summary["stage"] = stage
        probes.append(summary)
        ctx.progress(
            f"one-to-one {stage} offered {rate:.0f}/s: "
            f"delivered {summary['delivered_per_s']:.0f}/s "
            f"p99 {summary['e2e_latency']['p99_ms']:.1f} ms "
            f"lost {summary['lost']} dup {summary['duplicates']}"
        )
        where = f"one-to-one at {rate:.0f}/s"
        ctx.refused(where, summary["ack_errors"], summary["error_samples"])
        ctx.refused(where, len(summary["reader_errors"]), summary["reader_errors"])
        if summary["closed_by_server"] > closed:
            new = summary["closed_by_server"] - closed
            closed = summary["closed_by_server"]
            ctx.refused(where, new, summary["close_samples"])
        return summary

    try:
        best = start_rate
        if find_max:
            rate, bad = start_rate, 0.0
            while rate <= max_rate:
                if not healthy(await probe(rate, "search"), slo_ms):
                    bad = rate
                    break
                best = rate
                rate *= 2
            if bad == start_rate:  # the first rate was already too high: halve until healthy
                while best > min_rate:
                    best /= 2
                    if healthy(await probe(best, "search"), slo_ms):
                        break
                    bad = best
            for _ in range(2 if bad else 0):
                middle = (best + bad) / 2
                if healthy(await probe(middle, "search"), slo_ms):
                    best = middle
                else:
                    bad = middle
        for fraction in (0.25, 0.5):
            await probe(best * fraction, "curve")
        at75 = [await probe(best * 0.75, "curve") for _ in range(max(1, repeats))]
        for fraction in (1.0, 1.25) if find_max else ():
            await probe(best * fraction, "curve")
    finally:
        await pool.stop()
    sustained = [p for p in probes if healthy(p, slo_ms)]
    return {
        "users": len(accounts),
        "senders": len(sender_ids),
        "slo_ms": slo_ms,
        "max_offered_per_s": best,
        "max_delivered_per_s": max((p["delivered_per_s"] for p in sustained), default=0.0),
        "at_75pct": at75,
        "probes": probes,
    }


# ---------------------------------------------------------------- (a') pipelined one-to-one


async def pipeline(
    ctx: Context,
    accounts: Sequence[Account],
    *,
    messages: int,
    repeats: int,
    stall: float = 30.0,
) -> dict[str, Any]:
    """One sender pipelines ``messages`` to one online receiver (accounts[0] → accounts[1]).

    No pacing: the sender writes every message as fast as it can and never waits for an ack
    in between, then the run waits (bounded) for every ack and every delivery. The server's
    CPU is read from the first write to the last delivery; repeated ``repeats`` times on
    the same two connections (held by two workers when ``ctx.workers`` ≥ 2).
    """
    if len(accounts) < 2:
        raise ValueError("pipeline needs two users")
    if messages < 1:
        raise ValueError("pipeline needs at least one message")
    pair = list(accounts[:2])
    pool = await open_pool(ctx, pair, kind="traffic")
    workers = len(pool.pids)
    runs: list[dict[str, Any]] = []
    try:
        for _ in range(max(1, repeats)):
            run = PipelineRun(
                run_id=ctx.next_run(),
                sender=0,
                receiver=1,
                receiver_id=pair[1].id,
                count=messages,
                # the sender encodes its frames before this
                start_at=time.monotonic() + 0.5 + messages / 100_000,
                pids=ctx.target.pids,
                stall=stall,
                deadline=120.0 + messages / 100,
            )
            results = await pool.run("pipeline", [run] * workers, timeout=run.deadline + 60.0)
            row = pipeline_summary(messages, results, watched=bool(ctx.target.pids))
            runs.append(row)
            cpu = row["server_cpu_us_per_unit"]
            ctx.progress(
                f"pipeline {messages:,} msgs: delivered {row['delivered_per_s']:,.0f}/s "
                f"in {row['wall_seconds']:.2f} s, server CPU "
                f"{'–' if cpu is None else f'{cpu:,.1f}'} µs/msg, "
                f"lost {row['lost']} unacked {row['unacked']} dup {row['duplicates']} "
                f"order {row['order_violations']}"
            )
            ctx.refused("pipeline", row["ack_errors"], row["error_samples"])
            await asyncio.sleep(0.3)
    finally:
        await pool.stop()
    return {"messages": messages, "senders": 1, "receivers": 1, "runs": runs}


def pipeline_summary(
    messages: int, results: list[dict[str, Any]], *, watched: bool = True
) -> dict[str, Any]:
    """One pipeline run from its workers' parts: throughput, server CPU, latencies, checks."""
    send = next(r["sender"] for r in results if r["sender"] is not None)
    recv = next(r["receiver"] for r in results if r["receiver"] is not None)
    sent_at: list[float] = send["sent_at"]
    ack_at: list[float] = send["ack_at"]
    recv_at: list[float] = recv["recv_at"]
    sent = len(sent_at)
    refused = set(send["error_js"])
    answered = [j for j in range(sent) if ack_at[j]]
    acked_ok = [j for j in answered if j not in refused]
    first = sent_at[0] if sent_at else 0.0
    last = max(recv_at, default=0.0)
    wall = last - first if sent_at and last > first else 0.0
    delivered = int(recv["delivered"])
    out: dict[str, Any] = {
        "messages": messages,
        "sent": sent,
        "send_errors": int(send["send_errors"]),
        "acked": int(send["acked"]),
        "ack_errors": int(send["ack_errors"]),
        "error_samples": send["error_samples"][:3],
        "unacked": sent - len(answered),
        "delivered": delivered,
        "complete": delivered == messages and int(send["acked"]) == messages,
        "send_seconds": sent_at[-1] - first if sent_at else 0.0,
        "wall_seconds": wall,
        "delivered_per_s": delivered / wall if wall else 0.0,
        "ack_latency": latency_summary(ack_at[j] - sent_at[j] for j in answered),
        "e2e_latency": latency_summary(recv_at[j] - sent_at[j] for j in range(sent) if recv_at[j]),
        "lost": sum(1 for j in acked_ok if not recv_at[j]),  # acked (no error), not delivered
        "duplicates": int(recv["duplicates"]),
        "duplicate_acks": int(send["duplicate_acks"]),
        "ack_order_violations": int(send["ack_order_violations"]),
        "delivery_order_violations": int(recv["delivery_order_violations"]),
        "send_seq_violations": int(send["send_seq_violations"]),
        "seq_order_violations": int(recv["seq_order_violations"]),
        "seq_gaps": int(recv["seq_gaps"]),
        "closed_by_server": max(int(r["closed_by_server"]) for r in results),
        "generator_max_core": max(float(r["cpu_cores"]) for r in results),
        "reader_errors": [e for r in results for e in r["reader_errors"]][:3],
        "server_cores": None,
        "server_cpu_us_per_unit": None,
    }
    out["order_violations"] = sum(
        out[k]
        for k in (
            "ack_order_violations",
            "delivery_order_violations",
            "send_seq_violations",
            "seq_order_violations",
        )
    )
    start, end = send["start"], recv["end"]
    if watched and start is not None and end is not None:
        use = procstat.Usage(end[0] - start[0], end[1] - start[1])
        if use.seconds > 0:
            out["server_cores"] = use.cores
            out["server_cpu_us_per_unit"] = use.us_per(delivered)
    return out


# ---------------------------------------------------------------- (b) group fan-out


async def make_groups(
    ctx: Context, accounts: Sequence[Account], sizes: Sequence[int]
) -> dict[int, str]:
    """One group per size, owned by account 0 (members: accounts[:size]), made through the
    public API; a size the server refuses is left out with a warning."""
    owner = accounts[0]
    groups: dict[int, str] = {}
    async with aiohttp.ClientSession() as session:
        for size in sizes:
            body = {
                "id": "",
                "owner": owner.id,
                "avatar": "",
                "group_name": f"bench-{size}",
                "members_id": [a.id for a in accounts[1:size]],
            }
            try:
                made = await call(
                    session,
                    ctx.target.api[0],
                    "POST",
                    f"/group/{owner.id}",
                    json_body=body,
                    token=owner.token,
                )
            except ApiError as exc:
                ctx.warnings.append(f"group of {size} not created: {exc}")
                ctx.refused(f"group of {size} not created", 1, [str(exc)])
                continue
            groups[size] = made["info"]["id"]
    return groups


async def group_fanout(
    ctx: Context,
    accounts: Sequence[Account],
    groups: dict[int, str],
    *,
    burst_deliveries: int,
    repeats: int,
) -> dict[str, Any]:
    """Account 0 owns one group per size (its members are accounts[:size]), all online."""
    largest = max(groups)
    members = list(accounts[:largest])
    user_ids = [a.id for a in members]
    pool = await open_pool(ctx, members, kind="traffic")
    workers = min(ctx.workers, len(members))
    out: dict[str, Any] = {}
    try:
        for size, group_id in sorted(groups.items()):
            expected = size - 1
            rows: list[dict[str, Any]] = []
            for _ in range(max(1, repeats)):
                burst = max(3, burst_deliveries // expected)
                for mode, count, rate in (("single", 3, 2.0), ("burst", burst, burst / 0.5)):
                    timing = Timing(warmup=0.0, measure=count / rate + 0.05, drain=120.0)
                    before = procstat.snapshot(ctx.target.pids)
                    started = time.monotonic() + 0.3
                    results, _, _ = await traffic(
                        ctx,
                        pool,
                        workers,
                        user_ids,
                        [0],
                        rate,
                        kind="group",
                        group_id=group_id,
                        count=count,
                        members=size,
                        timing=timing,
                    )
                    after = procstat.snapshot(ctx.target.pids)
                    rows.append(_fanout_row(mode, size, count, expected, started, results))
                    if mode == "burst" and ctx.target.pids:
                        use = procstat.usage(before, after)
                        delivered = rows[-1]["deliveries"]
                        rows[-1]["server_cpu_us_per_unit"] = use.us_per(delivered)
                        rows[-1]["deliveries_per_core_s"] = (
                            delivered / use.cpu_seconds if use.cpu_seconds else None
                        )
                    ctx.progress(
                        f"group {size} {mode}: {rows[-1]['deliveries_per_s']:.0f} deliveries/s, "
                        f"completion p50 {rows[-1]['completion']['p50_ms']:.0f} ms, "
                        f"missing {rows[-1]['missing']}"
                    )
                    ctx.refused(
                        f"group {size} {mode}", rows[-1]["ack_errors"], rows[-1]["error_samples"]
                    )
            out[str(size)] = rows
    finally:
        await pool.stop()
    return out


def _fanout_row(
    mode: str, size: int, count: int, expected: int, start: float, results: list[dict[str, Any]]
) -> dict[str, Any]:
    merged: dict[int, list[float]] = {}
    for res in results:
        for j, (n, intended, last) in res["group_msgs"].items():
            entry = merged.setdefault(int(j), [0.0, intended, last])
            entry[0] += n
            entry[2] = max(entry[2], last)
    deliveries = sum(int(e[0]) for e in merged.values())
    last = max((e[2] for e in merged.values()), default=start)
    return {
        "mode": mode,
        "group_size": size,
        "messages": count,
        "acked": sum(int(r["acked"]) for r in results),
        "ack_errors": sum(int(r["ack_errors"]) for r in results),
        "error_samples": [e for r in results for e in r["error_samples"]][:3],
        "deliveries": deliveries,
        "missing": count * expected - deliveries,
        "deliveries_per_s": deliveries / (last - start) if last > start else 0.0,
        "completion": latency_summary(e[2] - e[1] for e in merged.values()),
        "order_violations": sum(int(r["order_violations"]) for r in results),
        "generator_max_core": max(float(r["cpu_cores"]) for r in results),
    }


# ---------------------------------------------------------------- (c) idle connections


async def idle_connections(
    ctx: Context,
    accounts: Sequence[Account],
    *,
    platforms: tuple[int, ...],
    source_addrs: tuple[str, ...],
    hold: float,
) -> dict[str, Any]:
    """Open ``len(accounts) * len(platforms)`` WebSockets, hold them idle, measure the server.

    The server's open descriptors (less those open before: its connections) and RSS are
    sampled twice a second from the first connect to the end of the hold, for the plots of
    connections over time and RSS over connections."""
    before = procstat.snapshot(ctx.target.pids)
    begin = time.monotonic()
    samples: list[tuple[float, int, int]] = []
    sampling = asyncio.create_task(_sample_server(ctx.target.pids, begin, samples))
    try:
        pool = await open_pool(
            ctx,
            accounts,
            kind="idle",
            platforms=platforms,
            source_addrs=source_addrs,
            connect_concurrency=200,
        )
        try:
            ramp = time.monotonic() - begin
            await asyncio.sleep(2.0)
            settled = procstat.snapshot(ctx.target.pids)
            await asyncio.sleep(hold)
            held = procstat.snapshot(ctx.target.pids)
            answers = await pool.run("count", [None] * len(pool.pids), 60)
            still = sum(int(r["open"]) for r in answers)
        finally:
            await pool.stop()
    finally:
        sampling.cancel()
    wanted = len(accounts) * len(platforms)
    out: dict[str, Any] = {
        "wanted": wanted,
        "open_after_hold": still,
        "ramp_seconds": ramp,
        "ramp_per_s": still / ramp if ramp else 0.0,
        "source_addrs": list(source_addrs),
        "server_processes": len(ctx.target.pids),
        "hold_seconds": hold,
        "samples": [{"t": t, "connections": n, "rss_mb": rss / 2**20} for t, n, rss in samples],
    }
    if ctx.target.pids:
        out["server_rss_before_mb"] = before.rss / 2**20
        out["server_rss_after_mb"] = held.rss / 2**20
        out["rss_per_conn_kb"] = (held.rss - before.rss) / 1024 / still if still else None
        out["idle_server_cores"] = procstat.usage(settled, held).cores
    ctx.progress(
        f"idle: {still}/{wanted} open, "
        f"{out.get('rss_per_conn_kb') or 0:.1f} KB/conn, ramp {ramp:.1f} s"
    )
    return out


async def _sample_server(
    pids: tuple[int, ...], begin: float, out: list[tuple[float, int, int]]
) -> None:
    """Append (seconds since ``begin``, open descriptors over the first sample's, RSS) every
    half second until cancelled."""
    if not pids:
        return
    base = sum(procstat.open_files(pid) for pid in pids)
    while True:
        files = sum(procstat.open_files(pid) for pid in pids) - base
        out.append((time.monotonic() - begin, files, procstat.snapshot(pids).rss))
        await asyncio.sleep(0.5)


# ---------------------------------------------------------------- (d) offline sync


async def offline_sync(
    ctx: Context, accounts: Sequence[Account], *, messages: int, fill_rate: float
) -> dict[str, Any]:
    """accounts[0] stays offline while the others send it ``messages``; then it pulls them."""
    receiver, senders = accounts[0], list(accounts[1:])
    base = ctx.target.api[0]
    async with aiohttp.ClientSession() as session:
        path = f"/message/seq/{receiver.id}"
        seq0 = (await call(session, base, "GET", path, token=receiver.token))["seq"]
    pool = await open_pool(ctx, senders, kind="traffic")
    try:
        timing = Timing(warmup=0.0, measure=messages / fill_rate, drain=120.0)
        results, _, _ = await traffic(
            ctx,
            pool,
            min(ctx.workers, len(senders)),
            [a.id for a in senders],
            list(range(len(senders))),
            fill_rate,
            to=receiver.id,
            count=messages,
            timing=timing,
        )
    finally:
        await pool.stop()
    acked = sum(int(r["acked"]) for r in results)
    ctx.refused(
        "offline fill",
        sum(int(r["ack_errors"]) for r in results),
        [e for r in results for e in r["error_samples"]][:3],
    )
    ctx.progress(f"offline: {acked} messages waiting; pulling")
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        seq1 = (await call(session, base, "GET", path, token=receiver.token))["seq"]
        before = procstat.snapshot(ctx.target.pids)
        begin = time.monotonic()
        pulled = await call(
            session,
            base,
            "POST",
            "/message",
            token=receiver.token,
            json_body={
                "user_id": receiver.id,
                "send_start": 0,
                "send_end": 0,
                "start": seq0,
                "end": seq1,
            },
        )
        elapsed = time.monotonic() - begin
        after = procstat.snapshot(ctx.target.pids)
    seqs = [int(m["seq"]) for m in pulled]
    out: dict[str, Any] = {
        "acked": acked,
        "waiting": seq1 - seq0,
        "pulled": len(pulled),
        "seqs_unique_and_complete": sorted(seqs) == list(range(seq0 + 1, seq1 + 1)),
        "pull_seconds": elapsed,
        "messages_per_s": len(pulled) / elapsed if elapsed else 0.0,
    }
    out.update(
        {"server_cpu_us_per_unit": procstat.usage(before, after).us_per(len(pulled))}
        if ctx.target.pids
        else {}
    )
    ctx.progress(f"offline: pulled {len(pulled)} in {elapsed:.2f} s")
    return out


# ---------------------------------------------------------------- (e) HTTP


async def http_rates(
    ctx: Context, accounts: Sequence[Account], *, concurrency: int, repeats: int
) -> dict[str, Any]:
    """Closed-loop ``POST /user/login`` and ``GET /message/seq/{id}`` rates."""
    workers = max(1, min(ctx.workers, len(accounts)))
    pool = await open_pool(ctx, accounts, kind="http", api=ctx.target.api[0])
    out: dict[str, Any] = {}
    try:
        for kind in ("login", "get"):
            rows = []
            for _ in range(max(1, repeats)):
                start_at = time.monotonic() + 0.3
                timing = ctx.timing
                runs = [
                    HttpRun(kind, start_at, timing.warmup, timing.measure, concurrency // workers)
                    for _ in range(workers)
                ]
                watch = ServerWatch(ctx.target.pids)
                window = asyncio.create_task(watch.window(start_at + timing.warmup, timing.measure))
                results = await pool.run("http", list(runs), timeout=timing.measure + 120)
                await window
                count = sum(int(r["count"]) for r in results)
                row: dict[str, Any] = {
                    "per_s": count / timing.measure,
                    "latency": latency_summary(x for r in results for x in r["lat"]),
                    "errors": sum(int(r["errors"]) for r in results),
                    "error_samples": [e for r in results for e in r["error_samples"]][:3],
                    "generator_max_core": max(float(r["cpu_cores"]) for r in results),
                }
                row.update(watch.report(count))
                for res in results:
                    ctx.check_generator(float(res["cpu_cores"]), f"http {kind}")
                rows.append(row)
                ctx.progress(f"http {kind}: {row['per_s']:.0f}/s errors {row['errors']}")
                ctx.refused(f"http {kind}", row["errors"], row["error_samples"])
            out[kind] = rows
    finally:
        await pool.stop()
    return out
