"""Starting embedded servers for a run (as separate ``sandcat`` processes) and seeding users.

The harness only starts processes and reads their URLs and PIDs: the generator itself
never imports the server.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

CONFIG = Path(__file__).resolve().parent / "bench-config.yml"
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sandcat_command() -> list[str]:
    exe = shutil.which("sandcat", path=str(Path(sys.executable).parent))
    return [exe] if exe else [sys.executable, "-m", "sandcat"]


@dataclass(slots=True)
class Servers:
    """One or more ``sandcat serve`` processes sharing a data dir (and so users and secret)."""

    data_dir: Path
    log_dir: Path
    no_extensions: bool = False
    cpus: str = ""
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    api: list[str] = field(default_factory=list)

    def env(self, api_port: int, ws_port: int, data_dir: Path | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("SANDCAT_NO_EXTENSIONS", None)
        if self.no_extensions:
            env["SANDCAT_NO_EXTENSIONS"] = "1"
        env.update(
            {
                "SANDCAT__SERVER__PORT": str(api_port),
                "SANDCAT__WEBSOCKET__PORT": str(ws_port),
                "SANDCAT__EMBEDDED__DATA_DIR": str(data_dir or self.data_dir),
            }
        )
        return env

    def run_admin(self, *args: str) -> str:
        """``sandcat ARGS -c bench-config.yml`` against this data dir; its stdout."""
        done = subprocess.run(
            [*sandcat_command(), *args, "-c", str(CONFIG)],
            env=self.env(0, 0),
            check=True,
            capture_output=True,
            timeout=3600,  # seeding the 50,000 users of the 100k idle run: > 10 min here
        )
        return done.stdout.decode()

    async def start(self, count: int = 1) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # One server per data folder (a second one on the same folder is refused): the others
        # get a copy of it, made before any of them starts, so the same users log in.
        data_dirs = [self.data_dir]
        for n in range(1, count):
            copy = self.data_dir.with_name(f"{self.data_dir.name}-{n}")
            shutil.rmtree(copy, ignore_errors=True)
            shutil.copytree(self.data_dir, copy, ignore=shutil.ignore_patterns("*.lock"))
            data_dirs.append(copy)
        for n, data_dir in enumerate(data_dirs):
            api_port, ws_port = free_port(), free_port()
            pin = ["taskset", "-c", self.cpus] if self.cpus else []
            log = (self.log_dir / f"server-{n}.log").open("ab")
            proc = subprocess.Popen(  # noqa: ASYNC220 - started once per run, returns at once
                [*pin, *sandcat_command(), "serve", "-c", str(CONFIG)],
                env=self.env(api_port, ws_port, data_dir),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
            self.procs.append(proc)
            base = f"http://127.0.0.1:{api_port}"
            await wait_healthy(base, proc)
            self.api.append(base)

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(proc.pid for proc in self.procs)

    def log_path(self, n: int = 0) -> Path:
        return self.log_dir / f"server-{n}.log"

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()
        self.api.clear()


@dataclass(slots=True)
class RelayServer:
    """The relay baseline (``python -m benchmarks.load.relay``) as its own process."""

    log_dir: Path
    cpus: str = ""
    proc: subprocess.Popen[bytes] | None = None
    api: list[str] = field(default_factory=list)

    async def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        api_port, ws_port = free_port(), free_port()
        pin = ["taskset", "-c", self.cpus] if self.cpus else []
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), env.get("PYTHONPATH"))))
        command = [sys.executable, "-m", "benchmarks.load.relay"]
        ports = ["--api-port", str(api_port), "--ws-port", str(ws_port)]
        with (self.log_dir / "relay.log").open("ab") as log:
            self.proc = subprocess.Popen(  # noqa: ASYNC220 - started once per run
                [*pin, *command, *ports], env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
            )
        base = f"http://127.0.0.1:{api_port}"
        await wait_healthy(base, self.proc)
        self.api.append(base)

    @property
    def pids(self) -> tuple[int, ...]:
        return (self.proc.pid,) if self.proc is not None else ()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self.api.clear()


async def wait_healthy(base: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}")
            try:
                async with session.get(base + "/health") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.1)
    raise TimeoutError(f"{base} did not become healthy in {timeout} s")
