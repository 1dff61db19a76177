"""``python scripts/services.py`` (or ``python -m scripts.provision``): the command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from .base import (
    ALL_SERVICES,
    ServiceError,
    say,
)
from .lifecycle import install_services, start_services, status_services, stop_services


def _parse_ports(items: Sequence[str]) -> dict[str, int]:
    ports: dict[str, int] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not value.isdigit():
            raise SystemExit(
                f"bad --port {item!r}: expected NAME=PORT (e.g. redis=6390, kafka_controller=9093)"
            )
        ports[key] = int(value)
    return ports


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="services.py",
        description="Local test services for Sandcat (postgres redis kafka mongo s3).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_install = sub.add_parser(
        "install", help="install what is missing (cached under ~/.cache/sandcat)"
    )
    p_install.add_argument("names", nargs="*", metavar="NAME", help=" ".join(ALL_SERVICES))
    p_start = sub.add_parser("start", help="start services and wait until they answer")
    p_start.add_argument("names", nargs="*", metavar="NAME", help=" ".join(ALL_SERVICES))
    p_start.add_argument("--run-dir", required=True, type=Path)
    p_start.add_argument(
        "--port",
        action="append",
        default=[],
        metavar="NAME=PORT",
        help="pin a port (names: postgres redis kafka kafka_controller mongo s3)",
    )
    p_stop = sub.add_parser(
        "stop",
        help="stop what start started in --run-dir; with NAMES only those, keeping their "
        "data and ports for `start NAMES` (a restart)",
    )
    p_stop.add_argument("names", nargs="*", metavar="NAME", help=" ".join(ALL_SERVICES))
    p_stop.add_argument("--run-dir", required=True, type=Path)
    p_status = sub.add_parser("status", help="show whether the services in --run-dir answer")
    p_status.add_argument("--run-dir", required=True, type=Path)
    args = parser.parse_args(argv)

    try:
        if args.command == "install":
            install_services(args.names)
        elif args.command == "start":
            state = start_services(args.names, args.run_dir, _parse_ports(args.port))
            for name, info in state["services"].items():
                say(f"{name}: {info.get('url')} ({info.get('version')})")
            say(f"wrote {args.run_dir / 'services.json'} and {args.run_dir / 'services.env'}")
        elif args.command == "stop":
            stopped = stop_services(args.run_dir, args.names)
            say(f"stopped: {' '.join(stopped) if stopped else 'nothing was running'}")
        elif args.command == "status":
            result = status_services(args.run_dir)
            if not result:
                print("no services in this run dir")
                return 1
            for name, st in result.items():
                print(f"{name}: {st}")
            return 0 if all(v == "up" for v in result.values()) else 1
    except ServiceError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
