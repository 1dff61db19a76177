"""``sandcat-bench``, the installed load generator: it runs from any folder, writes the server
config a run needs, and prints refusals with their cause while the run goes on."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import aiohttp
import pytest

from sandcat.config import load_config
from tests.client import Api, CodeBook
from tests.conftest import StartServer

pytestmark = pytest.mark.embedded_only

BENCH = shutil.which("sandcat-bench", path=str(Path(sys.executable).parent))


async def bench(cwd: Path, *args: str) -> asyncio.subprocess.Process:
    assert BENCH is not None, "sandcat-bench is not installed (pip install -e .)"
    return await asyncio.create_subprocess_exec(
        BENCH,
        *args,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_the_entry_point_runs_from_any_folder_and_writes_the_server_config(
    tmp_path: Path,
) -> None:
    proc = await bench(tmp_path, "--help")
    out, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0
    assert b"usage: sandcat-bench" in out

    proc = await bench(tmp_path, "--server-config", "bench.yml")
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err
    assert b"sandcat serve -c bench.yml" in err
    loaded = load_config(tmp_path / "bench.yml", environ={})
    assert loaded.config.server.allow_stranger_messages is True
    assert loaded.config.limits.messages_per_second >= 100_000
    assert loaded.config.limits.login_per_minute_per_account >= 100_000


async def test_refusals_are_printed_with_their_cause_while_the_run_goes_on(
    start_server: StartServer, session: aiohttp.ClientSession, codes: CodeBook, tmp_path: Path
) -> None:
    # The server's default friend policy: strangers' messages are refused.
    async with start_server() as srv:
        api = Api(session, f"http://127.0.0.1:{srv.api_port}", codes)
        users = [await api.register(f"u{i}", f"u{i}@example.com") for i in range(4)]
        users_file = tmp_path / "users.json"
        users_file.write_text(
            json.dumps(
                {
                    "password": users[0].password,
                    "users": [{"id": u.id, "email": u.email} for u in users],
                }
            )
        )
        proc = await bench(
            tmp_path,
            "run",
            "--api",
            api.base,
            "--users-file",
            str(users_file),
            "--scenarios",
            "one-to-one",
            "--no-find-max",
            "--rate",
            "40",
            "--users",
            "4",
            "--senders",
            "2",
            "--workers",
            "1",
            "--warmup",
            "0.1",
            "--measure",
            "0.5",
            "--repeats",
            "1",
            "--no-progress",
            "--out",
            str(tmp_path / "out"),
        )
        assert proc.stderr is not None
        lines: list[str] = []
        try:
            async with asyncio.timeout(60):
                while not any("REFUSED" in line for line in lines):
                    line = (await proc.stderr.readline()).decode()
                    assert line, f"sandcat-bench ended without a refusal: {lines}"
                    lines.append(line.strip())
                # Printed as it happened: the run is still going (later probes follow).
                running_when_printed = proc.returncode is None
                lines += [(await proc.stderr.readline()).decode().strip() for _ in range(2)]
                _, rest = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert running_when_printed
    refused = next(i for i, line in enumerate(lines) if "REFUSED" in line)
    assert '"the receiver is not your friend"' in lines[refused]
    assert "cause: policy; change server.allow_stranger_messages" in lines[refused + 1]
    assert "--server-config" in lines[refused + 2]
    assert b"more (policy;" in rest
    assert proc.returncode == 0
    assert (tmp_path / "out" / "run.json").is_file()
