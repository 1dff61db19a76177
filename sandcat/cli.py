"""The ``sandcat`` command line: serve, migrate, check-config, info, backup, restore, users,
connections, bot, dlq."""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import os
import sys
from pathlib import Path
from typing import Any

from sandcat import __version__, _native
from sandcat.config import ROLE_ALIASES, Config, load_config
from sandcat.errors import ConfigError
from sandcat.log import get_logger, setup_logging

log = get_logger("sandcat.cli")
DEFAULT_CONFIG = "config.yml"
#: A port taken, a privileged port, an address not on this machine: one line, no traceback.
LISTEN_ERRORS = frozenset({errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL})


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
        output=loaded.config.log.output,
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

        uvloop.run(serve_forever(config, reload=lambda: _load(args, args.role)))
    except ImportError:  # pragma: no cover - uvloop is a dependency; keep serving without it
        asyncio.run(serve_forever(config, reload=lambda: _load(args, args.role)))
    except DataDirBusy as exc:
        log.error("data_dir_busy", details=str(exc))
        print(f"sandcat: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        if exc.errno not in LISTEN_ERRORS:
            raise
        log.error("listen_failed", details=str(exc))
        print(f"sandcat: cannot listen: {exc}", file=sys.stderr)
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
    from sandcat.adapters.embedded.sqlite import DataDirBusy

    request = admin.SeedRequest(
        count=args.count,
        prefix=args.prefix,
        password=args.password,
        domain=args.domain,
        friends=args.friends,
        group_size=args.group_size,
    )
    try:
        seeded = asyncio.run(admin.seed(config, request))
    except DataDirBusy as exc:  # seeding writes the store directly: never beside a server
        print(f"sandcat: {exc}", file=sys.stderr)
        return 1
    text = admin.render(seeded, request, args.format)
    if args.output in {None, "-"}:
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return 0


def _print_rows(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> None:
    print("\t".join(columns))
    for row in rows:
        print("\t".join("" if row.get(c) is None else str(row.get(c)) for c in columns))


USER_COLUMNS = ("id", "name", "account", "email", "disabled", "create_time")


BOT_ID_HELP = "the bot's id (after -- when it begins with -)"
BOT_COLUMNS = {
    "bot.list": ("id", "name", "webhook_url", "auto_accept", "cursor_seq"),
    "bot.dead-letters": ("id", "bot_id", "seq", "server_id", "attempts", "last_error"),
}


def admin_request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The admin command and its arguments, as ``admin.run_admin`` takes them."""
    keys = (
        "user",
        "limit",
        "offset",
        "password",
        "bot",
        "name",
        "webhook",
        "auto_accept",
        "all",
        "letters",
    )
    return args.op, {
        key: getattr(args, key) for key in keys if getattr(args, key, None) is not None
    }


def _cmd_admin(args: argparse.Namespace) -> int:
    """``sandcat users list|show|...`` and ``sandcat connections list|kick``."""
    config = _load(args)
    from sandcat import admin
    from sandcat.adapters.embedded.sqlite import DataDirBusy
    from sandcat.errors import SandcatError

    op, params = admin_request(args)
    try:
        result = asyncio.run(admin.run_admin(config, op, params))
    except (SandcatError, admin.AdminError, DataDirBusy) as exc:
        print(f"sandcat: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=1))
    elif op == "users.list":
        _print_rows(result, USER_COLUMNS)
    elif op == "connections.list":
        columns = ("user_id", "platform", "gateway" if config.mode == "distributed" else "ip")
        _print_rows(result, columns)
    elif op in BOT_COLUMNS:
        _print_rows(result, BOT_COLUMNS[op])
    else:
        for key, value in result.items():
            shown = len(value) if key == "connections" else value
            print(f"{key}: {'' if shown is None else shown}")
    return 0


def _cmd_backup(args: argparse.Namespace) -> int:
    config = _load(args)
    from sandcat import backup

    if config.mode == "distributed":
        print(backup.distributed_plan(config), end="")
        return 0
    try:
        manifest = backup.backup_embedded(config, Path(args.path))
    except backup.BackupError as exc:
        print(f"sandcat: {exc}", file=sys.stderr)
        return 1
    print(
        f"backed up {manifest['source']} to {args.path}: {backup.DB_NAME}, "
        f"{manifest['files']} file(s)" + (", jwt_secret" if manifest["jwt_secret"] else "")
    )
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    config = _load(args)
    from sandcat import backup
    from sandcat.adapters.embedded.sqlite import DataDirBusy

    if config.mode == "distributed":
        print(backup.distributed_plan(config), end="")
        return 0
    try:
        manifest = backup.restore_embedded(config, Path(args.path), force=args.force)
    except (backup.BackupError, DataDirBusy) as exc:
        print(f"sandcat: {exc}", file=sys.stderr)
        return 1
    print(
        f"restored the backup of {manifest['created']} into {config.embedded.data_dir}: "
        f"{backup.DB_NAME}, {manifest['files']} file(s)"
        + (", jwt_secret" if manifest["jwt_secret"] else "")
    )
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


def _admin_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, op: str, help_text: str
) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text)
    _config_arg(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=_cmd_admin, op=op)
    return parser


def _bot_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``sandcat bot ...``: bot accounts and their webhooks (docs/protocol.md, "Bots")."""
    bot = sub.add_parser("bot", help="bot accounts and their webhooks")
    bot_sub = bot.add_subparsers(dest="bot_command", required=True, metavar="ACTION")
    create = _admin_parser(
        bot_sub,
        "create",
        "bot.create",
        "create a bot; prints its API token and webhook secret once only",
    )
    create.add_argument("name", help="the bot's name and account (what users search for)")
    create.add_argument("--webhook", default="", help="the URL its messages are POSTed to")
    create.add_argument(
        "--auto-accept", action="store_true", default=None, help="accept friend requests"
    )
    _admin_parser(bot_sub, "list", "bot.list", "every bot")
    for action, help_text in (
        ("rotate-token", "a new API token (printed once); the old one stops working"),
        ("delete", "delete the bot and its account"),
    ):
        command = _admin_parser(bot_sub, action, f"bot.{action}", help_text)
        command.add_argument("bot", help=BOT_ID_HELP)
    webhook = _admin_parser(
        bot_sub, "set-webhook", "bot.set-webhook", "set the webhook URL (empty: none)"
    )
    webhook.add_argument("bot", help=BOT_ID_HELP)
    webhook.add_argument("webhook", help="URL, or '' for no deliveries")
    accept = webhook.add_mutually_exclusive_group()
    accept.add_argument("--auto-accept", action="store_true", default=None)
    accept.add_argument("--no-auto-accept", dest="auto_accept", action="store_false")
    letters = _admin_parser(
        bot_sub, "dead-letters", "bot.dead-letters", "webhook deliveries given up, newest first"
    )
    letters.add_argument("bot", nargs="?", help=BOT_ID_HELP + " (default: every bot)")
    letters.add_argument("--limit", type=int, default=100)
    replay = _admin_parser(
        bot_sub,
        "replay",
        "bot.replay",
        "queue dead letters for another delivery (each removed after a 2xx)",
    )
    replay.add_argument("bot", help=BOT_ID_HELP)
    which = replay.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", default=None, help="every dead letter")
    which.add_argument(
        "letters",
        nargs="*",
        type=int,
        default=[],
        metavar="DEAD_LETTER_ID",
        help="the ids `sandcat bot dead-letters` lists",
    )


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

    backup = sub.add_parser(
        "backup",
        help="copy the embedded data folder while the server runs (distributed: how to)",
    )
    _config_arg(backup)
    backup.add_argument("path", help="a new (or empty) folder for the backup")
    backup.set_defaults(func=_cmd_backup)

    restore = sub.add_parser(
        "restore", help="put a backup into the configured data folder (no server on it)"
    )
    _config_arg(restore)
    restore.add_argument("path", help="a folder made by `sandcat backup`")
    restore.add_argument(
        "--force", action="store_true", help="replace a database already in the data folder"
    )
    restore.set_defaults(func=_cmd_restore)

    users = sub.add_parser("users", help="user administration on the configured store")
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    seed = users_sub.add_parser(
        "seed",
        help="create many users directly (benchmarks; embedded mode, no server running)",
    )
    _config_arg(seed)
    seed.add_argument("--count", type=int, required=True, help="how many users")
    seed.add_argument("--prefix", default="bench", help="name and e-mail prefix (unique per run)")
    seed.add_argument("--password", required=True, help="the password every seeded user gets")
    seed.add_argument("--domain", default="bench.example.com", help="e-mail domain")
    seed.add_argument(
        "--friends",
        choices=("none", "ring", "all-pairs"),
        default="none",
        help="friendships among the seeded users: none, each with the next (ring), or all",
    )
    seed.add_argument(
        "--group-size",
        type=int,
        default=0,
        help="groups of this many consecutive users, the first one owning it (0: none)",
    )
    seed.add_argument("--format", choices=("json", "csv"), default="json")
    seed.add_argument("-o", "--output", default=None, help="file to write (default: stdout)")
    seed.set_defaults(func=_cmd_users_seed)
    listing = _admin_parser(users_sub, "list", "users.list", "users not deleted, oldest first")
    listing.add_argument("--limit", type=int, default=100, help="at most this many")
    listing.add_argument("--offset", type=int, default=0, help="skip this many first")
    for action, help_text in (
        ("show", "one user, their token generation and open connections"),
        ("disable", "refuse the user's logins, revoke their tokens, close their sockets"),
        ("enable", "allow the user to log in again"),
        ("delete", "mark the user deleted, revoke their tokens, close their sockets"),
        ("reset-password", "set a new password (printed), revoke tokens, close sockets"),
    ):
        command = _admin_parser(users_sub, action, f"users.{action}", help_text)
        command.add_argument(
            "user", help="id, account, e-mail or phone (after -- when it begins with -)"
        )
        if action == "reset-password":
            command.add_argument("--password", help="the new password (default: a random one)")

    connections = sub.add_parser("connections", help="the open WebSocket connections")
    conn_sub = connections.add_subparsers(dest="connections_command", required=True)
    _admin_parser(conn_sub, "list", "connections.list", "every open connection")
    kick = _admin_parser(
        conn_sub, "kick", "connections.kick", "close the user's sockets (4002), revoke tokens"
    )
    kick.add_argument("user", help="id, account, e-mail or phone (after -- when it begins with -)")

    _bot_parsers(sub)
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
        for line in str(exc).splitlines():
            print(f"sandcat: {line}", file=sys.stderr)
        return 2
    return code
