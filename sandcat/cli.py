"""The ``sandcat`` command line: serve, migrate, check-config, info, users seed."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from sandcat import __version__, _native
from sandcat.config import ROLE_ALIASES, Config, load_config
from sandcat.errors import ConfigError
from sandcat.log import get_logger, setup_logging

log = get_logger("sandcat.cli")
DEFAULT_CONFIG = "config.yml"


def _config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config",
        "-p",
        "--configuration",
        dest="config",
        default=None,
        help=f"config file (default: ./{DEFAULT_CONFIG} if present; SANDCAT__SECTION__KEY "
        "environment variables override it)",
    )


def _load(args: argparse.Namespace, role: str | None = None) -> Config:
    path = args.config
    if path is None and Path(DEFAULT_CONFIG).exists():
        path = DEFAULT_CONFIG
    overrides = {"component": role} if role else None
    loaded = load_config(path, overrides=overrides)
    setup_logging(
        loaded.config.log.level,
        loaded.config.log.format,
        prefix=os.environ.get("SANDCAT_LOG_PREFIX", ""),
    )
    for warning in loaded.warnings:
        log.warning("config_warning", details=warning)
    return loaded.config


def _cmd_serve(args: argparse.Namespace) -> int:
    config = _load(args, args.role)
    from sandcat.adapters.embedded.sqlite import DataDirBusy
    from sandcat.composition import migrate
    from sandcat.server import serve_forever

    migrate(config)
    try:
        import uvloop

        uvloop.run(serve_forever(config))
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep serving without it
        asyncio.run(serve_forever(config))
    except DataDirBusy as exc:
        log.error("data_dir_busy", details=str(exc))
        print(f"sandcat: {exc}", file=sys.stderr)
        return 1
    return 0


def _cmd_migrate(args: argparse.Namespace) -> int:
    config = _load(args)
    from sandcat.composition import migrate

    applied = migrate(config)
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0


def _cmd_check_config(args: argparse.Namespace) -> int:
    config = _load(args)
    print(f"config ok: mode={config.mode} role={config.role}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    config = _load(args)
    print(f"sandcat {__version__}")
    print(f"mode: {config.mode}")
    print(f"role: {config.role}")
    for name, impl in _native.implementations().items():
        idle = config.mode == "embedded" and name in _native.DISTRIBUTED_ONLY
        print(f"{name}: {impl}" + (" (not called in embedded mode)" if idle else ""))
    return 0


def _cmd_users_seed(args: argparse.Namespace) -> int:
    config = _load(args)
    from sandcat import admin

    request = admin.SeedRequest(
        count=args.count,
        prefix=args.prefix,
        password=args.password,
        domain=args.domain,
        friends=args.friends,
        group_size=args.group_size,
    )
    users = asyncio.run(admin.seed_users(config, request))
    text = admin.render(users, request, args.format)
    if args.output in {None, "-"}:
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return 0


def _cmd_dlq_replay(args: argparse.Namespace) -> int:
    config = _load(args)
    if config.mode != "distributed":
        print("sandcat: the dead-letter topic exists in distributed mode only", file=sys.stderr)
        return 2
    from sandcat.adapters.kafka.queue import replay_dead_letters

    moved = asyncio.run(replay_dead_letters(config.kafka, limit=args.limit))
    print(f"replayed {moved} record(s) from {config.kafka.topic}-dlq to {config.kafka.topic}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sandcat", description="Sandcat: a wire-compatible Python sandcat IM server."
    )
    parser.add_argument("--version", action="version", version=f"sandcat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the server in the foreground")
    _config_arg(serve)
    serve.add_argument(
        "--role",
        choices=sorted(ROLE_ALIASES),
        default=None,
        help="which parts to run (default: the config's `component`, else all)",
    )
    serve.set_defaults(func=_cmd_serve)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    _config_arg(migrate)
    migrate.set_defaults(func=_cmd_migrate)

    check = sub.add_parser("check-config", help="validate the configuration and exit")
    _config_arg(check)
    check.set_defaults(func=_cmd_check_config)

    info = sub.add_parser("info", help="version, mode and hot-path implementations")
    _config_arg(info)
    info.set_defaults(func=_cmd_info)

    users = sub.add_parser("users", help="user administration on the configured store")
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    seed = users_sub.add_parser("seed", help="create many users directly (benchmarks)")
    _config_arg(seed)
    seed.add_argument("--count", type=int, required=True, help="how many users")
    seed.add_argument("--prefix", default="bench", help="name and e-mail prefix (unique per run)")
    seed.add_argument("--password", required=True, help="the password every seeded user gets")
    seed.add_argument("--domain", default="bench.example.com", help="e-mail domain")
    seed.add_argument("--friends", choices=("none", "ring", "all-pairs"), default="none")
    seed.add_argument("--group-size", type=int, default=0, help="members per group (0: none)")
    seed.add_argument("--format", choices=("json", "csv"), default="json")
    seed.add_argument("-o", "--output", default=None, help="file to write (default: stdout)")
    seed.set_defaults(func=_cmd_users_seed)

    dlq = sub.add_parser("dlq", help="the Kafka dead-letter topic (distributed mode)")
    dlq_sub = dlq.add_subparsers(dest="dlq_command", required=True, metavar="ACTION")
    replay = dlq_sub.add_parser("replay", help="put dead-lettered records back on the topic")
    _config_arg(replay)
    replay.add_argument("--limit", type=int, default=0, help="at most this many (0: all)")
    replay.set_defaults(func=_cmd_dlq_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"sandcat: {exc}", file=sys.stderr)
        return 2
    return code
