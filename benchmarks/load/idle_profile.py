"""Where an idle connection's bytes go: one embedded server in this process, N idle
authenticated WebSockets opened by a child process, then RSS, object counts and (with
``--tracemalloc``) the allocation sites per connection.

    python -m benchmarks.load.idle_profile --connections 20000
    python -m benchmarks.load.idle_profile --connections 5000 --tracemalloc
    python -m benchmarks.load.idle_profile --connections 100000 --processes 6

RSS is read without tracemalloc (it inflates the heap); run both for the full picture. The
server's CPU share over the hold (the profiler's process, which does nothing else then) is
the idle CPU, heartbeats included (``--ping-interval``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

from sandcat.admin import SeedRequest, seed_users
from sandcat.config import load_config
from sandcat.server import running
from sandcat.services.auth import ACCESS, TokenService

SECRET = "idle-profile-secret-idle-profile-secret"

#: The child: opens the WebSockets (their URLs on one stdin line), reports, holds them
#: (reading, so that pings are answered) until the next line.
CLIENT = r"""
import asyncio, sys, aiohttp, uvloop
async def main():
    urls = sys.stdin.readline().split()
    addrs = sys.argv[1].split(",")
    sessions = [aiohttp.ClientSession(connector=aiohttp.TCPConnector(
        limit=0, local_addr=(a, 0))) for a in addrs]
    gate = asyncio.Semaphore(200)
    held, readers = [], []
    async def one(i, url):
        async with gate:
            ws = await sessions[i % len(sessions)].ws_connect(
                url, autoping=True, heartbeat=None, max_msg_size=0)
            held.append(ws)
            readers.append(asyncio.ensure_future(ws.receive()))  # it answers the pings
    await asyncio.gather(*(one(i, u) for i, u in enumerate(urls)))
    print(len(held), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    print(sum(not ws.closed for ws in held), flush=True)
uvloop.run(main())
"""


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def type_counts() -> collections.Counter[str]:
    gc.collect()
    return collections.Counter(type(o).__qualname__ for o in gc.get_objects())


async def profile(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="idle-profile-", ignore_cleanup_errors=True) as data:
        return await _profile(args, Path(data))


async def _profile(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    overrides = {
        "embedded.data_dir": str(data),
        "server.jwt_secret": SECRET,
        "server.port": 0,
        "websocket.port": 0,
        "limits.connections_per_ip": args.connections + 1,
        "websocket.ping_interval_seconds": args.ping_interval,
    }
    config = load_config(None, environ={}, overrides=overrides).config
    users = await seed_users(
        config,
        SeedRequest(count=-(-args.connections // 2), prefix="idle", password="idle-profile-1"),
    )
    tokens = TokenService(config.server, SECRET)
    async with running(config) as run:
        base = f"ws://127.0.0.1:{run.ws_port}/ws"
        urls = [
            f"{base}/{u.id}/conn/p/{platform}/{tokens.issue(u.id, ACCESS, 0)}"
            for u in users
            for platform in (0, 1)
        ][: args.connections]
        warm, urls = urls[:100], urls[100:]
        await hold(warm, args.source_addrs, None)  # first use: imports, caches, code paths
        gc.collect()
        if args.tracemalloc:
            tracemalloc.start(args.frames)
        before_types = type_counts()
        before_rss = rss_bytes()
        before_snap = tracemalloc.take_snapshot() if args.tracemalloc else None
        result: dict[str, Any] = {}

        async def measure() -> None:
            busy = time.process_time() - cpu
            result["idle_cpu_percent"] = 100 * busy / (time.monotonic() - wall)
            gc.collect()
            n = len(run.apps.registry.all_connections())
            result["connections"] = n
            result["rss_per_conn_bytes"] = (rss_bytes() - before_rss) / n
            result["server_rss_mb"] = rss_bytes() / 2**20
            diff = type_counts() - before_types
            result["objects_per_conn"] = {
                k: round(v / n, 2) for k, v in diff.most_common(40) if v >= n // 2
            }
            if before_snap is not None:
                snap = tracemalloc.take_snapshot()
                stats = snap.compare_to(before_snap, "traceback" if args.frames > 1 else "lineno")
                result["traced_per_conn_bytes"] = sum(s.size_diff for s in stats) / n
                result["top_sites"] = [
                    {
                        "bytes_per_conn": round(s.size_diff / n, 1),
                        "blocks_per_conn": round(s.count_diff / n, 2),
                        "where": [str(f) for f in s.traceback.format()[-2 * args.frames :]],
                    }
                    for s in stats[: args.top]
                    if s.size_diff > 0
                ]

        start = time.monotonic()
        cpu = wall = 0.0

        async def settled() -> None:
            nonlocal cpu, wall
            if args.gate:  # one of several: all open, then all measure
                print("open", flush=True)
                await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
            cpu, wall = time.process_time(), time.monotonic()

        result["still_open"] = await hold(urls, args.source_addrs, measure, args.hold, settled)
        result["open_seconds"] = time.monotonic() - start
    return result


async def hold(
    urls: list[str], addrs: str, measure: Any, seconds: float = 0.0, on_open: Any = None
) -> int:
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLIENT,
        addrs,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write((" ".join(urls) + "\n").encode())
    await child.stdin.drain()
    opened = int(await child.stdout.readline())
    if opened != len(urls):
        raise RuntimeError(f"opened {opened} of {len(urls)}")
    if on_open is not None:
        await on_open()
    if measure is not None:
        await asyncio.sleep(seconds)  # the server idles: heartbeats run, pings are answered
        await measure()
    child.stdin.write(b"\n")
    await child.stdin.drain()
    still = int(await child.stdout.readline())
    child.stdin.close()
    await child.wait()
    return still


async def spread(args: argparse.Namespace) -> dict[str, Any]:
    """``--processes`` profiles at once, each with its own server and its share of the
    connections, all held together; their figures summed."""
    share = -(-args.connections // args.processes)
    addrs = [f"127.0.0.{2 + n}" for n in range(2 * args.processes)]
    begin = time.monotonic()
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.load.idle_profile",
            "--connections",
            str(share),
            "--hold",
            str(args.hold),
            "--ping-interval",
            str(args.ping_interval),
            "--source-addrs",
            ",".join(addrs[2 * n : 2 * n + 2]),
            "--gate",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        for n in range(args.processes)
    ]

    async def line(child: asyncio.subprocess.Process, prefix: bytes) -> bytes:
        assert child.stdout is not None
        while not (got := await child.stdout.readline()).startswith(prefix):
            if not got:
                raise RuntimeError("a profile process ended early")
        return got

    await asyncio.gather(*(line(c, b"open") for c in children))
    opened = time.monotonic() - begin
    for child in children:
        assert child.stdin is not None
        child.stdin.write(b"\n")
    answers = await asyncio.gather(*(line(c, b'{"idle_cpu_percent"') for c in children))
    results = [json.loads(answer) for answer in answers]
    for child in children:
        await child.wait()
    total = sum(r["connections"] for r in results)
    return {
        "processes": args.processes,
        "connections": total,
        "still_open": sum(r["still_open"] for r in results),
        "seconds_to_open_all": opened,
        "rss_per_conn_bytes": sum(r["rss_per_conn_bytes"] * r["connections"] for r in results)
        / total,
        "server_rss_mb": sum(r["server_rss_mb"] for r in results),
        "idle_cpu_percent": sum(r["idle_cpu_percent"] for r in results),
        "per_process": results,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=5000)
    parser.add_argument("--source-addrs", default="127.0.0.2,127.0.0.3")
    parser.add_argument("--hold", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--ping-interval", type=float, default=30.0, help="heartbeat seconds")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--frames", type=int, default=1, help="tracemalloc traceback depth")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--processes", type=int, default=1, help="servers, each its own share")
    parser.add_argument("--gate", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    import uvloop

    if args.processes > 1:
        print(json.dumps(uvloop.run(spread(args)), indent=1))
    else:
        print(json.dumps(uvloop.run(profile(args)), indent=None if args.gate else 1))


if __name__ == "__main__":
    main()
