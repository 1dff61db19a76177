"""S3: versitygw (built with Go) on a posix folder, or moto's server where xattrs are missing."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import http.client
import os
import shutil
import subprocess
import sys
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
    run,
    say,
    spawn,
    wait_until,
)

VERSITYGW_VERSION = "v1.8.0"
MOTO_SPEC = "moto[server]>=5,<6"
S3_ACCESS_KEY = "sandcat"
S3_SECRET_KEY = "sandcat-secret"
S3_REGION = "us-east-1"


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

    def install(self, ctx: InstallContext) -> None:
        forced = os.environ.get("SANDCAT_S3_BACKEND")
        if forced != "moto":
            target = _versitygw_bin()
            target.parent.mkdir(parents=True, exist_ok=True)
            log = cache_dir() / "versitygw-build.log"
            gobin = cache_dir() / "go-build" / f"versitygw-{VERSITYGW_VERSION}"
            gobin.mkdir(parents=True, exist_ok=True)
            say(f"s3: go install versitygw@{VERSITYGW_VERSION}, log {log}")
            try:
                run(
                    [
                        find_go(),
                        "install",
                        f"github.com/versity/versitygw/cmd/versitygw@{VERSITYGW_VERSION}",
                    ],
                    service=self.name,
                    log=log,
                    env=dict(go_env(), GOBIN=str(gobin)),
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
        run(
            [sys.executable, "-m", "venv", str(venv)],
            service=self.name,
            log=log,
            timeout=300,
            what="python -m venv",
        )
        run(
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
            out = run(
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
        proc = spawn(self.name, argv, run_dir, cwd=root)
        wait_until(
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
