"""Inbox write and range-pull throughput, ``use_sharding: false`` vs ``true``, same data.

Run against a MongoDB-wire server (the test FerretDB by default)::

    python -m benchmarks.sharding --mongo-url mongodb://127.0.0.1:PORT/ --messages 1000000

Each one-to-one message is stored as two copies (the receiver's and the sender's), as the
distributed message server does. Both sides get the same messages in the same order, then
the same pulls (each user's most recent gap, both boxes, as a client's start-up sync asks);
every pull's result is checked against the expected count. Bounded: the pull phase of each
side stops after ``--pull-seconds`` (at least ``--min-pulls`` pulls), and the run stops with
an error once it has taken ``--max-seconds`` (0: no limit). Not part of ``make test``.

The report names the machine (``lscpu`` model, cores, kernel) and ``--server`` (e.g.
"FerretDB v1.24.2, pg handler"; the server's own ``buildInfo`` version otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from pymongo import AsyncMongoClient

from sandcat.adapters.mongo.inbox import MongoInbox
from sandcat.protocol.msg import Msg

MONTH_MS = 30 * 86_400_000
START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z


@dataclass
class Side:
    sharding: bool
    documents: int
    write_seconds: float
    docs_per_second: float
    pulls: int
    pull_seconds: float
    pulls_per_second: float
    pull_p50_ms: float
    pull_p99_ms: float
    collections: int


def plan(messages: int, users: int, months: int, seed: int) -> list[tuple[int, int, int]]:
    """(sender, receiver, send_time) per message, send times spread over ``months``."""
    rng = random.Random(seed)
    span = months * MONTH_MS
    return [
        (s, (s + rng.randrange(1, users)) % users, START_MS + i * span // messages)
        for i, s in enumerate(rng.randrange(users) for _ in range(messages))
    ]


def batches(
    messages: list[tuple[int, int, int]], users: int, size: int
) -> tuple[list[list[tuple[str, int, Msg]]], list[int], list[int]]:
    """Copies in batches of ``size`` messages, and each user's final (seq, send_seq)."""
    seqs, send_seqs = [0] * users, [0] * users
    out: list[list[tuple[str, int, Msg]]] = []
    current: list[tuple[str, int, Msg]] = []
    for n, (sender, receiver, t) in enumerate(messages):
        seqs[receiver] += 1
        send_seqs[sender] += 1
        msg = Msg(
            send_id=f"user{sender:07d}",
            receiver_id=f"user{receiver:07d}",
            local_id=f"l{n}",
            server_id=f"s{n:020d}",
            create_time=t,
            send_time=t,
            seq=seqs[receiver],
            msg_type=0,
            content_type=1,
            content=b"benchmark message text " * 2,
            send_seq=send_seqs[sender],
        )
        current += [(msg.receiver_id, 0, msg), (msg.send_id, 1, msg.copy(seq=0))]
        if len(current) >= 2 * size:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return out, seqs, send_seqs


async def run_side(
    client: AsyncMongoClient[dict[str, Any]],
    sharding: bool,
    work: list[list[tuple[str, int, Msg]]],
    seqs: list[int],
    send_seqs: list[int],
    args: argparse.Namespace,
) -> Side:
    # a fresh name each run: FerretDB v1 (SQLite) fails writes to a database recreated
    # under a name it has just dropped
    name = f"bench_sharding_{'on' if sharding else 'off'}_{time.time_ns()}"
    inbox = MongoInbox(db=client[name], use_sharding=sharding, user_shards=args.shards)
    await inbox.start()
    queue = list(reversed(work))
    step = max(1, len(work) // 10)

    async def writer() -> None:
        while queue:
            if args.deadline is not None and time.monotonic() > args.deadline:
                raise SystemExit(f"stopped: --max-seconds {args.max_seconds} reached while writing")
            await inbox.insert_copies(queue.pop())
            if queue and len(queue) % step == 0:
                done = 1 - len(queue) / len(work)
                print(f"    {done:4.0%} in {time.perf_counter() - started:.0f}s", flush=True)

    started = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(args.concurrency)))
    write_seconds = time.perf_counter() - started
    documents = sum(len(b) for b in work)
    print(f"  sharding={sharding}: wrote {documents} copies in {write_seconds:.1f}s", flush=True)

    rng = random.Random(args.seed + 1)
    latencies: list[float] = []
    pull_started = time.perf_counter()
    while time.perf_counter() - pull_started < args.pull_seconds or len(latencies) < args.min_pulls:
        user = rng.randrange(len(seqs))
        start, send_start = max(0, seqs[user] - args.gap), max(0, send_seqs[user] - args.gap)
        t0 = time.perf_counter()
        got = await inbox.pull(f"user{user:07d}", start, seqs[user], send_start, send_seqs[user], 0)
        latencies.append(time.perf_counter() - t0)
        want = seqs[user] - start + send_seqs[user] - send_start
        if len(got) != want:
            raise SystemExit(f"pull of user{user:07d} returned {len(got)}, expected {want}")
    pull_seconds = time.perf_counter() - pull_started
    latencies.sort()
    collections = len(await client[name].list_collection_names())
    await client.drop_database(name)
    return Side(
        sharding=sharding,
        documents=documents,
        write_seconds=round(write_seconds, 2),
        docs_per_second=round(documents / write_seconds, 1),
        pulls=len(latencies),
        pull_seconds=round(pull_seconds, 2),
        pulls_per_second=round(len(latencies) / pull_seconds, 3),
        pull_p50_ms=round(statistics.median(latencies) * 1000, 1),
        pull_p99_ms=round(latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)] * 1000, 1),
        collections=collections,
    )


async def main(args: argparse.Namespace) -> None:
    messages = plan(args.messages, args.users, args.months, args.seed)
    work, seqs, send_seqs = batches(messages, args.users, args.batch)
    args.deadline = time.monotonic() + args.max_seconds if args.max_seconds else None
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(args.mongo_url)
    try:
        build = await client.server_info()
        server = args.server or f"MongoDB-wire server, version {build.get('version')}"
        print(
            f"{server}, "
            f"{args.messages} messages, {args.users} users, {args.months} months, "
            f"{args.shards} shards",
            flush=True,
        )
        sides = [
            await run_side(client, sharding, work, seqs, send_seqs, args)
            for sharding in (False, True)
        ]
    finally:
        await client.close()
    off, on = sides
    report = {
        "command": " ".join(["python", "-m", "benchmarks.sharding", *sys.argv[1:]]),
        "machine": machine(),
        "server": server,
        "messages": args.messages,
        "users": args.users,
        "months": args.months,
        "shards": args.shards,
        "sides": [asdict(s) for s in sides],
        "write_ratio": round(on.docs_per_second / off.docs_per_second, 2),
        "pull_ratio": round(on.pulls_per_second / off.pulls_per_second, 2),
    }
    print(json.dumps(report, indent=2))


def machine() -> str:
    """CPU model, cores and kernel, for the report."""
    model = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(
            ["lscpu"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sharding", description=__doc__)
    parser.add_argument("--mongo-url", default=os.environ.get("SANDCAT_TEST_MONGO_URL"))
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--months", type=int, default=6)
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--batch", type=int, default=500, help="messages per insert_copies call")
    parser.add_argument("--concurrency", type=int, default=2, help="concurrent writers")
    parser.add_argument("--gap", type=int, default=20, help="seqs per box in one pull")
    parser.add_argument("--pull-seconds", type=float, default=30.0)
    parser.add_argument("--min-pulls", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--max-seconds", type=float, default=0.0, help="0: no limit")
    parser.add_argument("--server", default=os.environ.get("SANDCAT_BENCH_SERVER"))
    args = parser.parse_args(argv)
    if not args.mongo_url:
        parser.error("--mongo-url (or SANDCAT_TEST_MONGO_URL) is required")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse()))
