"""``make run-distributed`` after an unclean stop (scripts/topology.py, scripts/provision):
the recovery functions on real processes (a full topology start, kill and restart takes
longer than a test here should): services left running are reused when they answer and
restarted when they do not, a half-made PostgreSQL folder is rebuilt, Sandcat processes a
killed run left are stopped, and every stop is bounded."""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts import provision, topology

IGNORES_SIGINT = (
    "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(60)"
)


def _started(code: str) -> subprocess.Popen[str]:
    """A Python process running ``code``, returned once it has printed ``ready``."""
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    with proc.stdout:
        assert proc.stdout.readline() == "ready\n"
    return proc


def _stubborn() -> subprocess.Popen[str]:
    """A process that ignores SIGINT, returned once its handler is in place."""
    return _started(IGNORES_SIGINT)


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A run dir the ``postgres`` user can reach (pytest's are 0700), stopped at the end."""
    path = Path(tempfile.mkdtemp(prefix="sandcat-recovery-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        provision.stop_services(path, timeout=10)
        shutil.rmtree(path, ignore_errors=True)


def _pid(run_dir: Path, name: str) -> int:
    entry = provision.read_pidfile(run_dir / f"{name}.pid")
    assert entry is not None
    return int(entry[0])


def test_a_service_left_running_is_reused_or_restarted(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    provision.start_services(["redis"], run_dir)
    first = _pid(run_dir, "redis")
    with pytest.raises(provision.ServiceError, match="already running"):
        provision.start_services(["redis"], run_dir)
    # The topology script was killed: the next start finds redis by its pid file.
    state = provision.start_services(["redis"], run_dir, recover=True)
    assert _pid(run_dir, "redis") == first
    assert "redis: reusing pid" in capsys.readouterr().err
    port = state["services"]["redis"]["port"]
    # Alive but not answering (stopped): stopped for good and started again, same port.
    os.kill(first, signal.SIGSTOP)
    t0 = time.monotonic()
    state = provision.start_services(["redis"], run_dir, recover=True, stop_timeout=2)
    assert time.monotonic() - t0 < 30
    assert "does not answer: restarting it" in capsys.readouterr().err
    assert _pid(run_dir, "redis") != first and not provision.proc_alive(first)
    assert state["services"]["redis"]["port"] == port
    assert provision.status_services(run_dir) == {"redis": "up"}
    restarted = _pid(run_dir, "redis")
    assert provision.stop_services(run_dir, timeout=10) == ["redis"]
    assert not provision.proc_alive(restarted)


def test_a_half_made_postgres_folder_is_rebuilt(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = run_dir / "postgres" / "data"
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("16\n")  # initdb got this far, then was killed
    (data / "base").mkdir()
    provision.start_services(["postgres"], run_dir)
    assert "is half-made (an interrupted initdb): removing it, initdb again" in (
        capsys.readouterr().err
    )
    assert provision.status_services(run_dir) == {"postgres": "up"}
    # A cluster that has run is kept on the next start, not rebuilt.
    provision.stop_services(run_dir, ["postgres"], timeout=10)
    provision.start_services(["postgres"], run_dir)
    assert "half-made" not in capsys.readouterr().err


def test_sandcat_processes_left_by_a_killed_run_are_stopped(tmp_path: Path) -> None:
    # SIGINT's default handler set explicitly: a shell's background job starts ignoring it.
    polite = _started(
        "import signal, time; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "print('ready', flush=True); time.sleep(60)"
    )
    stubborn = _stubborn()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        topology.write_pid_file(tmp_path / "sandcat-api.pid", polite.pid)
        topology.write_pid_file(tmp_path / "sandcat-gateway-1.pid", stubborn.pid)
        (tmp_path / "sandcat-msg-server.pid").write_text(f"{dead.pid}\nstarttime=1\n")
        t0 = time.monotonic()
        # SIGINT, then SIGKILL after the timeout: generous enough for a loaded machine.
        found = topology.stop_leftovers(tmp_path, timeout=5)
        assert time.monotonic() - t0 < 10
        assert sorted(found) == sorted([polite.pid, stubborn.pid])
        assert polite.wait(5) == -signal.SIGINT and stubborn.wait(5) == -signal.SIGKILL
        assert list(tmp_path.glob("sandcat-*.pid")) == []
    finally:
        for proc in (polite, stubborn):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def test_topology_stop_is_bounded(tmp_path: Path) -> None:
    topo: Any = topology.Topology(
        base_env={}, api_port=0, ws_ports=[], pid_dir=tmp_path, sandcat=[sys.executable, "-c"]
    )
    for name in ("api", "gateway-1"):
        proc = _stubborn()
        topo.procs[name] = proc
        topology.write_pid_file(tmp_path / f"sandcat-{name}.pid", proc.pid)
    t0 = time.monotonic()
    topo.stop(timeout=1.5)
    assert time.monotonic() - t0 < 4
    assert all(proc.returncode == -signal.SIGKILL for proc in topo.procs.values())
    assert list(tmp_path.glob("sandcat-*.pid")) == []


def test_a_half_written_secret_is_made_again(tmp_path: Path) -> None:
    (tmp_path / "jwt_secret").write_text("")
    secret = topology.ensure_secret(tmp_path)
    assert len(secret) >= 32 and topology.ensure_secret(tmp_path) == secret
    assert stat.S_IMODE((tmp_path / "jwt_secret").stat().st_mode) == 0o600
