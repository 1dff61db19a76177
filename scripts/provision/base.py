"""What every service shares: errors, progress lines, processes and their pid files, ports,
waiting, installs, the ``Service`` base class and the run dir's state file."""

from __future__ import annotations

import contextlib
import fcntl
import http.client
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

ALL_SERVICES: tuple[str, ...] = ("postgres", "redis", "kafka", "mongo", "s3")


HOST = "127.0.0.1"

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


def log_tail(log: Path, lines: int = 25) -> str:
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- process helpers


def _child_options(
    cwd: Path | None, env: dict[str, str] | None, user: str | None
) -> dict[str, Any]:
    """What every child process gets: its folder, its environment, no stdin, and the ids of
    ``user`` when given."""
    options: dict[str, Any] = {"cwd": cwd, "env": env, "stdin": subprocess.DEVNULL}
    if user is not None:
        pw = pwd.getpwnam(user)
        options.update(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[])
    return options


def _log_command(log: IO[bytes], argv: Sequence[str]) -> None:
    """Write the command line to the log before its output."""
    log.write(f"\n$ {' '.join(argv)}\n".encode())
    log.flush()


def run(
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
    options = _child_options(cwd, env, user)
    try:
        if log is not None:
            with open(log, "ab") as fh:
                _log_command(fh, argv)
                proc = subprocess.run(
                    list(argv),
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    timeout=timeout,
                    check=False,
                    **options,
                )
            out = ""
        else:
            proc = subprocess.run(
                list(argv), capture_output=True, text=True, timeout=timeout, check=False, **options
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
CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def proc_starttime(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 22 (starttime); the command name (field 2) may contain spaces, so split after ')'.
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] if len(fields) > 19 else None


def proc_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def spawn(
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
    with open(log, "ab") as fh:
        _log_command(fh, argv)
        try:
            proc = subprocess.Popen(
                list(argv),
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **_child_options(cwd, env, user),
            )
        except OSError as exc:
            raise ServiceError(name, f"cannot execute {argv[0]}: {exc}", log) from exc
    CHILDREN[proc.pid] = proc
    start = proc_starttime(proc.pid) or ""
    (run_dir / f"{name}.pid").write_text(f"{proc.pid}\nstarttime={start}\n")
    return proc


def read_pidfile(path: Path) -> tuple[int, str] | None:
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


def pid_is_ours(pid: int, start: str) -> bool:
    """True when pid is alive and is the same process that the pid file recorded."""
    if not proc_alive(pid):
        return False
    return not start or proc_starttime(pid) == start


def wait_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    child = CHILDREN.get(pid)
    while time.monotonic() < deadline:
        if child is not None:
            if child.poll() is not None:
                CHILDREN.pop(pid, None)
                return True
        elif not proc_alive(pid):
            return True
        time.sleep(0.1)
    return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def wait_until(
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


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return bytes(buf)


@contextlib.contextmanager
def install_lock() -> Iterator[None]:
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
class InstallContext:
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
            run(["apt-get", "update"], service=service, env=env, timeout=600, what="apt-get update")
            self.apt_updated = True
        say(f"apt-get install {' '.join(packages)}")
        run(
            ["apt-get", "install", "-y", "--no-install-recommends", *packages],
            service=service,
            env=env,
            timeout=900,
            what=f"apt-get install {' '.join(packages)}",
        )


def go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("GOFLAGS", "-buildvcs=false")
    return env


def find_go() -> str:
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None
    )
    if go is None:
        raise ServiceError("go", "the Go toolchain (go) is not installed")
    return go


def find_java() -> str:
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

    def install(self, ctx: InstallContext) -> None:
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


def state_path(run_dir: Path) -> Path:
    return run_dir / "services.json"


def load_state(run_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads(state_path(run_dir).read_text())
    except (OSError, ValueError):
        return {"services": {}}
    if not isinstance(data, dict):
        return {"services": {}}
    data.setdefault("services", {})
    return data
