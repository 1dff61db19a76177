"""``sandcat-bench`` (or ``python -m benchmarks.load``): drive a sandcat-compatible server.

``run``    drives a server given by URL (and optionally its PIDs), users from a seed file
           or registered through the public API with codes read from a named source.
``suite``  starts embedded servers itself, seeds users and runs the standard suite;
           ``--baseline relay`` then runs one-to-one, the pipelined one-to-one and group
           fan-out against the relay baseline (``benchmarks/load/relay.py``) with the same
           settings.
``report`` regenerates docs/benchmarks.md and the plots from results JSON files.

``--server-config PATH`` writes the server config a load run needs (the limits raised, the
friend policy off, a cheap argon2), to start the server under test with.
Refusals and errors are printed as they happen, with their cause and the key to change
(``benchmarks/load/refusals.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks.load import report, scenarios, stalls
from benchmarks.load.api import Account, ApiError, code_source
from benchmarks.load.launch import RelayServer, Servers
from benchmarks.load.scenarios import Context, Target, Timing

SCENARIOS = ("one-to-one", "pipeline", "group", "idle", "offline", "http")
ROOT = Path(__file__).resolve().parents[2]
#: In a checkout (``make bench``) results and the report go into the repository; run from
#: an installation elsewhere, into ``sandcat-bench-results`` in the current folder.
CHECKOUT = (ROOT / "pyproject.toml").is_file() and (ROOT / "docs").is_dir()
RESULTS = ROOT / "benchmarks" / "results" / "latest" if CHECKOUT else Path("sandcat-bench-results")
DOCS = ROOT / "docs" if CHECKOUT else Path("sandcat-bench-results")


@contextmanager
def progress_bar(total: int, enabled: bool) -> Iterator[Callable[[str], None]]:
    """A tqdm bar advanced once per reported step (plain lines when tqdm is missing)."""
    try:
        from tqdm import tqdm
    except ImportError:  # the `bench` extra is not installed: plain lines
        enabled = False
    if not enabled:

        def plain(text: str) -> None:
            print(f"[bench] {text}", file=sys.stderr, flush=True)

        yield plain
        return
    bar = tqdm(total=total, unit="step", dynamic_ncols=True, file=sys.stderr)

    def step(text: str) -> None:
        bar.write(f"[bench] {text}", file=sys.stderr)
        bar.update(1)

    try:
        yield step
    finally:
        bar.close()


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenarios", default=",".join(SCENARIOS), help="comma-separated")
    parser.add_argument("--workers", type=int, default=2, help="load worker processes")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--measure", type=float, default=3.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--users", type=int, default=1000, help="one-to-one: connected users")
    parser.add_argument("--senders", type=int, default=200, help="one-to-one: senders")
    parser.add_argument("--rate", type=float, default=2000.0, help="one-to-one: first rate")
    parser.add_argument("--max-rate", type=float, default=64000.0)
    parser.add_argument("--no-find-max", action="store_true", help="one rate only (--rate)")
    parser.add_argument("--slo-ms", type=float, default=250.0, help="p99 bound of a healthy rate")
    parser.add_argument(
        "--pipeline-messages",
        type=int,
        default=20000,
        help="pipeline: messages one sender pipelines to one online receiver, per repeat",
    )
    parser.add_argument("--group-sizes", default="100,1000,10000")
    parser.add_argument("--burst-deliveries", type=int, default=100000)
    parser.add_argument("--idle-users", type=int, default=10000, help="× 2 platforms")
    parser.add_argument("--idle-hold", type=float, default=5.0)
    parser.add_argument("--source-addrs", default="127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5")
    parser.add_argument("--offline-messages", type=int, default=100000)
    parser.add_argument("--offline-rate", type=float, default=0.0, help="0: 75 %% of max")
    parser.add_argument("--http-concurrency", type=int, default=32)
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--label", default="run", help="name of this run in reports")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument(
        "--stall-probe",
        type=float,
        default=10.0,
        help="seconds of the machine's own stall probe, run once the servers have stopped "
        "(benchmarks/load/stalls.py; 0: none)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sandcat-bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--server-config",
        metavar="PATH",
        help="write the server config a load run needs to PATH (then: sandcat serve -c PATH)",
    )
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="drive a server given by URL")
    run.add_argument("--api", action="append", required=True, help="API base URL (repeatable)")
    run.add_argument("--pid", action="append", type=int, default=[], help="server PID to watch")
    run.add_argument("--users-file", help="JSON from `sandcat users seed`")
    run.add_argument("--register", type=int, default=0, help="register N users via the API")
    run.add_argument("--code-source", default="", help="log:PATH | redis-key:H:P | redis-hash:H:P")
    run.add_argument("--password", default="bench-password-1")
    _add_common(run)
    suite = sub.add_parser("suite", help="the standard suite against embedded servers it starts")
    suite.add_argument("--no-extensions", action="store_true", help="SANDCAT_NO_EXTENSIONS=1")
    suite.add_argument("--server-cpus", default="", help="taskset CPU list for the server")
    suite.add_argument(
        "--baseline",
        choices=("none", "relay"),
        default="none",
        help="relay: also run one-to-one, pipeline and group fan-out against the bare relay "
        "(benchmarks/load/relay.py) for the server-CPU ratio",
    )
    _add_common(suite)
    rep = sub.add_parser("report", help="regenerate docs/benchmarks.md and plots")
    rep.add_argument("results", nargs="+", help="results JSON files (label taken from each)")
    rep.add_argument("--doc", default=str(DOCS / "benchmarks.md"))
    rep.add_argument("--plots", default=str(DOCS / "plots"))
    rep.add_argument("--run-command", default="make bench", help="the command to quote")
    return parser


def _wanted(args: argparse.Namespace) -> list[str]:
    chosen = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(chosen) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    return chosen


async def _login(ctx: Context, target: Target, accounts: list[Account]) -> dict[str, float]:
    try:
        rate = await scenarios.login_all(target, accounts)
    except scenarios.LoginsFailed as exc:
        ctx.refused("login", exc.count, exc.samples)
        raise SystemExit(f"{exc} (see above)") from exc
    ctx.progress(f"logged in {len(accounts)} users at {rate['per_s']:.0f}/s")
    return rate


async def _one_to_one(
    ctx: Context,
    args: argparse.Namespace,
    accounts: list[Account],
    *,
    repeats: int,
    find_max: bool,
    rate: float | None = None,
) -> dict[str, Any]:
    """The one-to-one scenario with the command line's users, senders and SLO; ``rate``
    fixes the rate (no search: the first and the highest rate are both ``rate``)."""
    return await scenarios.one_to_one(
        ctx,
        accounts[: args.users],
        senders=args.senders,
        start_rate=args.rate if rate is None else rate,
        max_rate=args.max_rate if rate is None else rate,
        slo_ms=args.slo_ms,
        repeats=repeats,
        find_max=find_max,
    )


async def run_scenarios(
    ctx: Context,
    args: argparse.Namespace,
    accounts: list[Account],
    groups: dict[int, str],
) -> dict[str, Any]:
    """Every chosen scenario on already-provisioned (and logged-in) accounts."""
    wanted = _wanted(args)
    out: dict[str, Any] = {}
    if "one-to-one" in wanted:
        out["one_to_one"] = await _one_to_one(
            ctx, args, accounts, repeats=args.repeats, find_max=not args.no_find_max
        )
    if "pipeline" in wanted:
        out["pipeline"] = await scenarios.pipeline(
            ctx, accounts[:2], messages=args.pipeline_messages, repeats=args.repeats
        )
    if "group" in wanted and groups:
        out["group_fanout"] = await scenarios.group_fanout(
            ctx, accounts, groups, burst_deliveries=args.burst_deliveries, repeats=args.repeats
        )
    elif "group" in wanted:
        ctx.warnings.append("group fan-out skipped: no groups could be made on this server")
    if "offline" in wanted:
        rate = args.offline_rate or 0.75 * float(
            out.get("one_to_one", {}).get("max_offered_per_s", 0) or 5000.0
        )
        out["offline"] = await scenarios.offline_sync(
            ctx, accounts[:21], messages=args.offline_messages, fill_rate=rate
        )
    if "http" in wanted:
        out["http"] = await scenarios.http_rates(
            ctx,
            accounts[: max(64, args.http_concurrency)],
            concurrency=args.http_concurrency,
            repeats=args.repeats,
        )
    if "idle" in wanted:
        out["idle"] = await scenarios.idle_connections(
            ctx,
            accounts[: args.idle_users],
            platforms=(0, 1),
            source_addrs=tuple(a for a in args.source_addrs.split(",") if a),
            hold=args.idle_hold,
        )
    out["warnings"] = ctx.warnings
    return out


def _meta(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    return {
        "started": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "argv": sys.argv,
        "machine": report.machine_facts(),
        "timing": f"warm-up {args.warmup} s, measure {args.measure} s, "
        f"{args.repeats} repeats at 75 % of max",
        "stalls": stalls.probe(args.stall_probe) if args.stall_probe > 0 else None,
        **extra,
    }


def _steps(args: argparse.Namespace) -> int:
    wanted = _wanted(args)
    sizes = len(args.group_sizes.split(","))
    steps: int = (
        ("one-to-one" in wanted) * (10 + args.repeats)
        + ("pipeline" in wanted) * (1 + args.repeats)
        + ("group" in wanted) * sizes * 2 * args.repeats
        + ("offline" in wanted) * 2
        + ("http" in wanted) * 2 * args.repeats
        + ("idle" in wanted) * 2
        + 3
    )
    if getattr(args, "baseline", "none") == "relay":
        steps += (
            ("one-to-one" in wanted) * (3 + args.repeats)
            + ("pipeline" in wanted) * (1 + args.repeats)
            + ("group" in wanted) * sizes * 2 * args.repeats
            + 2
        )
    return steps


async def cmd_run(args: argparse.Namespace) -> int:
    target = Target(tuple(a.rstrip("/") for a in args.api), tuple(args.pid))
    timing = Timing(args.warmup, args.measure)
    with progress_bar(_steps(args), not args.no_progress) as progress:
        ctx = Context(target, args.workers, timing, progress)
        if args.users_file:
            accounts = scenarios.read_users_file(Path(args.users_file))
        elif args.register:
            if not args.code_source:
                raise SystemExit("--register needs --code-source")
            codes = code_source(args.code_source)
            try:
                accounts = await scenarios.register_users(
                    target.api[0],
                    codes,
                    count=args.register,
                    prefix="bench",
                    password=args.password,
                )
            except (ApiError, aiohttp.ClientError) as exc:
                ctx.refused("register", 1, [f"{type(exc).__name__}: {exc}"])
                raise SystemExit("registration failed (see above)") from exc
            finally:
                await codes.close()
            progress(f"registered {len(accounts)} users through the API")
        else:
            raise SystemExit("give --users-file or --register N")
        await _login(ctx, target, accounts)
        sizes = sorted(int(s) for s in args.group_sizes.split(",") if s)
        wanted = _wanted(args)
        groups = await scenarios.make_groups(ctx, accounts, sizes) if "group" in wanted else {}
        results = await run_scenarios(ctx, args, accounts, groups)
    results["meta"] = _meta(args, target={"api": target.api, "pids": target.pids}, native="?")
    _finish(args, results)
    return 0


def _finish(args: argparse.Namespace, results: dict[str, Any]) -> None:
    out = Path(args.out)
    report.write_json(out / f"{args.label}.json", results)
    (out / f"{args.label}.md").write_text(report.markdown({args.label: results}), encoding="utf-8")
    print(report.markdown({args.label: results}))
    print(f"results: {out / (args.label + '.json')}", file=sys.stderr)


async def cmd_suite(args: argparse.Namespace) -> int:
    """Embedded servers started here; users seeded with the admin command; every scenario."""
    out = Path(args.out)
    data = out / f"data-{args.label}"
    timing = Timing(args.warmup, args.measure)
    sizes = sorted(int(s) for s in args.group_sizes.split(",") if s)
    wanted = _wanted(args)
    need = max(
        [args.users, 64]
        + (sizes if "group" in wanted else [])
        + ([args.idle_users] if "idle" in wanted else [])
    )
    servers = Servers(data, out / f"logs-{args.label}", args.no_extensions, args.server_cpus)
    if data.exists():
        import shutil

        shutil.rmtree(data)
    with progress_bar(_steps(args), not args.no_progress) as progress:
        seeded = json.loads(
            servers.run_admin(
                "users",
                "seed",
                "--count",
                str(need),
                "--prefix",
                "b",
                "--password",
                "bench-password-1",
            )
        )
        accounts = [
            Account(id=u["id"], email=u["email"], password=seeded["password"])
            for u in seeded["users"]
        ]
        progress(f"seeded {len(accounts)} users")
        native = servers.run_admin("info")
        await servers.start(1)
        results: dict[str, Any] = {}
        try:
            ctx = Context(Target(tuple(servers.api), servers.pids), args.workers, timing, progress)
            if set(wanted) - {"idle"}:  # the idle suite logs its users in on its own servers
                await _login(ctx, ctx.target, accounts)
            groups = await scenarios.make_groups(ctx, accounts, sizes) if "group" in wanted else {}
            plain = argparse.Namespace(
                **{**vars(args), "scenarios": args.scenarios.replace("idle", "")}
            )
            results = await run_scenarios(ctx, plain, accounts, groups)
        finally:
            servers.stop()
        if "idle" in _wanted(args):
            results["idle"] = await _idle_suite(args, servers, ctx, accounts[: args.idle_users])
        if args.baseline == "relay":
            results["baseline"] = await _relay_baseline(args, ctx, accounts, sizes, results)
    results["meta"] = _meta(args, native=report.native_word(native), server_info=native.strip())
    _finish(args, results)
    return 0


async def _relay_baseline(
    args: argparse.Namespace,
    ctx: Context,
    accounts: list[Account],
    sizes: list[int],
    sandcat: dict[str, Any],
) -> dict[str, Any]:
    """One-to-one, pipeline and group fan-out against the relay baseline, same settings.

    One-to-one runs no search of its own: its probes are at the rates the sandcat run
    probed its curve at (25, 50 and 75 % of sandcat's max), so the CPU per delivered message
    at 75 % compares the two at the same offered load. The pipeline sends the same number
    of messages; fan-out uses the same bursts.
    """
    wanted = _wanted(args)
    relay = RelayServer(Path(args.out) / f"logs-{args.label}", args.server_cpus)
    # Fresh copies: a login at the relay rewrites id, token and ws_addr.
    users = [Account(id=a.id, email=a.email, password=a.password) for a in accounts]
    rate = float((sandcat.get("one_to_one") or {}).get("max_offered_per_s") or args.rate)
    out: dict[str, Any] = {"target": "relay", "one_to_one_rate": rate}
    try:
        await relay.start()
        target = Target(tuple(relay.api), relay.pids)
        rctx = Context(
            target, args.workers, ctx.timing, lambda text: ctx.progress(f"relay: {text}")
        )
        await _login(rctx, target, users)
        if "one-to-one" in wanted:
            out["one_to_one"] = await _one_to_one(
                rctx, args, users, repeats=args.repeats, find_max=False, rate=rate
            )
            # The relay's own ceiling with this generator on this machine, found by the
            # same search: what any server could be measured at here.
            out["one_to_one_max"] = await _one_to_one(rctx, args, users, repeats=1, find_max=True)
        if "pipeline" in wanted:
            out["pipeline"] = await scenarios.pipeline(
                rctx, users[:2], messages=args.pipeline_messages, repeats=args.repeats
            )
        if "group" in wanted:
            groups = await scenarios.make_groups(rctx, users, sizes)
            if groups:
                out["group_fanout"] = await scenarios.group_fanout(
                    rctx,
                    users,
                    groups,
                    burst_deliveries=args.burst_deliveries,
                    repeats=args.repeats,
                )
    finally:
        relay.stop()
    ctx.warnings.extend(f"relay baseline: {w}" for w in rctx.warnings)
    return out


async def _idle_suite(
    args: argparse.Namespace, servers: Servers, ctx: Context, accounts: list[Account]
) -> dict[str, Any]:
    """Idle connections, spread over as many server processes as the open-file limit needs."""
    wanted = args.idle_users * 2
    hard = report.machine_facts()["open_files_hard_limit"]
    # Each process, server or generator, holds at most the open-file limit less a margin.
    processes = max(1, -(-wanted // max(1, hard - 1000)))
    await servers.start(processes)
    try:
        target = Target(tuple(servers.api), servers.pids)
        idle_ctx = Context(target, max(args.workers, 3, processes), ctx.timing, ctx.progress)
        await _login(idle_ctx, target, accounts)
        result = await scenarios.idle_connections(
            idle_ctx,
            accounts,
            platforms=(0, 1),
            source_addrs=tuple(a for a in args.source_addrs.split(",") if a),
            hold=args.idle_hold,
        )
        ctx.warnings.extend(idle_ctx.warnings)
        return result
    finally:
        servers.stop()


def write_server_config(path: Path) -> None:
    """The server config of a load run (``bench-config.yml``), with how to use it."""
    text = resources.files("benchmarks.load").joinpath("bench-config.yml").read_text("utf-8")
    path.write_text(
        f"# Written by `sandcat-bench --server-config {path}`. Start the server under test with\n"
        f"#   sandcat serve -c {path} 2> server.log\n"
        "# and register users with `sandcat-bench run --register N --code-source log:server.log`\n"
        "# (or seed them: sandcat users seed --count N > users.json; --users-file users.json).\n"
        + text,
        encoding="utf-8",
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.server_config:
        path = Path(args.server_config)
        write_server_config(path)
        print(f"wrote {path}: start the server with `sandcat serve -c {path}`", file=sys.stderr)
        if args.command is None:
            return 0
    if args.command is None:
        parser.error("choose a command: run, suite or report (or give --server-config PATH)")
    if args.command == "report":
        return cmd_report(args)
    import uvloop

    runner = cmd_run if args.command == "run" else cmd_suite
    code: int = uvloop.run(runner(args))
    return code


def cmd_report(args: argparse.Namespace) -> int:
    results: dict[str, dict[str, Any]] = {}
    for name in args.results:
        path = Path(name)
        results[path.stem] = json.loads(path.read_text(encoding="utf-8"))
    report.plots(results, Path(args.plots))
    report.write_doc(
        Path(args.doc), results, command=args.run_command, notes=report.goal_notes(results)
    )
    print(f"wrote {args.doc} and plots in {args.plots}", file=sys.stderr)
    return 0
