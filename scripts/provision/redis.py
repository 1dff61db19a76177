"""Redis: the distribution's ``redis-server``, probed with a hand-written RESP ``PING``."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

from .base import (
    HOST,
    START_TIMEOUT,
    InstallContext,
    Service,
    ServiceError,
    spawn,
    wait_until,
)


def _redis_command(port: int, *args: str, timeout: float = 3.0) -> bytes:
    """Send one RESP command and return the raw first reply line (and bulk body)."""
    payload = f"*{len(args)}\r\n".encode() + b"".join(
        f"${len(a.encode())}\r\n".encode() + a.encode() + b"\r\n" for a in args
    )
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(payload)
        data = b""
        while b"\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError("redis closed the connection")
            data += chunk
        head, rest = data.split(b"\r\n", 1)
        if head.startswith(b"$"):
            size = int(head[1:])
            while len(rest) < size + 2:
                chunk = sock.recv(65536)
                if not chunk:
                    raise EOFError("redis closed the connection")
                rest += chunk
            return rest[:size]
        return head


class Redis(Service):
    name = "redis"

    def installed(self) -> bool:
        return shutil.which("redis-server") is not None

    def install(self, ctx: InstallContext) -> None:
        ctx.apt_install(self.name, ["redis-server"])
        if not self.installed():
            raise ServiceError(self.name, "redis-server still missing after apt-get install")

    def start(
        self, run_dir: Path, ports: dict[str, int]
    ) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
        port = ports["port"]
        data = run_dir / "redis"
        data.mkdir(exist_ok=True)
        server = shutil.which("redis-server") or "redis-server"
        argv = [
            server,
            "--port",
            str(port),
            "--bind",
            HOST,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(data),
            "--daemonize",
            "no",
            "--protected-mode",
            "no",
            "--databases",
            "16",
            "--maxclients",
            "10000",
        ]
        proc = spawn(self.name, argv, run_dir)
        log = run_dir / "redis.log"
        wait_until(
            self.name,
            proc,
            log,
            START_TIMEOUT[self.name],
            lambda: _redis_command(port, "PING") == b"+PONG",
        )
        version = "unknown"
        for line in _redis_command(port, "INFO", "server").decode().splitlines():
            if line.startswith("redis_version:"):
                version = line.split(":", 1)[1].strip()
        info: dict[str, Any] = {
            "host": HOST,
            "port": port,
            "url": f"redis://{HOST}:{port}/0",
            "version": version,
        }
        return proc, info

    def probe(self, info: dict[str, Any]) -> bool:
        return _redis_command(int(info["port"]), "PING") == b"+PONG"

    def env(self, info: dict[str, Any]) -> dict[str, str]:
        return {"SANDCAT_TEST_REDIS_URL": str(info["url"])}
