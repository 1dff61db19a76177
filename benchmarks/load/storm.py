"""Reconnect storm: N connected clients lose their gateway (its process is killed), and each
reconnects at once with its token and syncs by seq; one sender keeps sending to one
receiver throughout.

    python -m benchmarks.load.storm --clients 19000

The server is ``sandcat serve -c benchmarks/load/bench-config.yml`` on a fresh data folder,
killed with SIGKILL and started again on the same folder at once. Measured: the time from
the kill until every client is connected again and has its seq (``GET /message/seq``),
the restarted server's CPU per reconnect (after its start-up), the send→receive p99 of
the messages sent from the kill until the storm is over, and that every acked message
reached the receiver (pushed, or pulled with ``POST /message`` after the storm).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.load import codec, procstat
from benchmarks.load.api import call
from benchmarks.load.launch import CONFIG, free_port, sandcat_command
from benchmarks.load.stats import latency_summary
from sandcat.admin import SeedRequest, seed_users
from sandcat.config import load_config
from sandcat.services.auth import ACCESS, TokenService

SECRET = "storm-bench-secret-storm-bench-secret"
PER_CHILD = 9000  # connections per client process (the open-file limit is 20,000)
DEADLINE = 900.0  # seconds the clients may take to connect, or to reconnect

#: A client process: holds its sockets; when one closes, reconnects it (every 50-100 ms
#: until accepted), then asks for its seq; prints one JSON line when all are back.
CLIENT = r"""
import asyncio, json, random, sys, time, aiohttp, uvloop
async def main():
    jobs = json.loads(sys.stdin.readline())
    api, addr = sys.argv[1], sys.argv[2]
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, local_addr=(addr, 0)))
    gate = asyncio.Semaphore(200)
    back, failures = [], [0]
    async def connect(url):
        while True:
            try:
                async with gate:
                    return await session.ws_connect(url, max_msg_size=0)
            except (aiohttp.ClientError, OSError):
                failures[0] += 1
                await asyncio.sleep(0.05 + random.random() * 0.05)
    async def one(job, ready):
        url, user_id, token = job
        ws = await connect(url)
        ready.append(1)
        ends = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
        while (await ws.receive()).type not in ends:
            pass
        ws = await connect(url)
        while True:
            try:
                auth = {"Authorization": f"Bearer {token}"}
                async with session.get(f"{api}/message/seq/{user_id}", headers=auth) as resp:
                    if resp.status == 200:
                        await resp.read()
                        break
            except (aiohttp.ClientError, OSError):
                pass
            await asyncio.sleep(0.05)
        back.append(time.monotonic())
        reader = asyncio.ensure_future(ws.receive())  # answers pings while held
        return ws, reader
    ready = []
    tasks = [asyncio.ensure_future(one(j, ready)) for j in jobs]
    while len(ready) < len(jobs):
        await asyncio.sleep(0.05)
    print("ready", flush=True)
    held = await asyncio.gather(*tasks)
    print(json.dumps({"back": len(back), "last": max(back), "retries": failures[0]}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for ws, reader in held:
        reader.cancel()
    await session.close()
uvloop.run(main())
"""


class Server:
    def __init__(self, data: Path, api_port: int, ws_port: int, log: Path) -> None:
        self.env = {
            **os.environ,
            "SANDCAT__SERVER__PORT": str(api_port),
            "SANDCAT__WEBSOCKET__PORT": str(ws_port),
            "SANDCAT__EMBEDDED__DATA_DIR": str(data),
            "SANDCAT__SERVER__JWT_SECRET": SECRET,
        }
        self.log = log
        self.api = f"http://127.0.0.1:{api_port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def _spawn(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*sandcat_command(), "serve", "-c", str(CONFIG)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    async def start(self) -> None:
        self._spawn()
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as session:
            while time.monotonic() < deadline:
                try:
                    async with session.get(f"{self.api}/no-such-route") as resp:
                        await resp.read()
                        return
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
        raise RuntimeError(f"the server did not start; see {self.log}")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


class Stream:
    """One sender sending to one receiver every ``period`` seconds, both reconnecting."""

    def __init__(self, ws_base: str, sender: tuple[str, str], receiver: tuple[str, str]) -> None:
        self.urls = [f"{ws_base}/{uid}/conn/{uid}/0/{token}" for uid, token in (sender, receiver)]
        self.sender, self.receiver = sender, receiver
        self.sent: dict[str, float] = {}
        self.acked: set[str] = set()
        self.received: dict[str, float] = {}
        self.running = True

    async def _socket(self, session: aiohttp.ClientSession, url: str) -> Any:
        while self.running:
            try:
                return await session.ws_connect(url, max_msg_size=0)
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(0.05)
        return None

    async def send(self, session: aiohttp.ClientSession, period: float) -> None:
        n = 0
        while self.running:
            ws = await self._socket(session, self.urls[0])
            if ws is None:
                return
            reading = asyncio.ensure_future(self._acks(ws))
            while self.running and not ws.closed:
                n += 1
                local_id = f"s{n}"
                msg = codec.Msg(
                    send_id=self.sender[0], receiver_id=self.receiver[0], local_id=local_id
                )
                try:
                    await ws.send_bytes(codec.encode(msg))
                    self.sent[local_id] = time.monotonic()
                except (aiohttp.ClientError, ConnectionError):
                    break
                await asyncio.sleep(period)
            await reading

    async def _acks(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for frame in ws:
            if frame.type == aiohttp.WSMsgType.BINARY:
                msg = codec.decode(frame.data)
                if msg.msg_type == codec.MSG_ACK and msg.send_seq:
                    self.acked.add(msg.local_id)

    async def receive(self, session: aiohttp.ClientSession) -> None:
        while self.running:
            ws = await self._socket(session, self.urls[1])
            if ws is None:
                return
            async for frame in ws:
                if frame.type == aiohttp.WSMsgType.BINARY:
                    msg = codec.decode(frame.data)
                    if msg.msg_type == codec.MSG_SINGLE:
                        self.received.setdefault(msg.local_id, time.monotonic())
            await ws.close()

    async def pull(self, session: aiohttp.ClientSession, api: str) -> None:
        """Whatever was stored for the receiver but not pushed to it (it was away)."""
        uid, token = self.receiver
        seq = (await call(session, api, "GET", f"/message/seq/{uid}", token=token))["seq"]
        body = {"user_id": uid, "send_start": 0, "send_end": 0, "start": 0, "end": seq}
        now = time.monotonic()
        for item in await call(session, api, "POST", "/message", token=token, json_body=body):
            self.received.setdefault(item["local_id"], now)


async def storm(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="storm-", ignore_cleanup_errors=True) as data:
        return await _storm(args, Path(data))


async def _storm(args: argparse.Namespace, data: Path) -> dict[str, Any]:
    api_port, ws_port = free_port(), free_port()
    server = Server(data / "db", api_port, ws_port, data / "server.log")
    env = {k: v for k, v in server.env.items() if k.startswith("SANDCAT__")}
    config = load_config(CONFIG, environ=env).config
    users = await seed_users(
        config, SeedRequest(count=args.clients // 2 + 2, prefix="storm", password="storm-pass-1")
    )
    tokens = TokenService(config.server, SECRET)
    pairs = [(u.id, tokens.issue(u.id, ACCESS, 0)) for u in users]
    stream_pair, pairs = pairs[:2], pairs[2:]
    ws_base = f"ws://127.0.0.1:{ws_port}/ws"
    jobs = [
        (f"{ws_base}/{uid}/conn/{uid}/{platform}/{token}", uid, token)
        for uid, token in pairs
        for platform in (0, 1)
    ][: args.clients]
    await server.start()
    addrs = args.source_addrs.split(",")
    children = []
    for n, start in enumerate(range(0, len(jobs), PER_CHILD)):
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CLIENT,
            server.api,
            addrs[n % len(addrs)],
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        assert child.stdin is not None
        child.stdin.write((json.dumps(jobs[start : start + PER_CHILD]) + "\n").encode())
        children.append(child)
    opened = time.monotonic()
    for child in children:
        assert child.stdout is not None
        if (await asyncio.wait_for(child.stdout.readline(), DEADLINE)).strip() != b"ready":
            raise RuntimeError("a client process failed to connect")
    out: dict[str, Any] = {"clients": len(jobs), "open_seconds": time.monotonic() - opened}
    stream = Stream(ws_base, stream_pair[0], stream_pair[1])
    async with aiohttp.ClientSession() as session:
        flows = [
            asyncio.ensure_future(stream.send(session, args.period)),
            asyncio.ensure_future(stream.receive(session)),
        ]
        await asyncio.sleep(2.0)
        killed = time.monotonic()
        server.kill()
        await server.start()
        restarted = time.monotonic()
        assert server.proc is not None
        pid = server.proc.pid
        start_cpu = procstat.cpu_seconds(pid)
        reports = []
        for child in children:
            assert child.stdout is not None
            reports.append(json.loads(await asyncio.wait_for(child.stdout.readline(), DEADLINE)))
        cpu = procstat.cpu_seconds(pid)
        done = max(r["last"] for r in reports)
        await asyncio.sleep(2.0)  # the stream's last acks and pushes
        stream.running = False
        for flow in flows:
            flow.cancel()
        await asyncio.wait(flows)
        await stream.pull(session, server.api)
    for child in children:
        assert child.stdin is not None
        child.stdin.write(b"\n")
        await child.wait()
    server.kill()
    during = [
        stream.received[k] - t
        for k, t in stream.sent.items()
        if killed <= t <= done and k in stream.received
    ]
    back = sum(r["back"] for r in reports)
    out.update(
        {
            "reconnected": back,
            "reconnect_seconds": done - killed,
            "reconnect_retries": sum(r["retries"] for r in reports),
            "restart_seconds": restarted - killed,
            "server_start_cpu_seconds": start_cpu,
            "server_cpu_seconds": cpu - start_cpu,
            "server_cpu_ms_per_reconnect": (cpu - start_cpu) * 1000 / back if back else None,
            "stream_sent_during_storm": len(during),
            "stream_latency": latency_summary(during),
            "stream_acked": len(stream.acked),
            "stream_acked_lost": len(stream.acked - set(stream.received)),
        }
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=19000, help="one process: < 20,000 files")
    parser.add_argument("--source-addrs", default="127.0.0.2,127.0.0.3,127.0.0.4")
    parser.add_argument("--period", type=float, default=0.02, help="stream: seconds per send")
    import uvloop

    print(json.dumps(uvloop.run(storm(parser.parse_args())), indent=1))


if __name__ == "__main__":
    main()
