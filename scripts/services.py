#!/usr/bin/env python3
"""Install, start and stop local test instances of Sandcat's backing services.

Standalone and stdlib-only (Python 3.11+), so CI can run it before any project
dependency is installed.  Everything that is downloaded or built is cached under
``~/.cache/sandcat`` (override with ``SANDCAT_CACHE``), never in the repository.

Services (NAMES): postgres redis kafka mongo s3 (default: all of them).
``SANDCAT_MONGO_HANDLER=pg`` runs FerretDB on its PostgreSQL handler (a database on this
run's ``postgres`` service) instead of the default ``sqlite``.

    python scripts/services.py install [NAMES...]
    python scripts/services.py start [NAMES...] --run-dir DIR [--port NAME=PORT ...]
    python scripts/services.py status --run-dir DIR
    python scripts/services.py stop [NAMES...] --run-dir DIR

``stop NAMES`` stops only those services and keeps their data and ports; ``start NAMES``
on the same run dir then restarts them as they were (the fault tests use this).
``start`` installs what is missing, starts each service on a free (or given)
loopback port with its data under DIR, waits until it really answers, and
writes ``DIR/services.json`` and ``DIR/services.env``.  Each service logs to
``DIR/<name>.log`` and has its pid in ``DIR/<name>.pid``.  A service that cannot
be installed or started is a hard failure (exit code 1) naming the service
and its log file.

The same is importable (for a pytest session fixture)::

    from services import start_services, stop_services
    info = start_services(["postgres", "redis"], run_dir)
    ...
    stop_services(run_dir)
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime
import fcntl
import hashlib
import hmac
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# --------------------------------------------------------------------------- constants

ALL_SERVICES: tuple[str, ...] = ("postgres", "redis", "kafka", "mongo", "s3")

PG_MAJOR = "15"
PG_USER = "sandcat"
PG_PASSWORD = "sandcat"
PG_DB = "sandcat"

KAFKA_VERSION = "4.1.2"
KAFKA_SCALA = "2.13"
LOG4J_VERSION = "2.25.3"
KAFKA_HEAP = "-Xmx512m"

FERRETDB_VERSION = "v1.24.2"
#: FerretDB's backend: ``sqlite`` (default, its own files) or ``pg`` (a database on the
#: ``postgres`` service of the same run, which must be started too); env SANDCAT_MONGO_HANDLER.
FERRETDB_HANDLERS = ("sqlite", "pg")
FERRETDB_PG_DB = "ferretdb"
VERSITYGW_VERSION = "v1.8.0"
MOTO_SPEC = "moto[server]>=5,<6"

S3_ACCESS_KEY = "sandcat"
S3_SECRET_KEY = "sandcat-secret"
S3_REGION = "us-east-1"

HOST = "127.0.0.1"
SCRIPTS_DIR = Path(__file__).resolve().parent
FERRETDB_MODULE_DIR = SCRIPTS_DIR / "ferretdb"

START_TIMEOUT: dict[str, float] = {
    "postgres": 60.0,
    "redis": 30.0,
    "kafka": 180.0,
    "mongo": 60.0,
    "s3": 60.0,
}


def cache_dir() -> Path:
    """Root of everything this script downloads or builds."""
    env = os.environ.get("SANDCAT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "sandcat"


# --------------------------------------------------------------------------- errors, logging


class ServiceError(RuntimeError):
    """A service could not be installed, started or stopped."""

    def __init__(self, service: str, message: str, log: Path | None = None) -> None:
        self.service = service
        self.log = log
        text = f"sandcat services: {service}: {message}"
        if log is not None:
            text += f" (see log {log})"
        super().__init__(text)


def say(message: str) -> None:
    """Print a progress line to stderr."""
    stamp = time.strftime("%H:%M:%S")
    print(f"[services {stamp}] {message}", file=sys.stderr, flush=True)


def _log_tail(log: Path, lines: int = 25) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- process helpers


def _run(
    argv: Sequence[str],
    *,
    service: str,
    log: Path | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    user: str | None = None,
    timeout: float | None = None,
    what: str | None = None,
) -> str:
    """Run a command to completion; return stdout, or raise ServiceError.

    With ``log`` the output is appended to that file instead of captured.
    """
    label = what or " ".join(argv[:3])
    kwargs: dict[str, Any] = {}
    if user is not None:
        pw = pwd.getpwnam(user)
        kwargs.update(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
    try:
        if log is not None:
            with open(log, "ab") as fh:
                fh.write(f"\n$ {' '.join(argv)}\n".encode())
                fh.flush()
                proc = subprocess.run(
                    list(argv),
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                    **kwargs,
                )
            out = ""
        else:
            proc = subprocess.run(
                list(argv),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                **kwargs,
            )
            out = proc.stdout
    except FileNotFoundError as exc:
        raise ServiceError(service, f"{label}: command not found ({exc.filename})", log) from exc
    except subprocess.TimeoutExpired as exc:
        raise ServiceError(service, f"{label}: timed out after {timeout:.0f}s", log) from exc
    if proc.returncode != 0:
        detail = "" if log is not None else f": {(proc.stderr or proc.stdout or '').strip()[-800:]}"
        raise ServiceError(service, f"{label} failed with exit code {proc.returncode}{detail}", log)
    return out


# Popen objects of the processes started by this Python process, kept so that they
# are reaped (no zombies, no ResourceWarning) when stop_services() runs in-process.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def _proc_starttime(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); the command name (field 2) may contain spaces, so split after ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if len(fields) > 19 else None


def _proc_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def _spawn(
    name: str,
    argv: Sequence[str],
    run_dir: Path,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    user: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running service process, logging to DIR/<name>.log, pid in DIR/<name>.pid."""
    log = run_dir / f"{name}.log"
    kwargs: dict[str, Any] = {}
    if user is not None:
        pw = pwd.getpwnam(user)
        kwargs.update(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
    with open(log, "ab") as fh:
        fh.write(f"\n$ {' '.join(argv)}\n".encode())
        fh.flush()
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kwargs,
            )
        except OSError as exc:
            raise ServiceError(name, f"cannot execute {argv[0]}: {exc}", log) from exc
    _CHILDREN[proc.pid] = proc
    start = _proc_starttime(proc.pid) or ""
    (run_dir / f"{name}.pid").write_text(f"{proc.pid}\nstarttime={start}\n")
    return proc


def _read_pidfile(path: Path) -> tuple[int, str] | None:
    try:
        lines = path.read_text().splitlines()
        pid = int(lines[0].strip())
    except (OSError, ValueError, IndexError):
        return None
    start = ""
    for line in lines[1:]:
        if line.startswith("starttime="):
            start = line.split("=", 1)[1].strip()
    return pid, start


def _pid_is_ours(pid: int, start: str) -> bool:
    """True when pid is alive and is the same process that the pid file recorded."""
    if not _proc_alive(pid):
        return False
    return not start or _proc_starttime(pid) == start


def _wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    child = _CHILDREN.get(pid)
    while time.monotonic() < deadline:
        if child is not None:
            if child.poll() is not None:
                _CHILDREN.pop(pid, None)
                return True
        elif not _proc_alive(pid):
            return True
        time.sleep(0.1)
    return False


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _wait_until(
    name: str,
    proc: subprocess.Popen[bytes],
    log: Path,
    timeout: float,
    probe: Callable[[], bool],
) -> None:
    """Poll ``probe`` until it returns True; fail fast if the process exits."""
    deadline = time.monotonic() + timeout
    last_error = "no answer yet"
    while True:
        code = proc.poll()
        if code is not None:
            raise ServiceError(name, f"process exited with code {code} before it answered", log)
        try:
            if probe():
                return
        except (OSError, ValueError, EOFError, http.client.HTTPException, ServiceError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            raise ServiceError(name, f"did not answer within {timeout:.0f}s ({last_error})", log)
        time.sleep(0.25)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return bytes(buf)


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    """Serialize installs between concurrent processes (e.g. two CI jobs)."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".install.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- Debian packages


@dataclass
class _InstallContext:
    """State shared by the installers of one install run."""

    apt_updated: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    def apt_install(self, service: str, packages: Sequence[str]) -> None:
        if shutil.which("apt-get") is None:
            raise ServiceError(
                service, f"needs Debian packages {' '.join(packages)} but apt-get is missing"
            )
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        if not self.apt_updated:
            say("apt-get update")
            _run(
                ["apt-get", "update"], service=service, env=env, timeout=600, what="apt-get update"
            )
            self.apt_updated = True
        say(f"apt-get install {' '.join(packages)}")
        _run(
            ["apt-get", "install", "-y", "--no-install-recommends", *packages],
            service=service,
            env=env,
            timeout=900,
            what=f"apt-get install {' '.join(packages)}",
        )


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOFLAGS", "-buildvcs=false")
    return env


def _go() -> str:
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if go is None:
        raise ServiceError("go", "the Go toolchain (go) is not installed")
    return go


def _java() -> str:
    java = shutil.which("java")
    if java is None:
        raise ServiceError("kafka", "java (17+) is not installed")
    return java


# --------------------------------------------------------------------------- service base


class Service:
    """One kind of service: how to install it, start it, probe it."""

    name: str = ""

    def installed(self) -> bool:
        raise NotImplementedError

    def install(self, ctx: _InstallContext) -> None:
        raise NotImplementedError

    def ports_needed(self) -> tuple[str, ...]:
        return ("port",)

    def start(
        self, run_dir: Path, ports: dict[str, int]
    ) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
        """Start the process; return it and the info block for services.json (after readiness)."""
        raise NotImplementedError

    def probe(self, info: dict[str, Any]) -> bool:
        """Whether a running instance answers (used by status)."""
        raise NotImplementedError

    def env(self, info: dict[str, Any]) -> dict[str, str]:
        raise NotImplementedError

    def stop_signal(self) -> signal.Signals:
        return signal.SIGTERM

    def cleanup(self, info: dict[str, Any]) -> None:
        """Remove anything kept outside the run dir."""


# --------------------------------------------------------------------------- PostgreSQL


def _pg_bindir() -> Path | None:
    preferred = Path(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
    if (preferred / "initdb").exists():
        return preferred
    found = sorted(
        (p.parent for p in Path("/usr/lib/postgresql").glob("*/bin/initdb")),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    return found[-1] if found else None


def _can_reach_as(user: str, path: Path) -> bool:
    pw = pwd.getpwnam(user)
    res = subprocess.run(
        ["test", "-w", str(path), "-a", "-x", str(path)],
        user=pw.pw_uid,
        group=pw.pw_gid,
        extra_groups=[],
        check=False,
    )
    return res.returncode == 0


class Postgres(Service):
    name = "postgres"

    def installed(self) -> bool:
        bindir = _pg_bindir()
        if bindir is None:
            return False
        tools = ("initdb", "postgres", "pg_isready", "psql")
        return all((bindir / t).exists() for t in tools) and _user_exists("postgres")

    def install(self, ctx: _InstallContext) -> None:
        try:
            ctx.apt_install(self.name, [f"postgresql-{PG_MAJOR}", f"postgresql-client-{PG_MAJOR}"])
        except ServiceError:
            say(f"postgresql-{PG_MAJOR} not installable, trying Debian's default postgresql")
            ctx.apt_install(self.name, ["postgresql", "postgresql-client"])
        if not self.installed():
            raise ServiceError(self.name, "PostgreSQL binaries still missing after apt-get install")

    def start(
        self, run_dir: Path, ports: dict[str, int]
    ) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
        bindir = _pg_bindir()
        assert bindir is not None
        port = ports["port"]
        log = run_dir / "postgres.log"
        pw = pwd.getpwnam("postgres")

        # initdb/postgres refuse root: they run as `postgres`, which must be able to reach
        # the data dir.  A private temp dir (0700, e.g. pytest's) is not reachable: then
        # the cluster lives in a postgres-owned folder in the system temp dir instead.
        base = run_dir / "postgres"
        base.mkdir(exist_ok=True)
        os.chown(base, pw.pw_uid, pw.pw_gid)
        external: str | None = None
        link = run_dir / "postgres-data"
        if link.is_symlink() and link.resolve().is_dir():  # a restart: the cluster kept there
            base.rmdir()
            external = str(link.resolve())
            base = Path(external)
        elif not _can_reach_as("postgres", base):
            base.rmdir()
            external = tempfile.mkdtemp(prefix="sandcat-pg-")
            os.chown(external, pw.pw_uid, pw.pw_gid)
            os.chmod(external, 0o700)
            base = Path(external)
            with contextlib.suppress(OSError):
                link.unlink()
            link.symlink_to(base)
        data = base / "data"
        pwfile = base / "pwfile"
        pwfile.write_text(PG_PASSWORD + "\n")
        os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        os.chmod(pwfile, 0o600)

        env = {"PATH": f"{bindir}:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": pw.pw_dir, "TZ": "UTC"}
        # A restart (`stop postgres` then `start postgres` on the same run dir) keeps the cluster.
        fresh = not (data / "PG_VERSION").exists()
        if data.exists() and not (data / "postmaster.opts").exists():
            # initdb was interrupted (or its cluster never started): initdb refuses a
            # folder that is not empty, so the half-made one is removed and made again.
            say(f"postgres: {data} is half-made (an interrupted initdb): removing it, initdb again")
            shutil.rmtree(data)
            fresh = True
        if fresh:
            say(f"postgres: initdb {data}")
            _run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    PG_USER,
                    f"--pwfile={pwfile}",
                    "--auth-local=scram-sha-256",
                    "--auth-host=scram-sha-256",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ],
                service=self.name,
                log=log,
                env=env,
                user="postgres",
                timeout=120,
                what="initdb",
            )
        pwfile.unlink()
        # Unix sockets disabled: the path limit (107 bytes) is easily exceeded by temp dirs.
        argv = [
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-c",
            f"listen_addresses={HOST}",
            "-c",
            "unix_socket_directories=",
            "-c",
            "max_connections=300",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "log_min_messages=warning",
            "-c",
            "logging_collector=off",
            "-c",
            "timezone=UTC",
        ]
        proc = _spawn(self.name, argv, run_dir, env=env, user="postgres")
        info: dict[str, Any] = {
            "host": HOST,
            "port": port,
            "user": PG_USER,
            "password": PG_PASSWORD,
            "database": PG_DB,
            "data_dir": str(data),
            "external_dir": external,
            "dsn": f"postgresql://{PG_USER}:{PG_PASSWORD}@{HOST}:{port}/{PG_DB}",
            "bindir": str(bindir),
        }
        pgenv = dict(env, PGPASSWORD=PG_PASSWORD, PGCONNECT_TIMEOUT="3")

        def ready() -> bool:
            res = subprocess.run(
                [
                    str(bindir / "pg_isready"),
                    "-q",
                    "-h",
                    HOST,
                    "-p",
                    str(port),
                    "-d",
                    "postgres",
                    "-U",
                    PG_USER,
                ],
                env=pgenv,
                check=False,
                timeout=10,
            )
            return res.returncode == 0

        _wait_until(self.name, proc, log, START_TIMEOUT[self.name], ready)
        psql = [
            str(bindir / "psql"),
            "-X",
            "-q",
            "-t",
            "-A",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            HOST,
            "-p",
            str(port),
            "-U",
            PG_USER,
        ]
        if fresh:
            _run(
                [*psql, "-d", "postgres", "-c", f"CREATE DATABASE {PG_DB}"],
                service=self.name,
                env=pgenv,
                timeout=60,
                what="CREATE DATABASE",
            )
        version = _run(
            [*psql, "-d", PG_DB, "-c", "SHOW server_version"],
            service=self.name,
            env=pgenv,
            timeout=30,
            what="SELECT version",
        ).strip()
        info["version"] = version
        info["url"] = info["dsn"]
        return proc, info

    def probe(self, info: dict[str, Any]) -> bool:
        psql = Path(info.get("bindir", "")) / "psql"
        env = dict(os.environ, PGPASSWORD=str(info["password"]), PGCONNECT_TIMEOUT="3")
        res = subprocess.run(
            [
                str(psql),
                "-X",
                "-t",
                "-A",
                "-h",
                HOST,
                "-p",
                str(info["port"]),
                "-U",
                PG_USER,
                "-d",
                PG_DB,
                "-c",
                "SELECT 1",
            ],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=15,
        )
        return res.returncode == 0 and res.stdout.strip() == "1"

    def env(self, info: dict[str, Any]) -> dict[str, str]:
        return {"SANDCAT_TEST_PG_DSN": str(info["dsn"])}

    def stop_signal(self) -> signal.Signals:
        return signal.SIGINT  # "fast" shutdown: does not wait for clients to disconnect

    def cleanup(self, info: dict[str, Any]) -> None:
        external = info.get("external_dir")
        if external:
            shutil.rmtree(external, ignore_errors=True)


def _user_exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


# --------------------------------------------------------------------------- Redis


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

    def install(self, ctx: _InstallContext) -> None:
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
        proc = _spawn(self.name, argv, run_dir)
        log = run_dir / "redis.log"
        _wait_until(
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


# --------------------------------------------------------------------------- Kafka (KRaft)

_KAFKA_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>sandcat.local</groupId>
  <artifactId>kafka-server-deps</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_{scala}</artifactId>
      <version>{kafka}</version>
    </dependency>
    <!-- SLF4J 1.x binding to log4j2, so the broker logs somewhere -->
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>{log4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_KAFKA_LOG4J2 = """status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.state.name = state.change.logger
logger.state.level = WARN
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


def _kafka_home() -> Path:
    return cache_dir() / "kafka" / f"{KAFKA_SCALA}-{KAFKA_VERSION}"


def _kafka_request(
    sock: socket.socket, api_key: int, version: int, corr: int, body: bytes
) -> bytes:
    client = b"sandcat-services"
    header = struct.pack(">hhih", api_key, version, corr, len(client)) + client
    msg = header + body
    sock.sendall(struct.pack(">i", len(msg)) + msg)
    size = struct.unpack(">i", _recv_exact(sock, 4))[0]
    resp = _recv_exact(sock, size)
    got = struct.unpack(">i", resp[:4])[0]
    if got != corr:
        raise ValueError(f"kafka: correlation id {got} != {corr}")
    return resp[4:]


def _kafka_metadata(port: int, timeout: float = 5.0) -> dict[str, Any]:
    """ApiVersions v0 then Metadata (v4..v8, non-flexible) over a raw socket."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        body = _kafka_request(sock, 18, 0, 1, b"")
        error, count = struct.unpack(">hi", body[:6])
        if error != 0:
            raise ValueError(f"kafka ApiVersions error {error}")
        ranges: dict[int, tuple[int, int]] = {}
        off = 6
        for _ in range(count):
            key, lo, hi = struct.unpack(">hhh", body[off : off + 6])
            ranges[key] = (lo, hi)
            off += 6
        lo, hi = ranges.get(3, (0, -1))
        version = max(lo, 4)
        if version > min(hi, 8):
            raise ValueError(f"kafka: no non-flexible Metadata version in {lo}..{hi}")
        req = struct.pack(">i", -1)  # null topics: all
        req += b"\x00"  # allow_auto_topic_creation (v4+)
        if version >= 8:
            req += b"\x00\x00"  # include cluster/topic authorized operations
        body = _kafka_request(sock, 3, version, 2, req)
        off = 4  # throttle_time_ms
        (nbrokers,) = struct.unpack(">i", body[off : off + 4])
        off += 4
        brokers = []
        for _ in range(nbrokers):
            node_id, hlen = struct.unpack(">ih", body[off : off + 6])
            off += 6
            host = body[off : off + hlen].decode()
            off += hlen
            (bport, rlen) = struct.unpack(">ih", body[off : off + 6])
            off += 6 + max(rlen, 0)
            brokers.append({"node_id": node_id, "host": host, "port": bport})
        (clen,) = struct.unpack(">h", body[off : off + 2])
        off += 2
        cluster_id = body[off : off + clen].decode() if clen >= 0 else None
        off += max(clen, 0)
        (controller,) = struct.unpack(">i", body[off : off + 4])
        return {
            "brokers": brokers,
            "cluster_id": cluster_id,
            "controller_id": controller,
            "metadata_version": version,
        }


class Kafka(Service):
    name = "kafka"

    def installed(self) -> bool:
        return (_kafka_home() / ".complete").exists()

    def install(self, ctx: _InstallContext) -> None:
        mvn = shutil.which("mvn")
        if mvn is None:
            ctx.apt_install(self.name, ["maven"])
            mvn = shutil.which("mvn")
            if mvn is None:
                raise ServiceError(self.name, "Maven (mvn) is not installed")
        _java()
        home = _kafka_home()
        home.mkdir(parents=True, exist_ok=True)
        (home / "pom.xml").write_text(
            _KAFKA_POM.format(scala=KAFKA_SCALA, kafka=KAFKA_VERSION, log4j=LOG4J_VERSION)
        )
        tmp_lib = home / "lib.tmp"
        shutil.rmtree(tmp_lib, ignore_errors=True)
        log = home / "install.log"
        say(
            f"kafka: mvn dependency:copy-dependencies (kafka_{KAFKA_SCALA} {KAFKA_VERSION}), "
            f"log {log}"
        )
        _run(
            [
                mvn,
                "-B",
                "-q",
                "-f",
                str(home / "pom.xml"),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={tmp_lib}",
                "-DincludeScope=runtime",
            ],
            service=self.name,
            log=log,
            timeout=900,
            what="mvn dependency:copy-dependencies",
        )
        if not (tmp_lib / f"kafka_{KAFKA_SCALA}-{KAFKA_VERSION}.jar").exists():
            raise ServiceError(
                self.name, "kafka jar missing after mvn dependency:copy-dependencies", log
            )
        shutil.rmtree(home / "lib", ignore_errors=True)
        tmp_lib.rename(home / "lib")
        (home / "log4j2.properties").write_text(_KAFKA_LOG4J2)
        (home / ".complete").write_text(KAFKA_VERSION + "\n")

    def ports_needed(self) -> tuple[str, ...]:
        return ("port", "controller_port")

    def start(
        self, run_dir: Path, ports: dict[str, int]
    ) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
        port, cport = ports["port"], ports["controller_port"]
        home = _kafka_home()
        kdir = run_dir / "kafka"
        data = kdir / "data"
        data.mkdir(parents=True, exist_ok=True)
        props = kdir / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.bootstrap.servers={HOST}:{cport}",
                    f"listeners=PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{cport}",
                    f"advertised.listeners=PLAINTEXT://{HOST}:{port}",
                    "controller.listener.names=CONTROLLER",
                    "inter.broker.listener.name=PLAINTEXT",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"log.dirs={data}",
                    "auto.create.topics.enable=true",
                    "num.partitions=8",
                    "default.replication.factor=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=8",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "transaction.state.log.num.partitions=4",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "min.insync.replicas=1",
                    "group.initial.rebalance.delay.ms=0",
                    "log.flush.interval.messages=9223372036854775807",
                    "num.network.threads=2",
                    "num.io.threads=4",
                    "",
                ]
            )
        )
        java = _java()
        log = run_dir / "kafka.log"
        cp = f"{home / 'lib'}/*"
        log4j = f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}"
        cluster_id = ""
        while not cluster_id or cluster_id.startswith("-"):
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        # A restart (`stop kafka` then `start kafka` on the same run dir) keeps the log dirs.
        if not (data / "meta.properties").exists():
            say("kafka: formatting storage (kafka.tools.StorageTool format --standalone)")
            _run(
                [
                    java,
                    "-Xmx256m",
                    "-XX:TieredStopAtLevel=1",
                    log4j,
                    "-cp",
                    cp,
                    "kafka.tools.StorageTool",
                    "format",
                    "--standalone",
                    "-t",
                    cluster_id,
                    "-c",
                    str(props),
                ],
                service=self.name,
                log=log,
                cwd=kdir,
                timeout=180,
                what="kafka StorageTool format",
            )
        argv = [
            java,
            KAFKA_HEAP,
            "-Xms256m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true",
            log4j,
            f"-Dkafka.logs.dir={kdir}",
            "-cp",
            cp,
            "kafka.Kafka",
            str(props),
        ]
        proc = _spawn(self.name, argv, run_dir, cwd=kdir)
        meta: dict[str, Any] = {}

        def ready() -> bool:
            m = _kafka_metadata(port)
            if m["brokers"] and m["controller_id"] >= 0:
                meta.update(m)
                return True
            return False

        _wait_until(self.name, proc, log, START_TIMEOUT[self.name], ready)
        info: dict[str, Any] = {
            "host": HOST,
            "port": port,
            "controller_port": cport,
            "bootstrap_servers": f"{HOST}:{port}",
            "url": f"{HOST}:{port}",
            "cluster_id": meta.get("cluster_id") or cluster_id,
            "version": KAFKA_VERSION,
            "scala_version": KAFKA_SCALA,
            "config": str(props),
        }
        return proc, info

    def probe(self, info: dict[str, Any]) -> bool:
        return bool(_kafka_metadata(int(info["port"]))["brokers"])

    def env(self, info: dict[str, Any]) -> dict[str, str]:
        return {"SANDCAT_TEST_KAFKA": str(info["bootstrap_servers"])}


# ------------------------------------------------------------------ MongoDB wire (FerretDB)


def _bson_encode(doc: dict[str, Any]) -> bytes:
    """Tiny BSON encoder: str, bool, int (int32), float."""
    out = bytearray()
    for key, value in doc.items():
        k = key.encode() + b"\x00"
        if isinstance(value, bool):
            out += b"\x08" + k + (b"\x01" if value else b"\x00")
        elif isinstance(value, int):
            out += b"\x10" + k + struct.pack("<i", value)
        elif isinstance(value, float):
            out += b"\x01" + k + struct.pack("<d", value)
        elif isinstance(value, str):
            v = value.encode() + b"\x00"
            out += b"\x02" + k + struct.pack("<i", len(v)) + v
        else:
            raise TypeError(f"cannot BSON-encode {type(value).__name__}")
    return struct.pack("<i", len(out) + 5) + bytes(out) + b"\x00"


def _bson_decode(data: bytes) -> dict[str, Any]:
    """Tiny BSON decoder for the top level of a reply (nested documents kept raw)."""
    (size,) = struct.unpack("<i", data[:4])
    off, end = 4, size - 1
    doc: dict[str, Any] = {}
    while off < end:
        kind = data[off]
        off += 1
        nul = data.index(b"\x00", off)
        key = data[off:nul].decode()
        off = nul + 1
        value: Any
        if kind == 0x01:
            (value,) = struct.unpack("<d", data[off : off + 8])
            off += 8
        elif kind == 0x02:
            (n,) = struct.unpack("<i", data[off : off + 4])
            value = data[off + 4 : off + 3 + n].decode()
            off += 4 + n
        elif kind in (0x03, 0x04):
            (n,) = struct.unpack("<i", data[off : off + 4])
            value = data[off : off + n]
            off += n
        elif kind == 0x05:
            (n,) = struct.unpack("<i", data[off : off + 4])
            value = data[off + 5 : off + 5 + n]
            off += 5 + n
        elif kind == 0x07:
            value = data[off : off + 12].hex()
            off += 12
        elif kind == 0x08:
            value = data[off] == 1
            off += 1
        elif kind in (0x09, 0x12):
            (value,) = struct.unpack("<q", data[off : off + 8])
            off += 8
        elif kind == 0x0A:
            value = None
        elif kind == 0x10:
            (value,) = struct.unpack("<i", data[off : off + 4])
            off += 4
        elif kind == 0x11:
            (value,) = struct.unpack("<Q", data[off : off + 8])
            off += 8
        elif kind == 0x13:
            value = data[off : off + 16]
            off += 16
        else:
            break  # unknown type: stop, the fields read so far are enough
        doc[key] = value
    return doc


def _mongo_command(port: int, command: dict[str, Any], timeout: float = 5.0) -> dict[str, Any]:
    """Send one OP_MSG command and return the top level of the reply document."""
    body = struct.pack("<I", 0) + b"\x00" + _bson_encode(command)
    header = struct.pack("<iiii", 16 + len(body), 1, 0, 2013)
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(header + body)
        length, _req, _resp, opcode = struct.unpack("<iiii", _recv_exact(sock, 16))
        payload = _recv_exact(sock, length - 16)
    if opcode != 2013:
        raise ValueError(f"mongo: unexpected reply opcode {opcode}")
    if payload[4] != 0:
        raise ValueError("mongo: reply has no body section")
    return _bson_decode(payload[5:])


def _mongo_ok(reply: dict[str, Any]) -> bool:
    return float(reply.get("ok", 0)) == 1.0


def _ferretdb_bin() -> Path:
    """Cached binary, keyed by the FerretDB version and the content of scripts/ferretdb."""
    digest = hashlib.sha256()
    for fname in ("go.mod", "go.sum", "main.go"):
        with contextlib.suppress(OSError):
            digest.update((FERRETDB_MODULE_DIR / fname).read_bytes())
    return cache_dir() / "bin" / f"ferretdb-{FERRETDB_VERSION}-{digest.hexdigest()[:10]}"


def _ferretdb_handler() -> str:
    handler = os.environ.get("SANDCAT_MONGO_HANDLER", "").strip().lower() or "sqlite"
    if handler == "postgresql":
        handler = "pg"
    if handler not in FERRETDB_HANDLERS:
        raise ServiceError(
            "mongo",
            f"SANDCAT_MONGO_HANDLER={handler!r}: choose from {' '.join(FERRETDB_HANDLERS)}",
        )
    return handler


def _ferretdb_pg_database(run_dir: Path) -> str:
    """Create FerretDB's database on this run's PostgreSQL and return its URL."""
    pg = _load_state(run_dir)["services"].get("postgres")
    pid = _read_pidfile(run_dir / "postgres.pid")
    if not pg or pid is None or not _pid_is_ours(*pid):
        raise ServiceError(
            "mongo",
            "SANDCAT_MONGO_HANDLER=pg needs the postgres service of the same run "
            "(start postgres together with mongo)",
        )
    env = dict(os.environ, PGPASSWORD=str(pg["password"]), PGCONNECT_TIMEOUT="3")
    psql = [str(Path(pg["bindir"]) / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    psql += ["-h", HOST, "-p", str(pg["port"]), "-U", str(pg["user"]), "-d", "postgres"]
    _run(
        [*psql, "-c", f"DROP DATABASE IF EXISTS {FERRETDB_PG_DB}"],
        service="mongo",
        env=env,
        timeout=60,
        what="DROP DATABASE ferretdb",
    )
    _run(
        [*psql, "-c", f"CREATE DATABASE {FERRETDB_PG_DB}"],
        service="mongo",
        env=env,
        timeout=60,
        what="CREATE DATABASE ferretdb",
    )
    return f"postgres://{pg['user']}:{pg['password']}@{HOST}:{pg['port']}/{FERRETDB_PG_DB}"


class Mongo(Service):
    name = "mongo"

    def installed(self) -> bool:
        return _ferretdb_bin().exists()

    def install(self, ctx: _InstallContext) -> None:
        # `go install github.com/FerretDB/FerretDB/cmd/ferretdb@v1.24.2` builds, but the binary
        # panics at start-up ("Invalid build/version/version.txt file content"): that file is
        # generated by FerretDB's own build tooling.  So we build a tiny main module
        # (scripts/ferretdb) that embeds github.com/FerretDB/FerretDB/ferretdb v1.24.2.
        if not (FERRETDB_MODULE_DIR / "go.mod").exists():
            raise ServiceError(self.name, f"{FERRETDB_MODULE_DIR}/go.mod is missing")
        target = _ferretdb_bin()
        target.parent.mkdir(parents=True, exist_ok=True)
        log = cache_dir() / "ferretdb-build.log"
        say(
            f"mongo: go build FerretDB {FERRETDB_VERSION} (embedded; sqlite and pg handlers), "
            f"log {log}"
        )
        tmp = target.with_name(target.name + ".tmp")
        _run(
            [_go(), "build", "-trimpath", "-o", str(tmp), "."],
            service=self.name,
            log=log,
            cwd=FERRETDB_MODULE_DIR,
            env=_go_env(),
            timeout=1800,
            what="go build ferretdb",
        )
        tmp.rename(target)

    def start(
        self, run_dir: Path, ports: dict[str, int]
    ) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
        port = ports["port"]
        data = run_dir / "mongo"
        data.mkdir(exist_ok=True)
        binary = _ferretdb_bin()
        handler = _ferretdb_handler()
        # The embedded build keeps its state in memory (telemetry disabled) and opens no debug
        # listener, so it needs neither --state-dir nor --debug-addr.
        argv = [str(binary), f"--listen-addr={HOST}:{port}", "--log-level=warn"]
        if handler == "pg":
            argv += ["--handler=pg", f"--postgresql-url={_ferretdb_pg_database(run_dir)}"]
        else:
            argv += ["--handler=sqlite", f"--sqlite-url=file:{data}/"]
        proc = _spawn(self.name, argv, run_dir, cwd=data)
        log = run_dir / "mongo.log"
        _wait_until(
            self.name,
            proc,
            log,
            START_TIMEOUT[self.name],
            lambda: _mongo_ok(_mongo_command(port, {"hello": 1, "$db": "admin"})),
        )
        build = _mongo_command(port, {"buildInfo": 1, "$db": "admin"})
        version = _run([str(binary), "--version"], service=self.name, timeout=30).strip()
        info: dict[str, Any] = {
            "host": HOST,
            "port": port,
            "url": f"mongodb://{HOST}:{port}/",
            "version": f"{version}, {handler} handler",
            "handler": handler,
            "mongodb_compat_version": build.get("version"),
            "implementation": f"FerretDB ({handler} handler)",
            "data_dir": str(data),
        }
        return proc, info

    def probe(self, info: dict[str, Any]) -> bool:
        return _mongo_ok(_mongo_command(int(info["port"]), {"ping": 1, "$db": "admin"}))

    def env(self, info: dict[str, Any]) -> dict[str, str]:
        return {"SANDCAT_TEST_MONGO_URL": str(info["url"])}


# ------------------------------------------------------------ S3 (versitygw, moto fallback)


def _sigv4_list_buckets(port: int, timeout: float = 5.0) -> int:
    """Signed ListBuckets (GET /) with the service's credentials; return the HTTP status."""
    now = datetime.datetime.now(datetime.UTC)
    amz_date = now.strftime("%Y%m%dT%H%M%SZ")
    day = now.strftime("%Y%m%d")
    host = f"{HOST}:{port}"
    payload_hash = hashlib.sha256(b"").hexdigest()
    canonical = "\n".join(
        [
            "GET",
            "/",
            "",
            f"host:{host}",
            f"x-amz-content-sha256:{payload_hash}",
            f"x-amz-date:{amz_date}",
            "",
            "host;x-amz-content-sha256;x-amz-date",
            payload_hash,
        ]
    )
    scope = f"{day}/{S3_REGION}/s3/aws4_request"
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + S3_SECRET_KEY).encode()
    for part in (day, S3_REGION, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    auth = (
        f"AWS4-HMAC-SHA256 Credential={S3_ACCESS_KEY}/{scope}, "
        f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}"
    )
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        conn.request(
            "GET",
            "/",
            headers={
                "Host": host,
                "x-amz-date": amz_date,
                "x-amz-content-sha256": payload_hash,
                "Authorization": auth,
            },
        )
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def _versitygw_bin() -> Path:
    return cache_dir() / "bin" / f"versitygw-{VERSITYGW_VERSION}"


def _moto_venv() -> Path:
    return cache_dir() / "moto-venv"


def _xattrs_supported(path: Path) -> bool:
    probe = path / ".xattr-probe"
    probe.write_bytes(b"")
    try:
        os.setxattr(probe, "user.sandcat.probe", b"1")
        return os.getxattr(probe, "user.sandcat.probe") == b"1"
    except OSError:
        return False
    finally:
        probe.unlink()


class S3(Service):
    name = "s3"

    def backend(self) -> str | None:
        forced = os.environ.get("SANDCAT_S3_BACKEND")  # "versitygw" or "moto", for testing
        if forced in (None, "", "versitygw") and _versitygw_bin().exists():
            return "versitygw"
        if forced in (None, "", "moto") and (_moto_venv() / "bin" / "moto_server").exists():
            return "moto"
        return None

    def installed(self) -> bool:
        return self.backend() is not None

    def install(self, ctx: _InstallContext) -> None:
        forced = os.environ.get("SANDCAT_S3_BACKEND")
        if forced != "moto":
            target = _versitygw_bin()
            target.parent.mkdir(parents=True, exist_ok=True)
            log = cache_dir() / "versitygw-build.log"
            gobin = cache_dir() / "go-build" / f"versitygw-{VERSITYGW_VERSION}"
            gobin.mkdir(parents=True, exist_ok=True)
            say(f"s3: go install versitygw@{VERSITYGW_VERSION}, log {log}")
            try:
                _run(
                    [
                        _go(),
                        "install",
                        f"github.com/versity/versitygw/cmd/versitygw@{VERSITYGW_VERSION}",
                    ],
                    service=self.name,
                    log=log,
                    env=dict(_go_env(), GOBIN=str(gobin)),
                    cwd=cache_dir(),
                    timeout=1800,
                    what="go install versitygw",
                )
                shutil.move(str(gobin / "versitygw"), str(target))
                return
            except ServiceError as exc:
                if forced == "versitygw":
                    raise
                say(f"s3: versitygw could not be built ({exc}); falling back to moto_server")
        venv = _moto_venv()
        log = cache_dir() / "moto-install.log"
        say(f"s3: pip install {MOTO_SPEC} into {venv}, log {log}")
        shutil.rmtree(venv, ignore_errors=True)
        _run(
            [sys.executable, "-m", "venv", str(venv)],
            service=self.name,
            log=log,
            timeout=300,
            what="python -m venv",
        )
        _run(
            [str(venv / "bin" / "pip"), "install", "-q", MOTO_SPEC],
            service=self.name,
            log=log,
            timeout=900,
            what="pip install moto[server]",
        )

    def start(
        self, run_dir: Path, ports: dict[str, int]
    ) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
        port = ports["port"]
        backend = self.backend()
        log = run_dir / "s3.log"
        root = run_dir / "s3"
        root.mkdir(exist_ok=True)
        info: dict[str, Any] = {
            "host": HOST,
            "port": port,
            "endpoint": f"http://{HOST}:{port}",
            "url": f"http://{HOST}:{port}",
            "access_key": S3_ACCESS_KEY,
            "secret_key": S3_SECRET_KEY,
            "region": S3_REGION,
            "backend": backend,
        }
        if backend == "versitygw":
            data = root / "data"
            data.mkdir(exist_ok=True)
            argv = [
                str(_versitygw_bin()),
                "--access",
                S3_ACCESS_KEY,
                "--secret",
                S3_SECRET_KEY,
                "--region",
                S3_REGION,
                "--port",
                f"{HOST}:{port}",
                "--quiet",
                "posix",
            ]
            if not _xattrs_supported(data):
                sidecar = root / "meta"
                sidecar.mkdir(exist_ok=True)
                argv += ["--sidecar", str(sidecar)]
                info["sidecar"] = str(sidecar)
            argv.append(str(data))
            info["version"] = f"versitygw {VERSITYGW_VERSION}"
            info["data_dir"] = str(data)
        elif backend == "moto":
            argv = [str(_moto_venv() / "bin" / "moto_server"), "-H", HOST, "-p", str(port)]
            out = _run(
                [
                    str(_moto_venv() / "bin" / "python"),
                    "-c",
                    "import importlib.metadata as m; print(m.version('moto'))",
                ],
                service=self.name,
                timeout=60,
            )
            info["version"] = f"moto {out.strip()}"
        else:
            raise ServiceError(self.name, "no S3 server installed (run install)", log)
        proc = _spawn(self.name, argv, run_dir, cwd=root)
        _wait_until(
            self.name, proc, log, START_TIMEOUT[self.name], lambda: _sigv4_list_buckets(port) == 200
        )
        return proc, info

    def probe(self, info: dict[str, Any]) -> bool:
        return _sigv4_list_buckets(int(info["port"])) == 200

    def env(self, info: dict[str, Any]) -> dict[str, str]:
        return {
            "SANDCAT_TEST_S3_ENDPOINT": str(info["endpoint"]),
            "SANDCAT_TEST_S3_ACCESS_KEY": str(info["access_key"]),
            "SANDCAT_TEST_S3_SECRET_KEY": str(info["secret_key"]),
            "SANDCAT_TEST_S3_REGION": str(info["region"]),
        }


# --------------------------------------------------------------------------- registry and API

SERVICES: dict[str, Service] = {s.name: s for s in (Postgres(), Redis(), Kafka(), Mongo(), S3())}


def _names(names: Sequence[str] | None) -> list[str]:
    chosen = list(names) if names else list(ALL_SERVICES)
    unknown = [n for n in chosen if n not in SERVICES]
    if unknown:
        raise ServiceError(
            ",".join(unknown), f"unknown service (choose from {' '.join(ALL_SERVICES)})"
        )
    # keep the canonical order, drop duplicates
    return [n for n in ALL_SERVICES if n in chosen]


def install_services(names: Sequence[str] | None = None) -> dict[str, float]:
    """Install what is missing; return seconds spent per service (0 when cached)."""
    ctx = _InstallContext()
    with _install_lock():
        for name in _names(names):
            svc = SERVICES[name]
            t0 = time.monotonic()
            if svc.installed():
                say(f"{name}: installed (cached)")
            else:
                say(f"{name}: installing")
                svc.install(ctx)
                if not svc.installed():
                    raise ServiceError(
                        name, "install finished but the service is still not installed"
                    )
                say(f"{name}: installed in {time.monotonic() - t0:.1f}s")
            ctx.timings[name] = round(time.monotonic() - t0, 2)
    return ctx.timings


def _state_path(run_dir: Path) -> Path:
    return run_dir / "services.json"


def _load_state(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads(_state_path(run_dir).read_text())
    except (OSError, ValueError):
        return {"services": {}}
    if not isinstance(data, dict):
        return {"services": {}}
    data.setdefault("services", {})
    return data


def _write_outputs(run_dir: Path, state: dict[str, Any]) -> None:
    tmp = _state_path(run_dir).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.rename(_state_path(run_dir))
    lines = []
    for name in ALL_SERVICES:
        info = state["services"].get(name)
        if info:
            for key, value in SERVICES[name].env(info).items():
                lines.append(f"{key}={value}")
    (run_dir / "services.env").write_text("\n".join(lines) + ("\n" if lines else ""))


def _answers(name: str, info: dict[str, Any] | None) -> bool:
    """Whether the service recorded by ``info`` answers its probe now."""
    try:
        return bool(info) and SERVICES[name].probe(info or {})
    except (
        OSError,
        ValueError,
        EOFError,
        http.client.HTTPException,
        subprocess.SubprocessError,
    ):
        return False


def start_services(
    names: Sequence[str] | None,
    run_dir: str | os.PathLike[str],
    ports: dict[str, int] | None = None,
    *,
    recover: bool = False,
    stop_timeout: float = 45.0,
) -> dict[str, Any]:
    """Install (if needed) and start the named services (all if None/empty) under run_dir.

    Returns the content of run_dir/services.json.  ``ports`` may pin ports, keyed by service
    name (``kafka_controller`` for Kafka's controller listener).  A service stopped alone
    (``stop_services(run_dir, [name])``) starts again on its old ports with its data.  On
    failure the services started by this call are stopped again and ServiceError is raised.

    A service still running from an earlier start (its pid file names a live process) is an
    error, unless ``recover``: then it is reused if it answers its probe, else stopped
    (``stop_timeout``) and started again on its ports with its data (an unclean stop of
    ``make run-distributed``: a crash, a SIGKILL).
    """
    chosen = _names(names)
    rdir = Path(run_dir).resolve()
    rdir.mkdir(parents=True, exist_ok=True)
    state = _load_state(rdir)
    reused: set[str] = set()
    for name in chosen:
        pid = _read_pidfile(rdir / f"{name}.pid")
        if pid is None or not _pid_is_ours(*pid):
            continue
        if not recover:
            raise ServiceError(
                name,
                f"already running in {rdir} (pid {pid[0]}); stop it first",
                rdir / f"{name}.log",
            )
        if _answers(name, state["services"].get(name)):
            say(f"{name}: reusing pid {pid[0]}, left running by an earlier start (it answers)")
            reused.add(name)
            continue
        say(f"{name}: pid {pid[0]}, left by an earlier start, does not answer: restarting it")
        _stop_one(rdir, name, state, keep=True, deadline=time.monotonic() + stop_timeout)
    install_times = install_services(chosen)
    pinned = dict(ports or {})
    state.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    state["run_dir"] = str(rdir)
    state["cache_dir"] = str(cache_dir())
    taken: set[int] = set()
    resumed: set[str] = set()
    try:
        for name in chosen:
            if name in reused:
                continue
            svc = SERVICES[name]
            previous = state["services"].get(name) or {}
            resume = bool(previous.get("stopped"))
            if resume:
                resumed.add(name)
            want: dict[str, int] = {}
            for slot in svc.ports_needed():
                key = name if slot == "port" else f"{name}_{slot.removesuffix('_port')}"
                port = int(previous[slot]) if resume else pinned.get(key, 0)
                if port and (port in taken or not _port_is_free(port)):
                    raise ServiceError(name, f"port {port} ({key}) is already in use")
                while not port or port in taken:
                    port = _free_port()
                taken.add(port)
                want[slot] = port
            say(f"{name}: {'restarting' if resume else 'starting'} on {HOST}:{want['port']}")
            if not resume:
                (rdir / f"{name}.log").unlink(missing_ok=True)
            t0 = time.monotonic()
            proc, info = svc.start(rdir, want)
            elapsed = round(time.monotonic() - t0, 2)
            info.update(
                pid=proc.pid,
                log=str(rdir / f"{name}.log"),
                start_seconds=elapsed,
                install_seconds=install_times.get(name, 0.0),
            )
            state["services"][name] = info
            _write_outputs(rdir, state)
            say(f"{name}: ready in {elapsed:.1f}s ({info.get('version')})")
    except BaseException as exc:
        if isinstance(exc, ServiceError) and exc.log is not None:
            tail = _log_tail(exc.log)
            if tail:
                say(f"last lines of {exc.log}:\n{tail}")
        for name in chosen:  # none of them ran before this call, but the reused ones
            if name in reused:
                continue
            with contextlib.suppress(Exception):
                _stop_one(rdir, name, state, keep=name in resumed)
        with contextlib.suppress(Exception):
            _write_outputs(rdir, state)
        raise
    _write_outputs(rdir, state)
    return state


def _signal_stop(run_dir: Path, name: str) -> bool:
    """Send the service its stop signal if its pid file names a live process of ours;
    returns whether it did."""
    entry = _read_pidfile(run_dir / f"{name}.pid")
    svc = SERVICES.get(name)
    if entry is None or not _pid_is_ours(*entry):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(entry[0], svc.stop_signal() if svc else signal.SIGTERM)
    return True


def _stop_one(
    run_dir: Path,
    name: str,
    state: dict[str, Any],
    keep: bool = False,
    deadline: float | None = None,
) -> bool:
    """Stop one service by its pid file; return True if a process was stopped.  With
    ``keep`` its data and ports stay recorded, for ``start_services`` to restart it.  The
    process gets until ``deadline`` (monotonic; default 45 s from now), then SIGKILL."""
    pidfile = run_dir / f"{name}.pid"
    entry = _read_pidfile(pidfile)
    stopped = False
    svc = SERVICES.get(name)
    if entry is not None:
        pid, start = entry
        if _pid_is_ours(pid, start):
            sig = svc.stop_signal() if svc else signal.SIGTERM
            say(f"{name}: stopping pid {pid}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            grace = 45.0 if deadline is None else max(0.5, deadline - time.monotonic())
            if not _wait_exit(pid, grace):
                say(f"{name}: pid {pid} still running, sending SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                _wait_exit(pid, 10.0)
            stopped = True
        child = _CHILDREN.pop(pid, None)
        if child is not None:
            with contextlib.suppress(Exception):
                child.wait(timeout=1)
        pidfile.unlink(missing_ok=True)
    if keep:
        if name in state.get("services", {}):
            state["services"][name]["stopped"] = True
        return stopped
    info = state.get("services", {}).pop(name, None)
    if svc is not None and info:
        svc.cleanup(info)
    return stopped


def stop_services(
    run_dir: str | os.PathLike[str],
    names: Sequence[str] | None = None,
    timeout: float = 45.0,
) -> list[str]:
    """Stop every service started under run_dir (by its pid file); return the names stopped.

    With ``names``, stop only those and keep their data and ports: ``start_services`` with
    the same names and run dir brings them back as they were (a restart, e.g. a fault test).
    Every service is signalled at once and gets ``timeout`` seconds in all (not each) to
    exit before SIGKILL, so the whole stop is bounded.
    """
    rdir = Path(run_dir).resolve()
    state = _load_state(rdir)
    targets = _names(names) if names else list(ALL_SERVICES)
    deadline = time.monotonic() + timeout
    signalled = {name for name in targets if _signal_stop(rdir, name)}
    keep = bool(names)
    # A service that exited at once on the signal counts as stopped too.
    stopped = [
        name
        for name in targets
        if _stop_one(rdir, name, state, keep, deadline) or name in signalled
    ]
    if rdir.exists():
        _write_outputs(rdir, state)
    return stopped


def status_services(run_dir: str | os.PathLike[str]) -> dict[str, str]:
    """Return name -> 'up' / 'not answering' / 'not running' for the services in run_dir."""
    rdir = Path(run_dir).resolve()
    state = _load_state(rdir)
    result: dict[str, str] = {}
    for name in ALL_SERVICES:
        entry = _read_pidfile(rdir / f"{name}.pid")
        info = state["services"].get(name)
        if entry is None and info is None:
            continue
        if entry is None or not _pid_is_ours(*entry):
            result[name] = "not running"
            continue
        result[name] = "up" if _answers(name, info) else "not answering"
    return result


# --------------------------------------------------------------------------- CLI


def _parse_ports(items: Sequence[str]) -> dict[str, int]:
    ports: dict[str, int] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not value.isdigit():
            raise SystemExit(
                f"bad --port {item!r}: expected NAME=PORT (e.g. redis=6390, kafka_controller=9093)"
            )
        ports[key] = int(value)
    return ports


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="services.py",
        description="Local test services for Sandcat (postgres redis kafka mongo s3).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_install = sub.add_parser(
        "install", help="install what is missing (cached under ~/.cache/sandcat)"
    )
    p_install.add_argument("names", nargs="*", metavar="NAME", help=" ".join(ALL_SERVICES))
    p_start = sub.add_parser("start", help="start services and wait until they answer")
    p_start.add_argument("names", nargs="*", metavar="NAME", help=" ".join(ALL_SERVICES))
    p_start.add_argument("--run-dir", required=True, type=Path)
    p_start.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="NAME=PORT",
        help="pin a port (names: postgres redis kafka kafka_controller mongo s3)",
    )
    p_stop = sub.add_parser(
        "stop",
        help="stop what start started in --run-dir; with NAMES only those, keeping their "
        "data and ports for `start NAMES` (a restart)",
    )
    p_stop.add_argument("names", nargs="*", metavar="NAME", help=" ".join(ALL_SERVICES))
    p_stop.add_argument("--run-dir", required=True, type=Path)
    p_status = sub.add_parser("status", help="show whether the services in --run-dir answer")
    p_status.add_argument("--run-dir", required=True, type=Path)
    args = parser.parse_args(argv)

    try:
        if args.command == "install":
            install_services(args.names)
        elif args.command == "start":
            state = start_services(args.names, args.run_dir, _parse_ports(args.port))
            for name, info in state["services"].items():
                say(f"{name}: {info.get('url')} ({info.get('version')})")
            say(f"wrote {args.run_dir / 'services.json'} and {args.run_dir / 'services.env'}")
        elif args.command == "stop":
            stopped = stop_services(args.run_dir, args.names)
            say(f"stopped: {' '.join(stopped) if stopped else 'nothing was running'}")
        elif args.command == "status":
            result = status_services(args.run_dir)
            if not result:
                print("no services in this run dir")
                return 1
            for name, st in result.items():
                print(f"{name}: {st}")
            return 0 if all(v == "up" for v in result.values()) else 1
    except ServiceError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
