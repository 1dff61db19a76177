"""docker-compose.yml and config-docker.yml: no Docker engine here, so check their structure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sandcat.cli import main
from sandcat.config import load_config

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


def test_compose_runs_every_service_and_role() -> None:
    services = _compose()["services"]
    for backing in ("postgres", "mongodb", "redis", "kafka", "minio"):
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
    assert all(value.startswith("${") for value in env.values())
    config = (ROOT / "config-docker.yml").read_text()
    assert 'jwt_secret: ""' in config and 'secret_key: ""' in config


def test_config_docker_passes_check_config() -> None:
    env = {"SANDCAT__SERVER__JWT_SECRET": "x" * 40}
    loaded = load_config(ROOT / "config-docker.yml", environ=env)
    config = loaded.config
    assert config.mode == "distributed" and loaded.warnings == ()
    assert config.db.postgres.host == "postgres" and config.kafka.hosts == ("kafka:9092",)
    assert config.oss.endpoint == "http://minio:9000" and config.db.mongodb.use_sharding


def test_check_config_cli_on_the_docker_config(monkeypatch: Any) -> None:
    monkeypatch.setenv("SANDCAT__SERVER__JWT_SECRET", "y" * 40)
    assert main(["check-config", "--config", str(ROOT / "config-docker.yml")]) == 0
