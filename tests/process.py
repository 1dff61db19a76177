"""A real ``sandcat serve`` process, started as a user starts it, the settings such a
process (embedded, or one of a distributed topology) gets in tests, and the test process's
own memory."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from scripts.topology import free_port
from tests.client import CodeBook, until

#: Cheap password hashing: tests create many users.
FAST_ARGON2 = {
    "SANDCAT__AUTH__ARGON2_TIME_COST": "1",
    "SANDCAT__AUTH__ARGON2_MEMORY_COST": "1024",
    "SANDCAT__AUTH__ARGON2_PARALLELISM": "1",
}
#: Login, code and message budgets no test that is not about them reaches.
OPEN_LIMITS = {
    "SANDCAT__LIMITS__LOGIN_PER_MINUTE_PER_IP": "100000",
    "SANDCAT__LIMITS__LOGIN_PER_MINUTE_PER_ACCOUNT": "100000",
    "SANDCAT__LIMITS__CODE_SENDS_PER_MINUTE_PER_IP": "100000",
    "SANDCAT__LIMITS__MESSAGES_PER_SECOND": "100000",
    "SANDCAT__LIMITS__MESSAGES_BURST": "100000",
}
#: Bot webhooks retried and dead-lettered within a second, bots picked up within 0.3 s.
QUICK_WEBHOOKS = {
    "SANDCAT__BOTS__WEBHOOK_ATTEMPTS": "3",
    "SANDCAT__BOTS__WEBHOOK_BACKOFF_SECONDS": "0.1",
    "SANDCAT__BOTS__POLL_SECONDS": "0.05",
    "SANDCAT__BOTS__LEASE_SECONDS": "1",
}


def embedded_env(data_dir: Path, api_port: int, ws_port: int) -> dict[str, str]:
    """This environment plus what an embedded process on these ports and data needs."""
    return {
        **os.environ,
        "SANDCAT__SERVER__PORT": str(api_port),
        "SANDCAT__WEBSOCKET__PORT": str(ws_port),
        "SANDCAT__EMBEDDED__DATA_DIR": str(data_dir),
        **FAST_ARGON2,
        "SANDCAT__SERVER__ALLOW_STRANGER_MESSAGES": "true",
    }


def rss_mb() -> float:
    """This process's resident memory, in MiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@dataclass
class Proc:
    proc: asyncio.subprocess.Process
    api_port: int
    ws_port: int
    book: CodeBook = field(default_factory=CodeBook)
    lines: list[str] = field(default_factory=list)

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)


@asynccontextmanager
async def serve(
    tmp_path: Path, config: Path, extra_env: dict[str, str] | None = None, role: str = "all"
) -> AsyncIterator[Proc]:
    """``sandcat serve`` on ``tmp_path/data``, yielded once it logged ``server_started``;
    killed at the end unless the test ended it, its last log lines printed."""
    api_port, ws_port = free_port(), free_port()
    env = {**embedded_env(tmp_path / "data", api_port, ws_port), **(extra_env or {})}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sandcat",
        "serve",
        "--config",
        str(config),
        "--role",
        role,
        env=env,
        stderr=asyncio.subprocess.PIPE,
        cwd=tmp_path,
    )
    running = Proc(proc, api_port, ws_port)

    async def pump() -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode(errors="replace")
            running.lines.append(line)
            running.book.feed(line)

    reader = asyncio.create_task(pump())
    try:
        await until(lambda: running.saw("server_started"), 30, "the server started")
        yield running
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        await reader
        print("".join(running.lines[-40:]))  # pytest shows it when the test fails
