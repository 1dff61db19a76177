"""The operator's commands against a real ``sandcat serve`` process: admin commands through
its control socket (and on a stopped server's folder), and a backup taken while a client
streams, restored and served again with every acknowledged message; the admin commands and
the backup plan against the distributed topology."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import signal
import stat
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from sandcat import control
from sandcat.admin import run_admin
from sandcat.cli import admin_request, build_parser
from sandcat.config import load_config
from scripts.topology import free_port
from tests.client import Api, CodeBook, Socket, User, pull, until
from tests.cluster import Cluster, LogCodes
from tests.process import embedded_env

ROOT = Path(__file__).resolve().parents[2]


def _env(data_dir: Path) -> dict[str, str]:
    return {
        **embedded_env(data_dir, free_port(), free_port()),
        "SANDCAT__LIMITS__MESSAGES_PER_SECOND": "100000",
        "SANDCAT__LIMITS__MESSAGES_BURST": "100000",
    }


@dataclass
class Served:
    env: dict[str, str]
    api: Api
    lines: list[str] = field(default_factory=list)


@asynccontextmanager
async def serve(env: dict[str, str], session: aiohttp.ClientSession) -> AsyncIterator[Served]:
    """``sandcat serve`` as a user starts it; stopped with SIGINT, which must exit 0."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandcat", "serve", env=env, stderr=asyncio.subprocess.PIPE
    )
    book = CodeBook()
    served = Served(env, Api(session, f"http://127.0.0.1:{env['SANDCAT__SERVER__PORT']}", book))

    async def pump() -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode(errors="replace")
            served.lines.append(line)
            book.feed(line)

    reader = asyncio.create_task(pump())
    try:
        await until(
            lambda: (
                proc.returncode is not None
                or any("server_started" in line for line in served.lines)
            ),
            timeout=30,
            what="the server to start",
        )
        assert proc.returncode is None, "".join(served.lines[-20:])
        yield served
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(proc.wait(), 15)
        await reader
    assert code == 0, "".join(served.lines[-20:])


async def sandcat(env: dict[str, str], *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sandcat",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def admin(env: dict[str, str], *args: str, process: bool = False) -> Any:
    """``sandcat ARGS --json``: in a process of its own, or (quicker, and what that process
    runs) parsed by the CLI's parser and run here, reaching the server the same way."""
    # A user id may begin with "-" (ids are nanoids): the user goes after "--".
    argv = [*args[:2], "--json", *(("--", *args[2:]) if args[2:] else ())]
    if process:
        code, out, err = await sandcat(env, *argv)
        assert code == 0, err
        return json.loads(out)
    op, params = admin_request(build_parser().parse_args(argv))
    overrides = {key: value for key, value in env.items() if key.startswith("SANDCAT__")}
    config = load_config(None, environ=overrides).config
    return await run_admin(config, op, params)


async def login_status(api: Api, user: User, password: str | None = None) -> int:
    pwd = base64.b64encode((password or user.password).encode()).decode().rstrip("=")
    status, _ = await api.call(
        "POST",
        "/api/user/login",
        json={"account": user.email, "password": pwd},
        expect=None,
    )
    return status


async def test_admin_commands_reach_the_running_server(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    env = _env(tmp_path / "data")
    async with serve(env, session) as served:
        api = served.api
        alice = await api.new_user("alice", "alice@example.com")
        bob = await api.new_user("bob", "bob@example.com")
        sock_path = tmp_path / "data" / "control.sock"
        assert stat.S_IMODE(sock_path.stat().st_mode) == 0o600

        listed = await admin(env, "users", "list", process=True)
        assert [u["email"] for u in listed] == ["alice@example.com", "bob@example.com"]
        assert not any(u["disabled"] for u in listed)

        a = await Socket.connect(session, alice)
        await a.ready(alice)
        shown = await admin(env, "users", "show", "alice@example.com")
        assert shown["id"] == alice.id and len(shown["connections"]) == 1
        assert [c["user_id"] for c in await admin(env, "connections", "list")] == [alice.id]

        # kick: the socket closes with 4002 and the old token is refused at once.
        kicked = await admin(env, "connections", "kick", alice.id)
        assert kicked["closed"] == 1
        assert await a.expect_close() == 4002
        status, _ = await api.call("GET", f"/api/user/{alice.id}", token=alice.token, expect=None)
        assert status == 401
        await api.login(alice)  # a fresh login works

        # disable: no login (403), old tokens refused; enable: login again.
        b = await Socket.connect(session, bob)
        await b.ready(bob)
        assert (await admin(env, "users", "disable", bob.email))["disabled"] is True
        assert await b.expect_close() == 4002
        assert await login_status(api, bob) == 403
        status, _ = await api.call("GET", f"/api/user/{bob.id}", token=bob.token, expect=None)
        assert status == 401
        assert (await admin(env, "users", "show", bob.id))["disabled"] is True
        await admin(env, "users", "enable", bob.id)
        assert await login_status(api, bob) == 200

        # reset-password: the old password is refused, the printed one works.
        reset = await admin(env, "users", "reset-password", alice.email)
        assert reset["password"] and reset["password"] != alice.password
        assert await login_status(api, alice) == 401
        assert await login_status(api, alice, reset["password"]) == 200

        # delete: gone from the list and from login.
        await admin(env, "users", "delete", bob.email)
        assert await login_status(api, bob) == 401
        assert [u["id"] for u in await admin(env, "users", "list")] == [alice.id]

        code, _, err = await sandcat(env, "users", "show", "nobody@example.com")
        assert code == 1 and "no user 'nobody@example.com'" in err
        code, out, err = await sandcat(env, "users", "show", alice.email)
        assert code == 0 and f"email: {alice.email}\nphone: \ndisabled: False" in out, err
        # Each change wrote a sandcat.audit line naming the OS user who ran the command.
        me = control.local_user()
        for event, target in (
            ("admin_connections_kick", alice.id),
            ("admin_users_disable", bob.id),
            ("admin_users_enable", bob.id),
            ("admin_users_reset_password", alice.id),
            ("admin_users_delete", bob.id),
        ):
            line = f"sandcat.audit {event} actor=admin target={target} os_user={me}"
            assert any(line in seen for seen in served.lines), line
        assert not any(reset["password"] in seen for seen in served.lines)

    # No server: the command opens the folder itself, under its lock.
    assert not sock_path.exists()
    code, _, err = await sandcat(env, "users", "disable", "--", alice.id)
    assert code == 0 and f"admin_users_disable actor=admin target={alice.id}" in err, err
    assert [u["disabled"] for u in await admin(env, "users", "list")] == [True]
    async with serve(env, session) as served:
        assert await login_status(served.api, alice, reset["password"]) == 403


async def test_backup_under_load_restores_every_acked_message(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    env = _env(tmp_path / "data")
    backup = tmp_path / "backup"
    acked_before: set[str] = set()
    async with serve(env, session) as served:
        api = served.api
        alice = await api.new_user("alice", "alice@example.com")
        bob = await api.new_user("bob", "bob@example.com")
        form = aiohttp.FormData()
        form.add_field("file", b"an upload", filename="a.txt", content_type="text/plain")
        _, upload = await api.call("POST", "/api/file/upload", data=form, token=alice.token)
        a = await Socket.connect(session, alice)
        acked: list[str] = []
        done = asyncio.Event()

        async def stream() -> None:
            sent = 0
            while not done.is_set():
                for _ in range(20):
                    await a.send(receiver_id=bob.id, local_id=f"m{sent}", content=b"x" * 64)
                    sent += 1
                for _ in range(20):
                    ack = await a.recv_until(lambda m: m["msg_type"] == 24)
                    acked.append(ack["local_id"])

        streamer = asyncio.create_task(stream())
        await until(lambda: len(acked) >= 200, timeout=30, what="200 acks before the backup")
        acked_before = set(acked)
        code, out, err = await sandcat(env, "backup", str(backup))
        assert code == 0, err
        await until(lambda: len(acked) >= len(acked_before) + 200, what="acks after the backup")
        done.set()
        await streamer
        assert "backed up" in out
    assert stat.S_IMODE(backup.stat().st_mode) == 0o700
    for path in backup.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
    assert (backup / "jwt_secret").exists()  # config.yml sets none: the generated one

    restored_env = _env(tmp_path / "restored")
    code, out, err = await sandcat(restored_env, "restore", str(backup))
    assert code == 0, err
    async with serve(restored_env, session) as served:
        await served.api.login(bob)
        # The old token still works: the restored folder kept the JWT secret.
        status, _ = await served.api.call(
            "GET", f"/api/user/{bob.id}", token=alice.token, expect=None
        )
        assert status == 200
        _, seqs = await served.api.call("GET", f"/api/message/seq/{bob.id}", token=bob.token)
        messages = await pull(served.api, bob, start=0, end=seqs["seq"])
        present = {m["local_id"] for m in messages}
        assert acked_before <= present, sorted(acked_before - present)[:5]
        assert len(present) <= len(acked)
        _, body = await served.api.call("GET", f"/api/file/get/{upload}")
        assert body in {b"an upload", "an upload"}


async def test_restore_refuses_a_folder_a_server_holds(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    env = _env(tmp_path / "data")
    async with serve(env, session) as served:
        await served.api.new_user("alice", "alice@example.com")
        code, _, err = await sandcat(env, "backup", str(tmp_path / "b"))
        assert code == 0, err
        code, _, err = await sandcat(env, "restore", str(tmp_path / "b"), "--force")
        assert code == 1 and "another sandcat process (pid" in err
        code, _, err = await sandcat(env, "backup", str(tmp_path / "b"))
        assert code == 1 and "is not empty" in err
        code, _, err = await sandcat(env, "users", "seed", "--count", "2", "--password", "p")
        assert code == 1 and "another sandcat process (pid" in err
    code, _, err = await sandcat(env, "restore", str(tmp_path / "b"))
    assert code == 1 and "exists: restore into a new folder" in err
    code, out, err = await sandcat(env, "restore", str(tmp_path / "b"), "--force")
    assert code == 0 and "restored" in out, err


async def test_admin_commands_in_distributed_mode(
    cluster: Cluster, session: aiohttp.ClientSession
) -> None:
    """The same commands on PostgreSQL, reaching the gateways through Redis: a kick closes
    the socket on whichever gateway holds it."""
    api = Api(session, cluster.api_base, LogCodes(cluster.log), tag=secrets.token_hex(4))
    env = {**os.environ, **cluster.topology.base_env}
    alice = await api.new_user("alice", "alice@example.com")
    sock = await Socket.connect(session, alice)
    await sock.ready(alice)
    listed = await admin(env, "connections", "list")
    assert [c["platform"] for c in listed if c["user_id"] == alice.id] == [0]
    assert len((await admin(env, "users", "show", alice.email))["connections"]) == 1
    kicked = await admin(env, "connections", "kick", alice.email, process=True)
    assert kicked["closed"] == 1
    assert await sock.expect_close() == 4002
    status, _ = await api.call("GET", f"/api/user/{alice.id}", token=alice.token, expect=None)
    assert status == 401
    await admin(env, "users", "disable", alice.id)
    assert await login_status(api, alice) == 403
    await admin(env, "users", "enable", alice.id)
    assert await login_status(api, alice) == 200
    # Distributed: the backup is a plan per service, with no secret in it.
    password = f"pw-{secrets.token_hex(8)}"
    plan_env = {**env, "SANDCAT__DB__POSTGRES__PASSWORD": password}
    code, out, err = await sandcat(plan_env, "backup", "/nonexistent/never-written")
    assert code == 0, err
    assert "pg_dump" in out and "mongodump" in out and "aws s3 sync" in out
    for secret in (password, env["SANDCAT__SERVER__JWT_SECRET"], env["SANDCAT__OSS__SECRET_KEY"]):
        assert secret not in out
