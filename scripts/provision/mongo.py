"""MongoDB's wire protocol from FerretDB (built from ``scripts/ferretdb``), on SQLite or on this
run's PostgreSQL."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import struct
import subprocess
from pathlib import Path
from typing import Any

from .base import (
    HOST,
    START_TIMEOUT,
    InstallContext,
    Service,
    ServiceError,
    cache_dir,
    find_go,
    go_env,
    load_state,
    pid_is_ours,
    read_pidfile,
    recv_exact,
    run,
    say,
    spawn,
    wait_until,
)

FERRETDB_VERSION = "v1.24.2"


#: FerretDB's backend: ``sqlite`` (default, its own files) or ``pg`` (a database on the
#: ``postgres`` service of the same run, which must be started too); env SANDCAT_MONGO_HANDLER.
FERRETDB_HANDLERS = ("sqlite", "pg")
FERRETDB_PG_DB = "ferretdb"
SCRIPTS_DIR = Path(__file__).resolve().parents[1]
FERRETDB_MODULE_DIR = SCRIPTS_DIR / "ferretdb"


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
        length, _req, _resp, opcode = struct.unpack("<iiii", recv_exact(sock, 16))
        payload = recv_exact(sock, length - 16)
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
    """Create FerretDB's database on this run's PostgreSQL unless it is there, and return its
    URL. A restart keeps it, as the SQLite handler keeps its files: dropping it emptied the
    inbox on every restart of ``mongo`` (the fault suite's FerretDB restart lost every
    stored message)."""
    pg = load_state(run_dir)["services"].get("postgres")
    pid = read_pidfile(run_dir / "postgres.pid")
    if not pg or pid is None or not pid_is_ours(*pid):
        raise ServiceError(
            "mongo",
            "SANDCAT_MONGO_HANDLER=pg needs the postgres service of the same run "
            "(start postgres together with mongo)",
        )
    env = dict(os.environ, PGPASSWORD=str(pg["password"]), PGCONNECT_TIMEOUT="3")
    psql = [str(Path(pg["bindir"]) / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1"]
    psql += ["-h", HOST, "-p", str(pg["port"]), "-U", str(pg["user"]), "-d", "postgres"]
    exists = f"SELECT 1 FROM pg_database WHERE datname = '{FERRETDB_PG_DB}'"
    if not run([*psql, "-tA", "-c", exists], service="mongo", env=env, timeout=60).strip():
        create = f"CREATE DATABASE {FERRETDB_PG_DB}"
        run([*psql, "-c", create], service="mongo", env=env, timeout=60, what=create)
    return f"postgres://{pg['user']}:{pg['password']}@{HOST}:{pg['port']}/{FERRETDB_PG_DB}"


class Mongo(Service):
    name = "mongo"

    def installed(self) -> bool:
        return _ferretdb_bin().exists()

    def install(self, ctx: InstallContext) -> None:
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
        run(
            [find_go(), "build", "-trimpath", "-o", str(tmp), "."],
            service=self.name,
            log=log,
            cwd=FERRETDB_MODULE_DIR,
            env=go_env(),
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
        proc = spawn(self.name, argv, run_dir, cwd=data)
        log = run_dir / "mongo.log"
        wait_until(
            self.name,
            proc,
            log,
            START_TIMEOUT[self.name],
            lambda: _mongo_ok(_mongo_command(port, {"hello": 1, "$db": "admin"})),
        )
        build = _mongo_command(port, {"buildInfo": 1, "$db": "admin"})
        version = run([str(binary), "--version"], service=self.name, timeout=30).strip()
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
