"""docker-compose.yml, config-docker.yml, the Dockerfile, the nginx config and the systemd
unit: no Docker engine here, so check their structure (and let systemd-analyze read the unit)."""

from __future__ import annotations

import configparser
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from sandcat.cli import main
from sandcat.config import load_config
from sandcat.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_runs_every_service_and_role() -> None:
    services = _compose()["services"]
    for backing in ("postgres", "mongodb", "redis", "kafka", "s3"):
        assert backing in services
    assert services["kafka"]["image"].startswith("apache/kafka:")
    roles = {name: svc["command"] for name, svc in services.items() if svc.get("build") == "."}
    assert roles == {
        "migrate": ["migrate"],
        "api": ["serve", "--role", "api"],
        "gateway-1": ["serve", "--role", "gateway"],
        "gateway-2": ["serve", "--role", "gateway"],
        "msg-server": ["serve", "--role", "msg-server"],
    }
    for name in ("api", "gateway-1", "gateway-2", "msg-server"):
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
    # One public address in front of both gateways.
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert "server gateway-1:50000" in nginx and "server gateway-2:50000" in nginx
    assert services["proxy"]["ports"] == ["50000:50000", "50001:50001"]


def test_no_secret_is_committed() -> None:
    services = _compose()["services"]
    env = services["api"]["environment"]
    for key in (
        "SANDCAT__SERVER__JWT_SECRET",
        "SANDCAT__DB__POSTGRES__PASSWORD",
        "SANDCAT__OSS__SECRET_KEY",
    ):
        assert env[key].startswith("${") and ":?" in env[key], key
    assert services["s3"]["environment"]["ROOT_SECRET_KEY"].startswith("${S3_SECRET_KEY:?")
    config = (ROOT / "config-docker.yml").read_text()
    assert 'jwt_secret: ""' in config and 'secret_key: ""' in config


def test_every_image_is_pinned_to_a_version() -> None:
    images = [svc["image"] for svc in _compose()["services"].values() if "image" in svc]
    dockerfile = (ROOT / "Dockerfile").read_text()
    images += re.findall(r"^ARG \w+_IMAGE=(\S+)$", dockerfile, flags=re.M)
    assert len(images) >= 9
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name and re.fullmatch(r"v?\d+(\.\d+)+(-[\w.-]+)?", tag), image
    assert "minio" not in (ROOT / "docker-compose.yml").read_text().replace(
        "The minio/minio image", ""
    )


def test_every_sandcat_service_has_a_healthcheck_on_ready() -> None:
    services = _compose()["services"]
    config = load_config(ROOT / "config-docker.yml", environ=DOCKER_ENV).config
    assert config.metrics.port == 9100
    for name in ("api", "gateway-1", "gateway-2", "msg-server"):
        test = " ".join(services[name]["healthcheck"]["test"])
        assert f"http://127.0.0.1:{config.metrics.port}/ready" in test, name
    assert services["migrate"]["healthcheck"] == {"disable": True}
    assert "/ready" in " ".join(services["proxy"]["healthcheck"]["test"])
    for name in ("api", "gateway-1", "gateway-2"):
        assert services["proxy"]["depends_on"][name] == {"condition": "service_healthy"}
    for name, svc in services.items():
        assert "healthcheck" in svc, name
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "HEALTHCHECK" in dockerfile and "/ready" in dockerfile


def test_the_image_builds_both_compiled_twins_and_checks_them() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)(?: AS (\w+))?$", dockerfile, flags=re.M)
    assert [alias for _, alias in stages] == ["rust", "build", ""]
    assert "maturin build --release -m native/rust/Cargo.toml" in dockerfile
    assert "pip wheel --no-deps --wheel-dir /wheels ." in dockerfile  # setup.py: Cython
    assert 'grep -q "^framing: cython"' in dockerfile
    assert 'grep -q "^shard hashing: rust"' in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert "native/rust/target" in ignored and ".venv" in ignored


def test_nginx_logs_no_token() -> None:
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    lines = [line.split("#")[0] for line in nginx.splitlines()]
    code = "\n".join(lines)
    for leaky in ("$request ", '$request"', "$request_uri", "$args", "$query_string", "combined"):
        assert leaky not in code, leaky
    assert "access_log /dev/stdout redacted;" in code
    assert "error_log /dev/stderr crit;" in code
    (pattern, replacement) = re.findall(r'"(~\^[^"]+)" "([^"]+)";', code)[0]
    regex = pattern[1:].replace("?<kept>", "?P<kept>")
    path = "/ws/u1/conn/u1/1/eyJhbGciOiJIUzI1NiJ9.secret.sig"
    match = re.fullmatch(regex, path)
    assert match is not None
    logged = replacement.replace("${kept}", match.group("kept"))
    assert logged == "/ws/u1/conn/u1/1/-" and "secret" not in logged


def test_systemd_unit() -> None:
    unit = (ROOT / "deploy" / "sandcat.service").read_text()
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(unit)
    service = parser["Service"]
    assert service["User"] == "sandcat" and service["StateDirectoryMode"] == "0700"
    assert service["ExecStart"].endswith("sandcat serve --config /etc/sandcat/config.yml")
    assert "check-config" in service["ExecStartPre"] and service["KillSignal"] == "SIGTERM"
    assert service["UMask"] == "0077" and parser["Install"]["WantedBy"] == "multi-user.target"
    # systemd's own parser: every directive known and well-formed (it warns on stderr).
    local = unit.replace("/opt/sandcat/venv/bin/sandcat", str(ROOT / ".venv" / "bin" / "sandcat"))
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "sandcat.service"
        copy.write_text(local)
        done = subprocess.run(
            ["systemd-analyze", "verify", str(copy)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 0 and done.stderr == "", done.stderr


DOCKER_ENV = {
    "SANDCAT__SERVER__JWT_SECRET": "x" * 40,
    "SANDCAT__WEBSOCKET__PUBLIC_ADDR": "ws://localhost:50000/ws",
}


def test_config_docker_passes_check_config() -> None:
    loaded = load_config(ROOT / "config-docker.yml", environ=DOCKER_ENV)
    config = loaded.config
    assert config.mode == "distributed" and loaded.warnings == ()
    assert config.db.postgres.host == "postgres" and config.kafka.hosts == ("kafka:9092",)
    assert config.oss.endpoint == "http://s3:9000" and config.db.mongodb.use_sharding
    # Without the public address, login would hand out ws://0.0.0.0: refused, said why.
    env = {"SANDCAT__SERVER__JWT_SECRET": "x" * 40}
    with pytest.raises(ConfigError, match=r"websocket\.public_addr: required when"):
        load_config(ROOT / "config-docker.yml", environ=env)
    compose_env = _compose()["x-sandcat"]["environment"]
    assert compose_env["SANDCAT__WEBSOCKET__PUBLIC_ADDR"].startswith("${SANDCAT_PUBLIC_WS_ADDR")


def test_check_config_cli_on_the_docker_config(monkeypatch: Any) -> None:
    for key, value in DOCKER_ENV.items():
        monkeypatch.setenv(key, value)
    assert main(["check-config", "--config", str(ROOT / "config-docker.yml")]) == 0
