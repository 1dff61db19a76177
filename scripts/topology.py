"""Start a distributed Sandcat topology as separate processes (stdlib only).

Used by ``make run-distributed`` (foreground, Ctrl-C stops everything) and by the
distributed end-to-end tests. Given the backing services' ``services.env`` (written by
``scripts/services.py``), it runs ``sandcat migrate`` once, then the ``api`` role, any
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
        self.procs[name] = subprocess.Popen(
            [*self.sandcat, "serve", "--role", role, *self._config_args()],
            env=self._env(name, extra),
            stderr=self.stderr,
        )

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

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> int:
    """``make run-distributed``: services, migrations, api + two gateways + msg-server."""
    root = Path(__file__).resolve().parents[1]
    sys.path.insert(0, str(root / "scripts"))
    import services as provisioning

    run_dir = Path(os.environ.get("SANDCAT_RUN_DIR", root / "data" / "distributed")).resolve()
    provisioning.start_services(None, run_dir)
    secret_file = run_dir / "jwt_secret"
    if not secret_file.exists():
        secret_file.write_text(secrets.token_urlsafe(48))
    env = service_overrides(read_env_file(run_dir / "services.env"))
    env["SANDCAT__SERVER__JWT_SECRET"] = secret_file.read_text().strip()
    api_port = int(os.environ.get("SANDCAT__SERVER__PORT", "50001"))
    ws_port = int(os.environ.get("SANDCAT__WEBSOCKET__PORT", "50000"))
    topology = Topology(
        base_env=env,
        api_port=api_port,
        ws_ports=[ws_port, ws_port + 2],
        sandcat=[str(root / ".venv" / "bin" / "sandcat")],
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
        topology.stop()
        provisioning.stop_services(run_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
