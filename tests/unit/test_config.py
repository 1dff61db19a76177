"""Config: the committed file, environment overrides, unknown and bad keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandcat.cli import main
from sandcat.config import load_config
from sandcat.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_committed_config_loads_with_defaults() -> None:
    loaded = load_config(ROOT / "config.yml", environ={})
    config = loaded.config
    assert (config.mode, config.role) == ("embedded", "all")
    assert config.server.port == 50001 and config.websocket.port == 50000
    assert config.limits.ws_message_bytes == 65536
    assert config.limits.messages_per_second == 50
    assert loaded.warnings == ()


def test_environment_overrides_nested_keys() -> None:
    env = {
        "SANDCAT__SERVER__PORT": "8080",
        "SANDCAT__WEBSOCKET__PORT": "9090",
        "SANDCAT__EMBEDDED__DATA_DIR": "/tmp/x",
        "SANDCAT__LIMITS__MESSAGES_PER_SECOND": "7.5",
        "SANDCAT__DB__MONGODB__USE_SHARDING": "true",
        "SANDCAT__KAFKA__HOSTS": "a:1,b:2",
        "SANDCAT_NO_EXTENSIONS": "1",  # not a config override (single underscore)
    }
    config = load_config(ROOT / "config.yml", environ=env).config
    assert config.server.port == 8080 and config.websocket.port == 9090
    assert config.embedded.data_dir == "/tmp/x"
    assert config.limits.messages_per_second == 7.5
    assert config.db.mongodb.use_sharding is True
    assert config.kafka.hosts == ("a:1", "b:2")


def test_unknown_key_fails_with_its_name(tmp_path: Path) -> None:
    file = tmp_path / "c.yml"
    file.write_text("server:\n  prot: 1\n")
    with pytest.raises(ConfigError, match=r"unknown config key server\.prot"):
        load_config(file, environ={})
    with pytest.raises(ConfigError, match=r"unknown config key limits\.nope"):
        load_config(None, environ={"SANDCAT__LIMITS__NOPE": "1"})


def test_bad_values_fail_with_their_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server\.port: expected an integer"):
        load_config(None, environ={"SANDCAT__SERVER__PORT": "eighty"})
    with pytest.raises(ConfigError, match=r"component"):
        load_config(None, environ={"SANDCAT__COMPONENT": "pusher"})
    with pytest.raises(ConfigError, match=r"jwt_secret"):
        load_config(None, environ={"SANDCAT__SERVER__JWT_SECRET": "short"})
    with pytest.raises(ConfigError, match=r"limits\.text_bytes: must not be negative"):
        load_config(None, environ={"SANDCAT__LIMITS__TEXT_BYTES": "-1"})


def test_original_keys_only_warn(tmp_path: Path) -> None:
    file = tmp_path / "c.yml"
    file.write_text(
        "component: messagegateway\n"
        "service_center: {host: 127.0.0.1, port: 8500}\n"
        "rpc: {health_check: false}\n"
        "db: {xdb: ./x.xdb}\n"
        "websocket: {name: websocket, tags: [a]}\n"
    )
    loaded = load_config(file, environ={})
    assert loaded.config.role == "gateway"
    assert len(loaded.warnings) == 5
    assert all("unused" in w for w in loaded.warnings)


def test_check_config_cli_reports_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "c.yml"
    file.write_text("limits:\n  nonsense: 3\n")
    assert main(["check-config", "--config", str(file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["sandcat: unknown config key limits.nonsense"]
    assert main(["check-config", "--config", str(ROOT / "config.yml")]) == 0


def test_info_names_every_hot_path(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", "--config", str(ROOT / "config.yml")]) == 0
    out = capsys.readouterr().out
    for name in ("framing", "shard hashing"):
        assert f"\n{name}: " in out
    assert "mode: embedded" in out
