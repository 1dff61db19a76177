"""Start a distributed Sandcat topology as separate processes (stdlib only).

Used by ``make run-distributed`` (``python -m scripts.topology``, foreground, Ctrl-C stops
everything within about ``2 * STOP_SECONDS``) and by the distributed end-to-end tests. After
an unclean stop (a crash, a SIGKILL) the next ``make run-distributed`` stops the Sandcat
processes the killed run left (their pid files), reuses the backing services that still answer
and restarts the others.

Given the backing services' ``services.env`` (written by
``scripts.provision``), it runs ``sandcat migrate`` once, then the ``api`` role, any
number of ``gateway`` roles and one ``msg-server``, each logging to the caller's stderr
with a role prefix.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO
from urllib.parse import urlparse

from scripts import provision

#: Seconds the Sandcat processes get, together, to drain and exit on Ctrl-C (their own
#: drain, server.shutdown_seconds, is shorter), and the backing services after them.
STOP_SECONDS = 20.0


def service_overrides(services_env: Mapping[str, str]) -> dict[str, str]:
    """``SANDCAT__*`` overrides pointing a distributed Sandcat at the running services."""
    pg = urlparse(services_env["SANDCAT_TEST_PG_DSN"])
    redis = urlparse(services_env["SANDCAT_TEST_REDIS_URL"])
    mongo = urlparse(services_env["SANDCAT_TEST_MONGO_URL"])
    return {
        "SANDCAT__MODE": "distributed",
        "SANDCAT__DB__POSTGRES__HOST": pg.hostname or "127.0.0.1",
        "SANDCAT__DB__POSTGRES__PORT": str(pg.port or 5432),
        "SANDCAT__DB__POSTGRES__USER": pg.username or "",
        "SANDCAT__DB__POSTGRES__PASSWORD": pg.password or "",
        "SANDCAT__DB__POSTGRES__DATABASE": pg.path.lstrip("/"),
        "SANDCAT__REDIS__HOST": redis.hostname or "127.0.0.1",
        "SANDCAT__REDIS__PORT": str(redis.port or 6379),
        "SANDCAT__KAFKA__HOSTS": services_env["SANDCAT_TEST_KAFKA"],
        "SANDCAT__DB__MONGODB__HOST": mongo.hostname or "127.0.0.1",
        "SANDCAT__DB__MONGODB__PORT": str(mongo.port or 27017),
        "SANDCAT__OSS__ENDPOINT": services_env["SANDCAT_TEST_S3_ENDPOINT"],
        "SANDCAT__OSS__ACCESS_KEY": services_env["SANDCAT_TEST_S3_ACCESS_KEY"],
        "SANDCAT__OSS__SECRET_KEY": services_env["SANDCAT_TEST_S3_SECRET_KEY"],
        "SANDCAT__OSS__REGION": services_env.get("SANDCAT_TEST_S3_REGION", "us-east-1"),
    }


def read_env_file(path: Path) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            env[key.strip()] = value.strip()
    return env


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Topology:
    """api + ``gateways`` gateways + one msg-server."""

    base_env: dict[str, str]
    api_port: int
    ws_ports: list[int]
    sandcat: Sequence[str] = (sys.executable, "-m", "sandcat")
    stderr: IO[bytes] | int | None = None
    #: ``--config`` for every process (environment overrides still win).
    config: str | None = None
    #: Where each process's pid file goes (``sandcat-<name>.pid``), so the next start finds
    #: the processes a killed run left behind; None: no pid files.
    pid_dir: Path | None = None
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    specs: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)

    def _env(self, role: str, extra: Mapping[str, str]) -> dict[str, str]:
        return {**os.environ, **self.base_env, "SANDCAT_LOG_PREFIX": role, **extra}

    def _config_args(self) -> list[str]:
        return ["--config", self.config] if self.config else []

    def migrate(self) -> None:
        subprocess.run(
            [*self.sandcat, "migrate", *self._config_args()],
            env=self._env("migrate", {}),
            check=True,
        )

    def start(self) -> None:
        self._spawn("api", "api", {"SANDCAT__SERVER__PORT": str(self.api_port)})
        for index, port in enumerate(self.ws_ports, start=1):
            self._spawn(
                f"gateway-{index}",
                "gateway",
                {
                    "SANDCAT__WEBSOCKET__PORT": str(port),
                    "SANDCAT__WEBSOCKET__GATEWAY_ID": f"gateway-{index}-{port}",
                },
            )
        self._spawn("msg-server", "msg-server", {})
        self.wait_ready()

    def _spawn(self, name: str, role: str, extra: Mapping[str, str]) -> None:
        self.specs[name] = (role, dict(extra))
        proc = subprocess.Popen(
            [*self.sandcat, "serve", "--role", role, *self._config_args()],
            env=self._env(name, extra),
            stderr=self.stderr,
        )
        self.procs[name] = proc
        if self.pid_dir is not None:
            write_pid_file(self.pid_dir / f"sandcat-{name}.pid", proc.pid)

    def wait_ready(self, timeout: float = 60.0) -> None:
        urls = [f"http://127.0.0.1:{self.api_port}/health"]
        urls += [f"http://127.0.0.1:{port}/health" for port in self.ws_ports]
        deadline = time.monotonic() + timeout
        for url in urls:
            while True:
                for name, proc in self.procs.items():
                    if proc.poll() is not None:
                        raise RuntimeError(f"{name} exited with {proc.returncode}")
                try:
                    with urllib.request.urlopen(url, timeout=1):
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{url} did not answer in {timeout}s") from None
                    time.sleep(0.1)

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        proc.kill()
        proc.wait()

    def restart(
        self, name: str, extra_env: Mapping[str, str] | None = None, wait: bool = True
    ) -> None:
        """Start a killed process again with the same role and settings (plus
        ``extra_env`` for this run only)."""
        role, extra = self.specs[name]
        self._spawn(name, role, {**extra, **(extra_env or {})})
        self.specs[name] = (role, extra)
        if wait:
            self.wait_ready()

    def stop(self, timeout: float = STOP_SECONDS) -> None:
        """SIGINT to every process at once; ``timeout`` seconds in all to exit, then SIGKILL."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + timeout
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if self.pid_dir is not None:
                (self.pid_dir / f"sandcat-{name}.pid").unlink(missing_ok=True)


def write_pid_file(path: Path, pid: int) -> None:
    """``pid`` and its start time (so a recycled pid is never taken for it)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    start = stat.rsplit(")", 1)[1].split()[19]
    path.write_text(f"{pid}\nstarttime={start}\n")


def stop_leftovers(pid_dir: Path, timeout: float = STOP_SECONDS) -> list[int]:
    """Stop the Sandcat processes an earlier run left behind (it was killed before it could
    stop them; they still hold the ports). Returns their pids."""
    found: list[int] = []
    for pid_file in sorted(pid_dir.glob("sandcat-*.pid")):
        entry = provision.read_pidfile(pid_file)
        if entry is not None and provision.pid_is_ours(*entry):
            print(
                f"sandcat distributed: {pid_file.stem} (pid {entry[0]}) is left from an "
                "earlier run: stopping it",
                file=sys.stderr,
                flush=True,
            )
            os.kill(entry[0], signal.SIGINT)
            found.append(entry[0])
        pid_file.unlink()
    deadline = time.monotonic() + timeout
    for pid in found:
        while provision.proc_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if provision.proc_alive(pid):
            os.kill(pid, signal.SIGKILL)
    return found


def ensure_secret(run_dir: Path) -> str:
    """The topology's JWT secret, made once (0600, written whole or not at all); a file an
    interrupted run left empty or short is made again."""
    secret_file = run_dir / "jwt_secret"
    if secret_file.exists():
        secret = secret_file.read_text().strip()
        if len(secret) >= 32:
            return secret
        print(f"sandcat distributed: {secret_file} is half-made: a new secret", file=sys.stderr)
    secret = secrets.token_urlsafe(48)
    tmp = secret_file.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(secret)
    tmp.rename(secret_file)
    return secret


def main() -> int:
    """``make run-distributed``: services, migrations, api + two gateways + msg-server."""
    root = Path(__file__).resolve().parents[1]
    run_dir = Path(os.environ.get("SANDCAT_RUN_DIR", root / "data" / "distributed")).resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    stop_leftovers(run_dir)
    # Services a killed run left are reused if they answer, else restarted.
    provision.start_services(None, run_dir, recover=True, stop_timeout=STOP_SECONDS)
    env = service_overrides(read_env_file(run_dir / "services.env"))
    env["SANDCAT__SERVER__JWT_SECRET"] = ensure_secret(run_dir)
    api_port = int(os.environ.get("SANDCAT__SERVER__PORT", "50001"))
    ws_port = int(os.environ.get("SANDCAT__WEBSOCKET__PORT", "50000"))
    topology = Topology(
        base_env=env,
        api_port=api_port,
        ws_ports=[ws_port, ws_port + 2],
        sandcat=[str(root / ".venv" / "bin" / "sandcat")],
        pid_dir=run_dir,
    )
    stop = False

    def on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        topology.migrate()
        topology.start()
        print(
            f"sandcat distributed: api http://127.0.0.1:{api_port}, gateways ws://127.0.0.1:"
            f"{ws_port}/ws and ws://127.0.0.1:{ws_port + 2}/ws (Ctrl-C stops everything)",
            file=sys.stderr,
            flush=True,
        )
        while not stop and all(p.poll() is None for p in topology.procs.values()):
            time.sleep(0.2)
    finally:
        # Bounded: STOP_SECONDS for the Sandcat processes, then for the services.
        topology.stop()
        provision.stop_services(run_dir, timeout=STOP_SECONDS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
