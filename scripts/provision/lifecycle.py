"""The registry of services and what the command line does with it: install, start, stop,
status."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .base import (
    ALL_SERVICES,
    CHILDREN,
    HOST,
    InstallContext,
    Service,
    ServiceError,
    cache_dir,
    free_port,
    install_lock,
    load_state,
    log_tail,
    pid_is_ours,
    port_is_free,
    read_pidfile,
    say,
    state_path,
    wait_exit,
)
from .kafka import Kafka
from .mongo import Mongo
from .postgres import Postgres
from .redis import Redis
from .s3 import S3

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
    ctx = InstallContext()
    with install_lock():
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


def _write_outputs(run_dir: Path, state: dict[str, Any]) -> None:
    tmp = state_path(run_dir).with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    tmp.rename(state_path(run_dir))
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
    state = load_state(rdir)
    reused: set[str] = set()
    for name in chosen:
        pid = read_pidfile(rdir / f"{name}.pid")
        if pid is None or not pid_is_ours(*pid):
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
                if port and (port in taken or not port_is_free(port)):
                    raise ServiceError(name, f"port {port} ({key}) is already in use")
                while not port or port in taken:
                    port = free_port()
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
            tail = log_tail(exc.log)
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
    entry = read_pidfile(run_dir / f"{name}.pid")
    svc = SERVICES.get(name)
    if entry is None or not pid_is_ours(*entry):
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
    entry = read_pidfile(pidfile)
    stopped = False
    svc = SERVICES.get(name)
    if entry is not None:
        pid, start = entry
        if pid_is_ours(pid, start):
            sig = svc.stop_signal() if svc else signal.SIGTERM
            say(f"{name}: stopping pid {pid}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            grace = 45.0 if deadline is None else max(0.5, deadline - time.monotonic())
            if not wait_exit(pid, grace):
                say(f"{name}: pid {pid} still running, sending SIGKILL")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                wait_exit(pid, 10.0)
            stopped = True
        child = CHILDREN.pop(pid, None)
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
    state = load_state(rdir)
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
    state = load_state(rdir)
    result: dict[str, str] = {}
    for name in ALL_SERVICES:
        entry = read_pidfile(rdir / f"{name}.pid")
        info = state["services"].get(name)
        if entry is None and info is None:
            continue
        if entry is None or not pid_is_ours(*entry):
            result[name] = "not running"
            continue
        result[name] = "up" if _answers(name, info) else "not answering"
    return result
