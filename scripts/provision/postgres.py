"""PostgreSQL: the distribution's server binaries, a cluster in the run dir, run as ``postgres``
when started by root."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from .base import (
    HOST,
    START_TIMEOUT,
    InstallContext,
    Service,
    ServiceError,
    run,
    say,
    spawn,
    wait_until,
)

PG_MAJOR = "15"
PG_USER = "sandcat"
PG_PASSWORD = "sandcat"
PG_DB = "sandcat"


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

    def install(self, ctx: InstallContext) -> None:
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
            run(
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
        proc = spawn(self.name, argv, run_dir, env=env, user="postgres")
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

        wait_until(self.name, proc, log, START_TIMEOUT[self.name], ready)
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
            run(
                [*psql, "-d", "postgres", "-c", f"CREATE DATABASE {PG_DB}"],
                service=self.name,
                env=pgenv,
                timeout=60,
                what="CREATE DATABASE",
            )
        version = run(
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
