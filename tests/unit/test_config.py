"""Config: the committed file, environment overrides, unknown and bad keys."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sandcat.cli import main
from sandcat.config import load_config
from sandcat.errors import ConfigError
from sandcat.log import get_logger, setup_logging

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
    with pytest.raises(ConfigError, match=r"embedded\.max_batch: must be between 1 and 4096"):
        load_config(None, environ={"SANDCAT__EMBEDDED__MAX_BATCH": "0"})
    with pytest.raises(ConfigError, match=r"kafka\.consumer\.fetch_min_bytes: must be between"):
        load_config(None, environ={"SANDCAT__KAFKA__CONSUMER__FETCH_MIN_BYTES": "0"})
    fetch = load_config(None, environ={"SANDCAT__KAFKA__CONSUMER__FETCH_MIN_BYTES": "1"})
    assert fetch.config.kafka.consumer.fetch_min_bytes == 1


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


def test_every_mistake_is_reported_at_once_with_its_variable(tmp_path: Path) -> None:
    file = tmp_path / "c.yml"
    file.write_text("server:\n  prot: 1\nwebsocket:\n  protocol: gopher\n")
    env = {
        "SANDCAT__SERVER__PORT": "eighty",
        "SANDCAT__LOG__OUTPUT": "/proc/sandcat-check/sandcat.log",
        "SANDCAT__EMBEDDED__DATA_DIR": "/proc/sandcat-check/data",
        "SANDCAT__DB__POSTGRES__HISTORY_ARCHIVE": "shred",
    }
    with pytest.raises(ConfigError) as caught:
        load_config(file, environ=env)
    lines = str(caught.value).splitlines()
    assert len(lines) == 6, lines
    expected = [
        "server.port: expected an integer, got 'eighty' (set by SANDCAT__SERVER__PORT)",
        "unknown config key server.prot",
        "websocket.protocol: 'gopher' is not ws or wss",
        "log.output: cannot open the log file '/proc/sandcat-check/sandcat.log'",
        "embedded.data_dir: cannot write /proc/sandcat-check/data",
        "db.postgres.history_archive: 'shred' is not drop or move "
        "(set by SANDCAT__DB__POSTGRES__HISTORY_ARCHIVE)",
    ]
    for want in expected:
        assert any(want in line for line in lines), (want, lines)
    from_the_file = [line for line in lines if "prot" in line]  # server.prot, .protocol
    assert len(from_the_file) == 2 and not any("(set by" in line for line in from_the_file)


def test_port_clash_and_a_wildcard_host_without_public_addr(tmp_path: Path) -> None:
    env = {"SANDCAT__SERVER__PORT": "50000", "SANDCAT__EMBEDDED__DATA_DIR": str(tmp_path)}
    with pytest.raises(
        ConfigError,
        match=r"websocket\.port: 50000 is also server\.port "
        r"\(set by SANDCAT__SERVER__PORT\)",
    ):
        load_config(None, environ=env)
    # Two roles in separate processes may share the number (different hosts or machines).
    load_config(None, environ={**env, "SANDCAT__COMPONENT": "api"})
    wildcard = {"SANDCAT__WEBSOCKET__HOST": "0.0.0.0", "SANDCAT__EMBEDDED__DATA_DIR": str(tmp_path)}
    with pytest.raises(ConfigError, match=r"websocket\.public_addr: required when"):
        load_config(None, environ=wildcard)
    load_config(None, environ={**wildcard, "SANDCAT__COMPONENT": "msg-server"})
    ok = {**wildcard, "SANDCAT__WEBSOCKET__PUBLIC_ADDR": "wss://chat.example.com/ws"}
    assert load_config(None, environ=ok).config.websocket.public_addr.startswith("wss://")
    with pytest.raises(ConfigError, match=r"does not start with ws:// or wss://"):
        load_config(None, environ={**ok, "SANDCAT__WEBSOCKET__PUBLIC_ADDR": "chat:50000"})


def test_serve_prints_the_same_lines_instead_of_a_traceback(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SANDCAT__SERVER__PORT": "50000",
        "SANDCAT__WEBSOCKET__PROTOCOL": "gopher",
        "SANDCAT__EMBEDDED__DATA_DIR": str(tmp_path / "data"),
    }
    outputs = [
        subprocess.run(
            [sys.executable, "-m", "sandcat", command],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        for command in ("check-config", "serve")
    ]
    for done in outputs:
        assert done.returncode == 2 and "Traceback" not in done.stderr
        # (a build without the compiled twins adds its own warning line: not ours)
        assert [line for line in done.stderr.splitlines() if line.startswith("sandcat: ")] == [
            "sandcat: config key websocket.protocol: 'gopher' is not ws or wss "
            "(set by SANDCAT__WEBSOCKET__PROTOCOL)",
            "sandcat: config key websocket.port: 50000 is also server.port "
            "(set by SANDCAT__SERVER__PORT): give each its own",
        ]
    assert not (tmp_path / "data").exists()  # nothing was started


def test_log_output_to_a_file(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "sandcat.log"
    log_file.parent.mkdir()
    env = {
        **os.environ,
        "SANDCAT__LOG__OUTPUT": str(log_file),
        "SANDCAT__EMBEDDED__DATA_DIR": str(tmp_path / "data"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "sandcat", "migrate"],
        env={**env, "SANDCAT__LOG__OUTPUT": str(tmp_path / "nowhere" / "x.log")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2 and "its folder" in done.stderr and "does not exist" in done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "sandcat", "users", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1 and "no database" in done.stderr
    setup_logging("info", "text", output=str(log_file))
    (handler,) = logging.getLogger("sandcat").handlers
    try:
        get_logger("sandcat.test").info("to_the_file", n=1)
    finally:
        handler.close()
    assert "to_the_file" in log_file.read_text()


def test_serve_on_a_taken_port_says_so_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {
            **os.environ,
            "SANDCAT__SERVER__PORT": str(port),
            "SANDCAT__WEBSOCKET__PORT": "0",
            "SANDCAT__EMBEDDED__DATA_DIR": str(tmp_path / "data"),
        }
        done = subprocess.run(
            [sys.executable, "-m", "sandcat", "serve"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1].startswith("sandcat: cannot listen: [Errno 98]")
    assert "address already in use" in done.stderr.splitlines()[-1]


def test_the_original_oauth2_section_loads_github_and_warns_for_google(tmp_path: Path) -> None:
    """The original's ``server.oauth2`` shape: ``github`` is used, ``google`` only warned
    about; a client id without its secret (or the other way round) is refused."""
    file = tmp_path / "c.yml"
    file.write_text(
        "server:\n  oauth2:\n"
        "    google: {client_id: g, client_secret: s, redirect_url: x, auth_url: x,"
        " token_url: x, user_info_url: x, email_url: x}\n"
        "    github: {client_id: id, client_secret: secret,"
        " redirect_url: 'http://localhost:8080/third_login_callback/github',"
        " auth_url: 'https://github.com/login/oauth/authorize',"
        " token_url: 'https://github.com/login/oauth/access_token',"
        " user_info_url: 'https://api.github.com/user',"
        " email_url: 'https://api.github.com/user/emails'}\n"
    )
    loaded = load_config(file, environ={})
    github = loaded.config.server.oauth2.github
    assert github.enabled and github.client_secret == "secret"
    assert github.redirect_url == "http://localhost:8080/third_login_callback/github"
    assert loaded.warnings == (
        "config key server.oauth2.google is from the original sandcat and is unused",
    )
    assert not load_config(None, environ={}).config.server.oauth2.github.enabled
    with pytest.raises(ConfigError, match=r"server\.oauth2\.github: client_id and client_secret"):
        load_config(None, environ={"SANDCAT__SERVER__OAUTH2__GITHUB__CLIENT_ID": "id"})
