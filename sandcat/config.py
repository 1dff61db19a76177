"""Typed, frozen configuration loaded from ``config.yml`` with ``SANDCAT__SECTION__KEY`` overrides.

The original's keys are used where they apply (``docs/configuration.md`` lists them). Keys of the
original that Sandcat does not use are accepted with a warning. Every other mistake (an unknown
key, a value of the wrong type, an unknown choice, a port clash, a folder or log file this
user cannot write) is collected, and loading fails once with one line per mistake, each naming
the key and the ``SANDCAT__*`` variable that set it, if one did.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sandcat.errors import ConfigError

ENV_PREFIX = "SANDCAT__"

#: Component names: ours and the original's (``messagegateway``, ``messageserver``).
ROLE_ALIASES: dict[str, str] = {
    "all": "all",
    "api": "api",
    "gateway": "gateway",
    "messagegateway": "gateway",
    "msg-server": "msg-server",
    "msg_server": "msg-server",
    "messageserver": "msg-server",
}

#: Keys of the original's config that Sandcat accepts but does not use (dotted prefixes).
ORIGINAL_UNUSED: tuple[str, ...] = (
    "service_center",
    "rpc",
    "db.xdb",
    "server.ws_lb_strategy",
    "server.oauth2.google",
    "websocket.name",
    "websocket.tags",
    "mail.temp_path",
    "mail.temp_file",
    "kafka.connect_timeout",
    "kafka.producer.timeout",
    "kafka.producer.acks",
    "kafka.consumer.auto_offset_reset",
    "kafka.consumer.session_timeout",
)


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    output: str = "console"
    format: str = "text"


@dataclass(frozen=True, slots=True)
class GithubOAuthConfig:
    """GitHub login (``docs/operations.md``): on when ``client_id`` and ``client_secret``
    are set. ``redirect_url`` empty: the API's own callback at the address of the request."""

    client_id: str = ""
    client_secret: str = ""
    redirect_url: str = ""
    auth_url: str = "https://github.com/login/oauth/authorize"
    token_url: str = "https://github.com/login/oauth/access_token"
    user_info_url: str = "https://api.github.com/user"
    email_url: str = "https://api.github.com/user/emails"
    scope: str = "read:user user:email"
    #: How long a started login (its state and PKCE verifier) waits for the callback.
    state_ttl_seconds: int = 600
    #: Each call to GitHub (token exchange, user, e-mails).
    timeout_seconds: float = 10.0

    @property
    def enabled(self) -> bool:
        return bool(self.client_id and self.client_secret)


@dataclass(frozen=True, slots=True)
class OAuth2Config:
    github: GithubOAuthConfig = field(default_factory=GithubOAuthConfig)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 50001
    jwt_secret: str = ""
    access_ttl_seconds: int = 14400
    refresh_ttl_seconds: int = 100800
    allow_stranger_messages: bool = False
    trust_forwarded_for: bool = False
    #: SIGTERM/SIGINT to exit: refuse new work, store and ack what was accepted, close 1001.
    shutdown_seconds: float = 8.0
    oauth2: OAuth2Config = field(default_factory=OAuth2Config)


@dataclass(frozen=True, slots=True)
class WebsocketConfig:
    protocol: str = "ws"
    host: str = "127.0.0.1"
    port: int = 50000
    public_addr: str = ""
    ping_interval_seconds: float = 30.0
    gateway_id: str = ""


@dataclass(frozen=True, slots=True)
class EmbeddedConfig:
    data_dir: str = "./data"
    #: Group commit: the message writer waits this long before a batch smaller than its
    #: maximum, so messages arriving meanwhile share the batch's commit (0: no wait).
    commit_window_ms: float = 1.0
    #: Most messages one writer transaction holds. A backlog drains in batches this big,
    #: each one commit; the loop waits for one batch at a time (a few ms per 100 messages).
    max_batch: int = 1024
    #: SQLite page cache of the writer and of the reader connection, MiB each (filled only
    #: as pages are used).
    cache_mib: int = 64


@dataclass(slots=True)
class LimitsConfig:
    """Not frozen: SIGHUP updates the running process's limits in place (``sandcat.reload``)."""

    ws_message_bytes: int = 65536
    text_bytes: int = 16384
    http_body_bytes: int = 65536
    upload_bytes: int = 52428800
    send_queue_frames: int = 1000
    send_queue_bytes: int = 1048576
    connections_per_ip: int = 200
    #: Failed logins on one account from one address (the owner elsewhere is not locked out).
    login_failures_per_minute_per_account_and_ip: int = 10
    #: Failed logins on one account from every address together.
    login_per_minute_per_account: int = 100
    login_per_minute_per_ip: int = 60
    code_sends_per_5_minutes_per_email: int = 3
    code_sends_per_minute_per_ip: int = 30
    code_attempts: int = 5
    messages_per_second: float = 50.0
    messages_burst: int = 200
    bad_frames_before_close: int = 10
    group_members: int = 10000
    group_invite_strangers: bool = False
    friend_reapply_cooldown_seconds: int = 86400
    http_header_timeout: float = 15.0
    http_body_timeout: float = 30.0
    http_connections_per_ip: int = 200
    http_connections: int = 10000
    name_chars: int = 64
    #: Avatar, gender, address, region and signature of a profile.
    profile_field_chars: int = 256
    remark_chars: int = 256
    search_pattern_chars: int = 32
    pull_max_messages: int = 0
    #: Devices (logins) kept per user; a login past it logs out the least recently seen.
    devices_per_user: int = 100


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """``port`` -1: ``/metrics`` on the API and WebSocket ports; otherwise only on its own
    listener at ``host:port`` (0 picks a free port), which also answers /health and /ready."""

    host: str = "127.0.0.1"
    port: int = -1


@dataclass(frozen=True, slots=True)
class AuthConfig:
    argon2_time_cost: int = 3
    argon2_memory_cost: int = 65536
    argon2_parallelism: int = 4
    argon2_max_concurrency: int = 2
    code_ttl_seconds: int = 300
    #: The device's previous refresh token is still answered this long after it was spent
    #: (with the current one, not a new rotation); 0: any spent token logs the device out.
    refresh_reuse_grace_seconds: int = 30


@dataclass(frozen=True, slots=True)
class PostgresConfig:
    host: str = "127.0.0.1"
    port: int = 5432
    user: str = "postgres"
    password: str = ""
    database: str = "im"
    max_connections: int = 10
    history_retention_months: int = 12
    history_archive: str = "drop"


@dataclass(frozen=True, slots=True)
class MongoCleanConfig:
    period: int = 3600
    except_types: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MongoConfig:
    host: str = "127.0.0.1"
    port: int = 27017
    user: str = ""
    password: str = ""
    database: str = "im"
    use_sharding: bool = False
    user_shards: int = 10
    clean: MongoCleanConfig = field(default_factory=MongoCleanConfig)


@dataclass(frozen=True, slots=True)
class DbConfig:
    postgres: PostgresConfig = field(default_factory=PostgresConfig)
    mongodb: MongoConfig = field(default_factory=MongoConfig)


@dataclass(frozen=True, slots=True)
class RedisConfig:
    host: str = "127.0.0.1"
    port: int = 6379
    db: int = 0
    seq_step: int = 10000


@dataclass(frozen=True, slots=True)
class KafkaProducerConfig:
    max_retry: int = 3
    retry_interval: int = 1000


@dataclass(frozen=True, slots=True)
class KafkaConsumerConfig:
    batch_size: int = 500
    #: The broker holds a fetch until this many bytes wait or ``CONSUMER_FETCH_WAIT_MS``
    #: passes (``adapters/kafka/queue.py``): larger store batches below saturation.
    fetch_min_bytes: int = 8192
    abandon_after_seconds: int = 600


@dataclass(frozen=True, slots=True)
class KafkaConfig:
    hosts: tuple[str, ...] = ("127.0.0.1:9092",)
    topic: str = "sandcat-chat"
    group: str = "chat"
    partitions: int = 8
    producer: KafkaProducerConfig = field(default_factory=KafkaProducerConfig)
    consumer: KafkaConsumerConfig = field(default_factory=KafkaConsumerConfig)


@dataclass(frozen=True, slots=True)
class OssConfig:
    endpoint: str = "http://127.0.0.1:9000"
    access_key: str = ""
    secret_key: str = ""
    bucket: str = "sandcat"
    avatar_bucket: str = "sandcat-avatar"
    region: str = "us-east-1"


@dataclass(frozen=True, slots=True)
class MailConfig:
    server: str = ""
    port: int = 465
    use_tls: bool = True
    account: str = ""
    password: str = ""


@dataclass(frozen=True, slots=True)
class BotsConfig:
    """Webhook deliveries of bots (docs/protocol.md, "Bots")."""

    #: Attempts per message before it is dead-lettered.
    webhook_attempts: int = 8
    #: The first retry waits up to this (full jitter), doubling per attempt up to the max.
    webhook_backoff_seconds: float = 1.0
    webhook_backoff_max_seconds: float = 60.0
    webhook_timeout_seconds: float = 10.0
    #: How often an idle worker looks at its bot's inbox.
    poll_seconds: float = 0.5
    #: A worker's hold on a bot; renewed at a third of it.
    lease_seconds: float = 15.0


@dataclass(frozen=True, slots=True)
class Config:
    component: str = "all"
    mode: str = "embedded"
    log: LogConfig = field(default_factory=LogConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    websocket: WebsocketConfig = field(default_factory=WebsocketConfig)
    embedded: EmbeddedConfig = field(default_factory=EmbeddedConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    db: DbConfig = field(default_factory=DbConfig)
    redis: RedisConfig = field(default_factory=RedisConfig)
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    oss: OssConfig = field(default_factory=OssConfig)
    mail: MailConfig = field(default_factory=MailConfig)
    bots: BotsConfig = field(default_factory=BotsConfig)

    @property
    def role(self) -> str:
        return ROLE_ALIASES[self.component]


@dataclass(frozen=True, slots=True)
class Loaded:
    config: Config
    warnings: tuple[str, ...]


def _is_unused_original(path: str) -> bool:
    return any(path == key or path.startswith(key + ".") for key in ORIGINAL_UNUSED)


def _coerce(path: str, hint: Any, value: Any) -> Any:
    """Check (and, for strings from the environment, convert) one scalar value."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        (item_type, _) = typing.get_args(hint)
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key {path}: expected a list, got {value!r}")
        return tuple(_coerce(f"{path}[]", item_type, item) for item in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "1", "yes", "on"}:
            return True
        if isinstance(value, str) and value.lower() in {"false", "0", "no", "off"}:
            return False
        raise ConfigError(f"config key {path}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"config key {path}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config key {path}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key {path}: expected a string, got {value!r}")
    raise ConfigError(f"config key {path}: unsupported type")  # pragma: no cover


class _Problems:
    """Every problem found in one load, each a line naming the key (and the environment
    variable that set it, if one did)."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        #: Dotted key -> the environment variable that set it.
        self.sources: dict[str, str] = {}

    def add(self, path: str, message: str) -> None:
        key = path.removesuffix("[]")
        source = self.sources.get(key)
        self.lines.append(f"{message} (set by {source})" if source else message)


def _build(
    cls: type[Any], data: Mapping[str, Any], prefix: str, warnings: list[str], problems: _Problems
) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in names:
            if _is_unused_original(path):
                warnings.append(f"config key {path} is from the original sandcat and is unused")
            else:
                problems.add(path, f"unknown config key {path}")
            continue
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if value is None:
                continue
            if not isinstance(value, Mapping):
                problems.add(path, f"config key {path}: expected a section (mapping)")
                continue
            section = typing.cast(type[Any], hint)
            kwargs[key] = _build(section, value, path + ".", warnings, problems)
        elif value is None:
            problems.add(path, f"config key {path}: a value is required")
        else:
            try:
                kwargs[key] = _coerce(path, hint, value)
            except ConfigError as exc:
                problems.add(path, str(exc))
    return cls(**kwargs)


def _set_path(tree: dict[str, Any], parts: list[str], value: str) -> None:
    node = tree
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _apply_env(
    tree: dict[str, Any], environ: Mapping[str, str], problems: _Problems
) -> dict[str, str]:
    """Apply ``SANDCAT__*`` overrides; returns which variable set each dotted key."""
    sources: dict[str, str] = {}
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if not all(parts):
            problems.lines.append(f"bad environment override {name}")
            continue
        _set_path(tree, parts, value)
        sources[".".join(parts)] = name
    return sources


#: ``websocket.public_addr`` must be given when clients cannot use the listening host.
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]", ""})
LOG_STREAMS = frozenset({"console", "stderr", "stdout"})


def _cannot_create_in(folder: Path) -> str | None:
    """Why this process cannot create a file in ``folder`` (tried for real: permission bits
    do not stop root, a read-only or virtual file system does); None if it can."""
    try:
        fd, name = tempfile.mkstemp(dir=folder, prefix=".sandcat-check-")
    except OSError as exc:
        return f"{folder} is not writable ({exc.strerror})"
    os.close(fd)
    os.unlink(name)
    return None


def _writable_dir(path: Path) -> str | None:
    """Why ``path`` cannot be used (or made) as a folder this process writes; None if it can."""
    probe = path.resolve()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is not a folder"
    return _cannot_create_in(probe)


def _log_file_problem(output: str) -> str | None:
    file = Path(output)
    if file.is_dir():
        return f"{file} is a folder"
    if file.exists():
        try:
            with file.open("a"):
                return None
        except OSError as exc:
            return exc.strerror or str(exc)
    if not file.parent.is_dir():
        return f"its folder {file.parent} does not exist"
    return _cannot_create_in(file.parent)


def _validate(config: Config, problems: _Problems) -> None:
    def bad(path: str, message: str) -> None:
        problems.add(path, f"config key {path}: {message}")

    if config.component not in ROLE_ALIASES:
        names = ", ".join(sorted(ROLE_ALIASES))
        bad("component", f"{config.component!r} is not one of {names}")
    if config.mode not in {"embedded", "distributed"}:
        bad("mode", f"{config.mode!r} is not embedded or distributed")
    if config.log.level.lower() not in {"trace", "debug", "info", "warn", "warning", "error"}:
        bad("log.level", f"{config.log.level!r} is not a log level")
    if config.log.format not in {"text", "json"}:
        bad("log.format", f"{config.log.format!r} is not text or json")
    if config.log.output not in LOG_STREAMS:
        reason = _log_file_problem(config.log.output)
        if reason:
            bad("log.output", f"cannot open the log file {config.log.output!r}: {reason}")
    if config.websocket.protocol not in {"ws", "wss"}:
        bad("websocket.protocol", f"{config.websocket.protocol!r} is not ws or wss")
    public = config.websocket.public_addr
    if public and not public.startswith(("ws://", "wss://")):
        bad("websocket.public_addr", f"{public!r} does not start with ws:// or wss://")
    if (
        not public
        and config.websocket.host in WILDCARD_HOSTS
        and config.component in ROLE_ALIASES
        and config.role != "msg-server"
    ):
        bad(
            "websocket.public_addr",
            f"required when websocket.host is {config.websocket.host!r}: login would hand "
            f"clients ws://{config.websocket.host}:{config.websocket.port}/ws; set the address "
            "clients reach the gateway at, e.g. ws://chat.example.com:50000/ws",
        )
    ports = (("server.port", config.server.port), ("websocket.port", config.websocket.port))
    for path, value in ports:
        if not 0 <= value <= 65535:
            bad(path, f"{value} is not a TCP port")
    if (
        config.server.port == config.websocket.port != 0
        and config.component in ROLE_ALIASES
        and config.role == "all"
    ):
        other = problems.sources.get("server.port")
        named = f"server.port (set by {other})" if other else "server.port"
        bad("websocket.port", f"{config.websocket.port} is also {named}: give each its own")
    for limit in dataclasses.fields(config.limits):
        value = getattr(config.limits, limit.name)
        if value < 0:
            bad(f"limits.{limit.name}", "must not be negative")
    for key in ("webhook_attempts", "webhook_timeout_seconds", "poll_seconds", "lease_seconds"):
        if getattr(config.bots, key) <= 0:
            bad(f"bots.{key}", "must be positive")
    if config.auth.refresh_reuse_grace_seconds < 0:
        bad("auth.refresh_reuse_grace_seconds", "must not be negative")
    if config.db.postgres.history_archive not in {"drop", "move"}:
        bad(
            "db.postgres.history_archive",
            f"{config.db.postgres.history_archive!r} is not drop or move",
        )
    secret = config.server.jwt_secret
    if secret and len(secret.encode()) < 32:
        bad("server.jwt_secret", "must be at least 32 bytes (or empty)")
    github = config.server.oauth2.github
    if bool(github.client_id) != bool(github.client_secret):
        bad("server.oauth2.github", "client_id and client_secret go together (or neither)")
    if not secret and config.mode == "distributed":
        bad("server.jwt_secret", "required in distributed mode (every process must share it)")
    if not 1 <= config.kafka.consumer.fetch_min_bytes <= 1048576:
        bad("kafka.consumer.fetch_min_bytes", "must be between 1 and 1048576 (bytes)")
    if not 0 <= config.embedded.commit_window_ms <= 100:
        bad("embedded.commit_window_ms", "must be between 0 and 100 (milliseconds)")
    if not 1 <= config.embedded.max_batch <= 4096:
        bad("embedded.max_batch", "must be between 1 and 4096 (messages)")
    if config.embedded.cache_mib < 2:
        bad("embedded.cache_mib", "must be at least 2 (MiB)")
    if config.mode == "embedded":
        reason = _writable_dir(Path(config.embedded.data_dir))
        if reason:
            bad("embedded.data_dir", f"cannot write {config.embedded.data_dir}: {reason}")


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Loaded:
    """Read ``path`` (if given and present), apply environment overrides, validate."""
    tree: dict[str, Any] = {}
    if path is not None:
        file = Path(path)
        if not file.exists():
            raise ConfigError(f"config file {file} does not exist")
        try:
            raw = yaml.safe_load(file.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {file} is not valid YAML: {exc}") from exc
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError(f"config file {file} must hold a mapping at the top level")
        tree = raw or {}
    problems = _Problems()
    problems.sources = _apply_env(tree, os.environ if environ is None else environ, problems)
    for dotted, value in (overrides or {}).items():
        node = tree
        parts = dotted.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    warnings: list[str] = []
    config = _build(Config, tree, "", warnings, problems)
    _validate(config, problems)
    if problems.lines:
        raise ConfigError("\n".join(problems.lines))
    return Loaded(config, tuple(warnings))


def replace(config: Config, **sections: Any) -> Config:
    """A copy of ``config`` with whole sections replaced (used by tests and benchmarks)."""
    return dataclasses.replace(config, **sections)
