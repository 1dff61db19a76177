"""Results as JSON, a Markdown table, PNG plots, and the generated part of docs/benchmarks.md."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from benchmarks.load import stalls
from benchmarks.load.stats import spread

#: Sections written by other benchmarks (micro, sharding, the idle profile and the reconnect
#: storm), kept verbatim on regeneration.
KEPT_HEADINGS = (
    "## Micro-benchmarks (native vs pure)",
    "## Hybrid-sharded inbox (use_sharding false vs true)",
    "## Idle connections and reconnect storms",
)
GOALS = (
    "one-to-one, embedded: ≤ 2.0× the relay's server CPU per delivered message (pipelined "
    "and open-loop), ≥ 10k delivered msgs/s sustained, p99 ≤ 50 ms at 75 % of max; "
    "one-to-one, distributed (durable): ≥ 3k msgs/s, p99 ≤ 100 ms at 75 % of max; "
    "group fan-out, embedded: ≥ 100k deliveries per server core-second (groups of 100 and "
    "1,000); distributed: ≥ 30k deliveries/s for a 1,000-member group; "
    "idle connections: ≤ 8 KiB of server RSS each at 20k per process, 100k held on "
    "this machine"
)


def native_word(info: str) -> str:
    """``on`` when ``sandcat info`` names a compiled implementation for any hot path (its
    lines ``path: implementation [(note)]`` after the version, mode and role), else ``off``."""
    impls = [line.split(":", 1)[1].split()[0] for line in info.splitlines()[3:] if ":" in line]
    return "on" if any(i != "python" for i in impls) else "off"


def _native_of(res: dict[str, Any]) -> str:
    meta = res["meta"]
    info = meta.get("server_info")
    return native_word(info) if info else str(meta.get("native", "?"))


def _inbox_of(res: dict[str, Any]) -> str:
    """Where a distributed run's inbox lived (``meta.inbox``, e.g. FerretDB's handler)."""
    inbox = res["meta"].get("inbox")
    return f", the inbox on {inbox}" if inbox else ""


def machine_facts() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo", encoding="utf-8") as file:
        for line in file:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for name in ("aiohttp", "uvloop", "orjson", "argon2-cffi", "sandcat"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    with open("/proc/meminfo", encoding="utf-8") as file:
        mem_kb = int(file.readline().split()[1])
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "versions": versions,
        "open_files_hard_limit": int(
            subprocess.run(
                ["sh", "-c", "ulimit -Hn"], capture_output=True, text=True, check=True
            ).stdout.strip()
        ),
    }


def write_json(path: Path, results: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1, default=str) + "\n", encoding="utf-8")


def _fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float | int):
        return f"{value:,.{digits}f}"
    return str(value)


def _median(rows: list[dict[str, Any]], *path: str) -> dict[str, float]:
    values = []
    for row in rows:
        node: Any = row
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, int | float):
            values.append(float(node))
    return spread(values)


def _ms(s: dict[str, float]) -> str:
    if not s["runs"]:
        return "–"
    if s["runs"] == 1:
        return _fmt(s["median"], 1)
    return f"{s['median']:,.1f} ({s['min']:,.1f}–{s['max']:,.1f})"


def _rate(s: dict[str, float]) -> str:
    if not s["runs"]:
        return "–"
    if s["runs"] == 1:
        return _fmt(s["median"])
    return f"{s['median']:,.0f} ({s['min']:,.0f}–{s['max']:,.0f})"


def _ratio(ours: dict[str, float], floor: dict[str, float]) -> str:
    """``ours / floor`` of two medians, as "4.2" followed by a multiplication sign."""
    if not ours["runs"] or not floor["runs"] or floor["median"] <= 0:
        return "–"
    return f"{ours['median'] / floor['median']:,.1f}×"


def _bursts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["mode"] == "burst"]


def table_rows(res: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(metric, value, server CPU-µs per unit) rows for one run's results.

    A run with a relay baseline (``suite --baseline relay``) gets, under each one-to-one
    and fan-out result, the relay's figure and the ratio of server CPU per delivered
    message (sandcat / relay).
    """
    rows: list[tuple[str, str, str]] = []
    base = res.get("baseline") or {}
    one = res.get("one_to_one")
    if one:
        at75 = one["at_75pct"]
        rows += [
            ("one-to-one: max sustained delivered msgs/s", _fmt(one["max_delivered_per_s"]), ""),
            (
                "one-to-one at 75 % of max: delivered msgs/s",
                _rate(_median(at75, "delivered_per_s")),
                _ms(_median(at75, "server_cpu_us_per_unit")),
            ),
            (
                "… send→ack p50 / p99 ms",
                _ms(_median(at75, "ack_latency", "p50_ms"))
                + " / "
                + _ms(_median(at75, "ack_latency", "p99_ms")),
                "",
            ),
            (
                "… send→receive p50 / p90 / p99 / max ms",
                " / ".join(
                    _ms(_median(at75, "e2e_latency", k))
                    for k in ("p50_ms", "p90_ms", "p99_ms", "max_ms")
                ),
                "",
            ),
            (
                "… lost / duplicates / order violations (all probes)",
                " / ".join(
                    str(sum(int(p[k]) for p in one["probes"]))
                    for k in ("lost", "duplicates", "order_violations")
                ),
                "",
            ),
        ]
        relay_one = base.get("one_to_one")
        if relay_one:
            rel75 = relay_one["at_75pct"]
            rows += [
                (
                    "… relay baseline at the same offered rate: delivered msgs/s; p99 ms",
                    _rate(_median(rel75, "delivered_per_s"))
                    + "; "
                    + _ms(_median(rel75, "e2e_latency", "p99_ms")),
                    _ms(_median(rel75, "server_cpu_us_per_unit")),
                ),
                (
                    "… server CPU per delivered message, sandcat / relay",
                    _ratio(
                        _median(at75, "server_cpu_us_per_unit"),
                        _median(rel75, "server_cpu_us_per_unit"),
                    ),
                    "",
                ),
            ]
        relay_max = base.get("one_to_one_max")
        if relay_max:
            rows.append(
                (
                    "… relay baseline's own max sustained delivered msgs/s (same search); "
                    "p99 ms at 75 % of it",
                    _fmt(relay_max["max_delivered_per_s"])
                    + "; "
                    + _ms(_median(relay_max["at_75pct"], "e2e_latency", "p99_ms")),
                    "",
                )
            )
    rows += _pipeline_rows(res.get("pipeline"), base.get("pipeline"))
    relay_groups = base.get("group_fanout") or {}
    for size, group_rows in (res.get("group_fanout") or {}).items():
        bursts = _bursts(group_rows)
        singles = [r for r in group_rows if r["mode"] == "single"]
        rows.append(
            (
                f"group of {int(size):,}: deliveries/s (burst)",
                _rate(_median(bursts, "deliveries_per_s")),
                _ms(_median(bursts, "server_cpu_us_per_unit")),
            )
        )
        rows.append(
            (
                "… deliveries per server core-second; fan-out completion p50 ms (idle)",
                _rate(_median(bursts, "deliveries_per_core_s"))
                + "; "
                + _ms(_median(singles, "completion", "p50_ms")),
                "",
            )
        )
        relay_bursts = _bursts(relay_groups.get(size) or [])
        if relay_bursts:
            rows += [
                (
                    "… relay baseline: deliveries/s (burst); deliveries per server core-second",
                    _rate(_median(relay_bursts, "deliveries_per_s"))
                    + "; "
                    + _rate(_median(relay_bursts, "deliveries_per_core_s")),
                    _ms(_median(relay_bursts, "server_cpu_us_per_unit")),
                ),
                (
                    "… server CPU per delivery, sandcat / relay",
                    _ratio(
                        _median(bursts, "server_cpu_us_per_unit"),
                        _median(relay_bursts, "server_cpu_us_per_unit"),
                    ),
                    "",
                ),
            ]
    idle = res.get("idle")
    if idle:
        rows.append(
            (
                f"idle connections open ({idle['server_processes']} server process(es))",
                f"{idle['open_after_hold']:,} of {idle['wanted']:,}",
                "",
            )
        )
        rows.append(("… server RSS per connection, KB", _fmt(idle.get("rss_per_conn_kb"), 1), ""))
        rows.append(
            (
                "… idle server CPU, % of a core",
                _fmt((idle.get("idle_server_cores") or 0) * 100, 2),
                "",
            )
        )
    off = res.get("offline")
    if off:
        rows.append(
            (
                f"offline sync: {off['pulled']:,} waiting messages pulled, msgs/s",
                _fmt(off["messages_per_s"]),
                _fmt(off.get("server_cpu_us_per_unit"), 1),
            )
        )
    http = res.get("http")
    if http:
        for kind, label in (("login", "POST /user/login per s"), ("get", "GET /message/seq per s")):
            rows.append(
                (
                    f"HTTP {label}",
                    _rate(_median(http[kind], "per_s")),
                    _ms(_median(http[kind], "server_cpu_us_per_unit")),
                )
            )
    return rows


def _pipeline_rows(
    pipe: dict[str, Any] | None, relay_pipe: dict[str, Any] | None
) -> list[tuple[str, str, str]]:
    """The pipelined one-to-one (one sender, one online receiver), and its relay baseline."""
    if not pipe:
        return []
    runs = pipe["runs"]
    rows = [
        (
            f"pipeline, 1 sender → 1 online receiver, {int(pipe['messages']):,} msgs: "
            "delivered msgs/s",
            _rate(_median(runs, "delivered_per_s")),
            _ms(_median(runs, "server_cpu_us_per_unit")),
        ),
        (
            "… wall s (first send → last delivery); send→ack p50 / p99 ms; "
            "send→receive p50 / p99 ms",
            _ms(_median(runs, "wall_seconds"))
            + "; "
            + " / ".join(_ms(_median(runs, "ack_latency", k)) for k in ("p50_ms", "p99_ms"))
            + "; "
            + " / ".join(_ms(_median(runs, "e2e_latency", k)) for k in ("p50_ms", "p99_ms")),
            "",
        ),
        (
            "… unacked / lost / duplicates / order violations (all repeats)",
            " / ".join(
                str(sum(int(r[k]) for r in runs))
                for k in ("unacked", "lost", "duplicates", "order_violations")
            ),
            "",
        ),
    ]
    if relay_pipe:
        relay_runs = relay_pipe["runs"]
        rows += [
            (
                "… relay baseline, same messages: delivered msgs/s",
                _rate(_median(relay_runs, "delivered_per_s")),
                _ms(_median(relay_runs, "server_cpu_us_per_unit")),
            ),
            (
                "… server CPU per delivered message, sandcat / relay",
                _ratio(
                    _median(runs, "server_cpu_us_per_unit"),
                    _median(relay_runs, "server_cpu_us_per_unit"),
                ),
                "",
            ),
        ]
    return rows


def _keyed(rows: list[tuple[str, str, str]]) -> dict[tuple[str, str], tuple[str, str]]:
    """Rows keyed by (parent metric, metric): a "…" row belongs to the metric above it, so
    the same "…" text under two group sizes stays two rows."""
    out: dict[tuple[str, str], tuple[str, str]] = {}
    parent = ""
    for metric, value, cpu in rows:
        if not metric.startswith("…"):
            parent = metric
        out[(parent, metric)] = (value, cpu)
    return out


def markdown(results: dict[str, dict[str, Any]]) -> str:
    """One table: a row per metric, a column per labelled run (e.g. native / pure)."""
    labels = list(results)
    tables = {label: _keyed(table_rows(res)) for label, res in results.items()}
    # Metrics in first-seen order; one a run lacks goes after that run's metric before it.
    parents: list[str] = []
    children: dict[str, list[str]] = {}
    for table in tables.values():
        previous = ""
        for parent, metric in table:
            if parent not in children:
                at = parents.index(previous) + 1 if previous else len(parents)
                parents.insert(at, parent)
                children[parent] = []
            if metric != parent and metric not in children[parent]:
                children[parent].append(metric)
            previous = parent
    keys = [(p, m) for p in parents for m in (p, *children[p])]
    head = (
        ["metric"]
        + [f"{label}" for label in labels]
        + [f"{lab}: server CPU-µs/unit" for lab in labels]
    )
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key in keys:
        values = []
        cpus = []
        for label in labels:
            found = tables[label].get(key)
            values.append(found[0] if found else "–")
            cpus.append((found[1] if found else "") or "")
        lines.append("| " + " | ".join([key[1], *values, *cpus]) + " |")
    return "\n".join(lines) + "\n"


#: One-to-one goals per topology: (delivered msgs/s sustained, p99 ms at 75 % of max).
ONE_TO_ONE_GOALS = {"embedded": (10000, 50), "distributed": (3000, 100)}
#: Group fan-out goal: deliveries per server core-second.
FANOUT_GOAL = 100_000
#: Distributed mode: group deliveries per second for a 1,000-member group, all services local.
DIST_FANOUT_GOAL = 30_000


def _topology(label: str) -> str:
    return "distributed" if "distributed" in label else "embedded"


def _by_rate(
    probes: list[dict[str, Any]],
) -> list[tuple[float, dict[str, float], dict[str, float]]]:
    """(offered rate, p50 spread, p99 spread) per distinct rate, in rate order: the search,
    the curve and the repeats at one rate are one point, not a zig-zag."""
    rates = sorted({float(p["offered_per_s"]) for p in probes})
    out = []
    for rate in rates:
        at = [p for p in probes if float(p["offered_per_s"]) == rate]
        out.append(
            (rate, _median(at, "e2e_latency", "p50_ms"), _median(at, "e2e_latency", "p99_ms"))
        )
    return out


def _goal_line(ax: Any, goal: float, label_y: float, label: str, **text: Any) -> None:
    """A grey dashed line across a plot at ``goal``, labelled at its left end."""
    ax.axhline(goal, color="grey", linestyle="--", linewidth=1)
    ax.text(
        0.01, label_y, label, fontsize=8, color="grey", transform=ax.get_yaxis_transform(), **text
    )


def plots(results: dict[str, dict[str, Any]], out_dir: Path) -> list[Path]:
    """latency-vs-rate.png and fanout-vs-group-size.png (needs the ``bench`` extra).

    One line per build (its median), the spread as a band, the goals as grey lines,
    the highest sustained rate marked; throughput axes start at zero.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour = {label: colours[i % len(colours)] for i, label in enumerate(results)}
    written: list[Path] = []

    topologies = [
        t
        for t in ONE_TO_ONE_GOALS
        if any(_topology(label) == t and res.get("one_to_one") for label, res in results.items())
    ]
    fig, axes = plt.subplots(
        1, max(1, len(topologies)), figsize=(6 * max(1, len(topologies)), 4.8), squeeze=False
    )
    for ax, topology in zip(axes[0], topologies, strict=False):
        goal_rate, goal_p99 = ONE_TO_ONE_GOALS[topology]
        for label, res in results.items():
            one = res.get("one_to_one")
            if not one or _topology(label) != topology:
                continue
            points = _by_rate(one["probes"])
            rates = [r for r, _, _ in points]
            p50 = [s50["median"] for _, s50, _ in points]
            p99 = [s99["median"] for _, _, s99 in points]
            c = colour[label]
            ax.fill_between(rates, p50, p99, color=c, alpha=0.18, linewidth=0)
            ax.plot(rates, p99, "-", color=c, marker="o", markersize=3, label=f"{label}: p99")
            ax.plot(rates, p50, ":", color=c, linewidth=1, label=f"{label}: p50")
            best = float(one["max_offered_per_s"])
            at_best = [s99["median"] for r, _, s99 in points if r == best]
            if at_best:
                ax.plot([best], at_best, "*", color=c, markersize=14, markeredgecolor="black")
                ax.annotate(
                    f"max sustained\n{best:,.0f}/s",
                    (best, at_best[0]),
                    textcoords="offset points",
                    xytext=(-10, 8),
                    ha="right",
                    fontsize=8,
                    color=c,
                    fontweight="bold",
                )
        _goal_line(ax, goal_p99, goal_p99 * 1.08, f"goal: p99 ≤ {goal_p99} ms")
        ax.axvline(goal_rate, color="grey", linestyle="-.", linewidth=1)
        ax.text(
            goal_rate,
            0.5,
            f"goal: {goal_rate:,} msgs/s ",
            fontsize=8,
            color="grey",
            rotation=90,
            ha="right",
            va="center",
            transform=ax.get_xaxis_transform(),
        )
        ax.set_xlim(left=0)
        ax.set_yscale("log")
        ax.set_xlabel("offered one-to-one msgs/s")
        ax.set_ylabel("send→receive latency, ms (band: p50 to p99)")
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
        ax.set_title(f"One-to-one latency, {topology} (lower is better)")
    path = out_dir / "latency-vs-rate.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    if relay_ratio_plot(results, out_dir / "relay-ratio.png"):
        written.append(out_dir / "relay-ratio.png")

    fig, ax = plt.subplots(figsize=(7, 4.8))
    series = [(label, False, res.get("group_fanout") or {}) for label, res in results.items()]
    series += [
        (label, True, (res.get("baseline") or {}).get("group_fanout") or {})
        for label, res in results.items()
    ]
    for label, relay, groups in series:
        sizes = sorted(int(s) for s in groups)
        rows = [_median(_bursts(groups[str(s)]), "deliveries_per_core_s") for s in sizes]
        kept = [(size, row) for size, row in zip(sizes, rows, strict=True) if row["runs"]]
        if not kept:
            continue
        xs = [size for size, _ in kept]
        c = colour[label]
        ax.fill_between(
            xs,
            [r["min"] for _, r in kept],
            [r["max"] for _, r in kept],
            color=c,
            alpha=0.12 if relay else 0.2,
            linewidth=0,
        )
        ax.plot(
            xs,
            [r["median"] for _, r in kept],
            "--" if relay else "-",
            color=c,
            marker="s" if relay else "o",
            label=f"{label}: relay baseline" if relay else label,
        )
    _goal_line(ax, FANOUT_GOAL, FANOUT_GOAL * 1.02, f"goal: ≥ {FANOUT_GOAL:,}")
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("group size (online members)")
    ax.set_ylabel("deliveries per server core-second (band: min to max)")
    ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Group fan-out: server work per delivery (higher is better)")
    path = out_dir / "fanout-vs-group-size.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    idle = {label: res["idle"]["samples"] for label, res in results.items() if _idle_samples(res)}
    if idle:
        path = out_dir / "idle-connections.png"
        idle_plot(idle, path)
        written.append(path)
    return written


def _idle_samples(res: dict[str, Any]) -> bool:
    return bool((res.get("idle") or {}).get("samples"))


def idle_plot(runs: dict[str, list[dict[str, float]]], path: Path) -> None:
    """Server connections over time, and server RSS over connections, one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    for label, samples in runs.items():
        t = [s["t"] for s in samples]
        n = [s["connections"] for s in samples]
        rss = [s["rss_mb"] for s in samples]
        left.plot(t, n, "-", label=label)
        # Memory against connections while they open (the closing at the end would draw
        # the line back over itself), with the slope the run measured per connection.
        peak = n.index(max(n)) + 1
        opening_n, opening_rss = n[:peak], rss[:peak]
        first = next((i for i, count in enumerate(opening_n) if count > 0), 0)
        added = opening_n[-1] - opening_n[first]
        per_conn = (opening_rss[-1] - opening_rss[first]) * 2**20 / added if added else 0.0
        right.plot(
            opening_n[first:],
            opening_rss[first:],
            "-o",
            ms=3,
            label=f"{label}: {per_conn / 1024:,.1f} KiB per connection",
        )
    left.set_xlabel("seconds since the first connect")
    left.set_ylabel("server connections (open descriptors added)")
    left.set_title("Idle connections opened over time")
    right.set_xlabel("server connections")
    right.set_ylabel("server RSS, all processes (MB)")
    right.set_title("Server memory against connections, while they open")
    right.set_xlim(left=0)
    for ax in (left, right):
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        ax.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    right.xaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def relay_ratios(results: dict[str, dict[str, Any]]) -> dict[str, list[tuple[str, float]]]:
    """Per run: (scenario, sandcat / relay server CPU per delivered message), where the run
    drove the relay baseline (the same medians as the relay section's table)."""
    out: dict[str, list[tuple[str, float]]] = {}
    for label, res in results.items():
        base = res.get("baseline") or {}
        pairs: list[tuple[str, dict[str, float], dict[str, float]]] = []
        for name, scenario, rows in (
            ("one-to-one\nopen-loop", "one_to_one", "at_75pct"),
            ("one-to-one\npipelined", "pipeline", "runs"),
        ):
            ours, relay = res.get(scenario), base.get(scenario)
            if ours and relay:
                pairs.append(
                    (
                        name,
                        _median(ours[rows], "server_cpu_us_per_unit"),
                        _median(relay[rows], "server_cpu_us_per_unit"),
                    )
                )
        relay_groups = base.get("group_fanout") or {}
        for size in sorted(res.get("group_fanout") or {}, key=int):
            relay_bursts = _bursts(relay_groups.get(size) or [])
            if relay_bursts:
                pairs.append(
                    (
                        f"group of\n{int(size):,}",
                        _median(_bursts(res["group_fanout"][size]), "server_cpu_us_per_unit"),
                        _median(relay_bursts, "server_cpu_us_per_unit"),
                    )
                )
        ratios = [
            (name, ours["median"] / floor["median"])
            for name, ours, floor in pairs
            if ours["runs"] and floor["runs"] and floor["median"] > 0
        ]
        if ratios:
            out[label] = ratios
    return out


def relay_ratio_plot(results: dict[str, dict[str, Any]], path: Path) -> bool:
    """Bars of sandcat / relay server CPU per delivered message, from zero, with the goal
    and parity as lines; False (no file) when no run drove the relay baseline."""
    ratios = relay_ratios(results)
    if not ratios:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios = list(dict.fromkeys(name for rows in ratios.values() for name, _ in rows))
    width = 0.8 / len(ratios)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    fig, ax = plt.subplots(figsize=(7, 4.8))
    for i, label in enumerate(results):
        if label not in ratios:
            continue
        values = dict(ratios[label])
        xs = [k + (i - (len(ratios) - 1) / 2) * width for k, name in enumerate(scenarios)]
        heights = [values.get(name, 0.0) for name in scenarios]
        bars = ax.bar(xs, heights, width, label=label, color=colours[i % len(colours)])
        ax.bar_label(bars, labels=[f"{h:.1f}×" if h else "" for h in heights], fontsize=8)
    _goal_line(ax, RELAY_GOAL, RELAY_GOAL, f"goal: ≤ {RELAY_GOAL:.1f}×", va="bottom")
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.text(0.01, 1.0, "the relay", fontsize=8, va="bottom", transform=ax.get_yaxis_transform())
    ax.set_xticks(range(len(scenarios)), scenarios, fontsize=8)
    ax.set_ylim(bottom=0)
    ax.set_ylabel("server CPU per delivered message, sandcat / relay")
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Cost against the bare relay (lower is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _kept_sections(existing: str) -> str:
    """The sections other benchmarks write (``KEPT_HEADINGS``), kept verbatim."""
    kept: list[str] = []
    for heading in KEPT_HEADINGS:
        if heading not in existing:
            continue
        lines = existing.split(heading, 1)[1].split("\n")
        body = [lines[0]]
        for line in lines[1:]:
            if line.startswith("## "):
                break
            body.append(line)
        kept.append(heading + "\n".join(body).rstrip() + "\n")
    return "\n".join(kept)


def write_doc(
    doc: Path, results: dict[str, dict[str, Any]], *, command: str, notes: list[str]
) -> None:
    """Regenerate docs/benchmarks.md from ``results``, keeping the other benchmarks' sections."""
    micro = _kept_sections(doc.read_text(encoding="utf-8")) if doc.exists() else ""
    first = next(iter(results.values()))
    meta = first["meta"]
    machine = meta["machine"]
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`sandcat-bench suite`); every number below is from the run",
        "described here. Re-run it to refresh this file and the plots in `docs/plots/`.",
        "",
        "To load a server of your own: `sandcat-bench --server-config bench.yml` writes the",
        "config a load run needs (limits raised, the friend policy off); start the server with",
        "`sandcat serve -c bench.yml 2> server.log`, then `sandcat-bench run --api",
        "http://127.0.0.1:50001 --register 200 --code-source log:server.log`. A run against a",
        "server with its default limits is refused (friend policy, message and login rates):",
        "`sandcat-bench` prints each refusal as it happens, with the config key to change.",
        "",
        "## The load run",
        "",
        f"- Command: `{command}`",
        f"- Date (UTC): {meta['started']}",
        f"- Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
        f"kernel {machine['kernel']}, open files hard limit {machine['open_files_hard_limit']}",
        f"- Python {machine['python']}; "
        + ", ".join(f"{k} {v}" for k, v in machine["versions"].items()),
        "- Runs: "
        + "; ".join(
            f"**{label}** = native extensions {_native_of(res)}{_inbox_of(res)}"
            for label, res in results.items()
        )
        + _relay_runs(results),
        "- Topology: embedded server(s) and the load generator on the same 2-core machine, over",
        "  loopback; they compete for the two cores (see the generator's own CPU in the JSON).",
        f"- Timing per probe: {meta['timing']}",
        *(
            [f"- The machine itself: {stalls.sentence(meta['stalls'])}."]
            if meta.get("stalls")
            else []
        ),
        "",
        "## Results",
        "",
        markdown(results),
        "Values with a range are the median (min–max) of the repeated runs. CPU-µs/unit is the",
        "server processes' user+system CPU (from `/proc`) per delivered message, delivery, pull",
        "or request over the measurement window.",
        "",
        "In the plots each build is one line (the median of its runs at each point) with its",
        "spread as a band (latency: p50 to p99; fan-out: the lowest to the highest repeat), the",
        "goals in grey, and a star at the highest rate sustained with p99 within `--slo-ms`.",
        "",
        "![one-to-one p50 and p99 latency against offered rate, embedded and distributed]"
        "(plots/latency-vs-rate.png)",
        "",
        "![group fan-out deliveries per server core-second against group size]"
        "(plots/fanout-vs-group-size.png)",
        "",
        *(
            [
                "![server CPU per delivered message, sandcat / relay, per scenario]"
                "(plots/relay-ratio.png)",
                "",
            ]
            if relay_ratios(results)
            else []
        ),
        *(
            [
                "![idle connections over time, and server RSS against connections]"
                "(plots/idle-connections.png)",
                "",
            ]
            if any(_idle_samples(res) for res in results.values())
            else []
        ),
        "## Against the goals",
        "",
        f"Goals: {GOALS}.",
        "",
        *[f"- {note}" for note in notes],
        "",
        "Analysis of the gaps: [`performance.md`](performance.md).",
        "",
        *relay_section(results),
    ]
    warnings = [w for res in results.values() for w in res.get("warnings", [])]
    if warnings:
        lines += ["## Generator warnings", "", *[f"- {w}" for w in sorted(set(warnings))], ""]
    if micro:
        lines += [micro]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text("\n".join(lines), encoding="utf-8")


RELAY_TEXT = """\
[`benchmarks/load/relay.py`](../benchmarks/load/relay.py) is a bare aiohttp WebSocket relay on
uvloop, one process, started by the suite on this machine like the sandcat server
(`python -m benchmarks.load.relay --api-port P --ws-port Q`). It speaks just enough of the
protocol for the same scenarios to drive it unchanged (login for any account, `POST /group`,
the WebSocket URL) and per frame it only decodes the bincode `Msg` with the generator's codec,
acks the sender (type 24, server id, send time, the sender's next `send_seq`) and forwards a
copy to the receiver's connection(s) with the receiver's next `seq` (a group copy is encoded
once and the `seq` patched per member). Nothing is stored or checked (no token, membership,
rate limit, slow-client queue, history or inbox): it is the cost floor of "decode, ack,
forward" on aiohttp, and the ratio says what sandcat pays above that floor.

`suite --baseline relay` (on in `make bench`) runs it right after the sandcat server's
runs, with the same generator settings: one-to-one at the rates the sandcat run probed (25,
50 and 75 % of sandcat's max), so the 75 % probes compare equal offered load, then the same
max search as sandcat's (its result is the relay's own ceiling with this generator on this
machine, the most any server could show here); the pipeline with the same number of
messages; group fan-out with the same bursts. In the pipeline (`--scenarios pipeline`,
`--pipeline-messages`) one sender writes its messages back to back to one online receiver,
unpaced and never waiting for an ack, and the run waits for every ack and delivery; the
server CPU is read from just before the first write to the last delivery, and the run
checks per-sender FIFO (acks and deliveries in send order, `send_seq` and the receiver's
`seq` strictly increasing), loss and duplicates. The relay's server CPU is read from
`/proc` for its PID exactly as for sandcat's, in clock ticks of 10 ms: a relay burst spends
few of them (at ≈ 12 µs a delivery, 20,000 deliveries are ≈ 24 ticks), so its fan-out
figures are coarser than sandcat's. Ratio = sandcat / relay server CPU per delivered
message (medians of the repeats); deliveries per server core-second are from the burst
runs."""


def _relay_runs(results: dict[str, dict[str, Any]]) -> str:
    labels = [f"**{label}**" for label, res in results.items() if res.get("baseline")]
    if not labels:
        return ""
    return (
        f"; in the same run{'s' if len(labels) > 1 else ''} {', '.join(labels)} also drove the"
        " relay baseline ([below](#the-relay-baseline)) with one-to-one, the pipeline and"
        " group fan-out"
    )


def relay_section(results: dict[str, dict[str, Any]]) -> list[str]:
    """The relay baseline, explained, and its ratios (when a run drove it)."""
    rows: list[str] = []
    for label, res in results.items():
        base = res.get("baseline") or {}
        one, relay_one = res.get("one_to_one"), base.get("one_to_one")
        if one and relay_one:
            ours = _median(one["at_75pct"], "server_cpu_us_per_unit")
            floor = _median(relay_one["at_75pct"], "server_cpu_us_per_unit")
            rate = _median(one["at_75pct"], "offered_per_s")["median"]
            rows.append(
                f"| {label} | one-to-one at {rate:,.0f} msgs/s offered | {_ms(ours)} | "
                f"{_ms(floor)} | **{_ratio(ours, floor)}** | – | – |"
            )
        pipe, relay_pipe = res.get("pipeline"), base.get("pipeline")
        if pipe and relay_pipe:
            ours = _median(pipe["runs"], "server_cpu_us_per_unit")
            floor = _median(relay_pipe["runs"], "server_cpu_us_per_unit")
            rows.append(
                f"| {label} | pipeline: 1 sender, {int(pipe['messages']):,} msgs to 1 online "
                f"receiver | {_ms(ours)} | {_ms(floor)} | **{_ratio(ours, floor)}** | – | – |"
            )
        relay_groups = base.get("group_fanout") or {}
        for size, group_rows in (res.get("group_fanout") or {}).items():
            relay_bursts = _bursts(relay_groups.get(size) or [])
            if not relay_bursts:
                continue
            bursts = _bursts(group_rows)
            ours = _median(bursts, "server_cpu_us_per_unit")
            floor = _median(relay_bursts, "server_cpu_us_per_unit")
            rows.append(
                f"| {label} | group of {int(size):,}, burst | {_ms(ours)} | {_ms(floor)} | "
                f"**{_ratio(ours, floor)}** | {_rate(_median(bursts, 'deliveries_per_core_s'))} | "
                f"{_rate(_median(relay_bursts, 'deliveries_per_core_s'))} |"
            )
    head = ["## The relay baseline", "", RELAY_TEXT, ""]
    if not rows:
        return [
            *head,
            "None of the runs above drove the relay baseline; `make bench` (or",
            "`suite --baseline relay`) adds its figures here.",
            "",
        ]
    return [
        *head,
        "| run | scenario | sandcat: server CPU-µs per delivered msg | relay: server CPU-µs per "
        "delivered msg | sandcat / relay | sandcat: deliveries per server core-s | relay: "
        "deliveries per server core-s |",
        "|---|---|---:|---:|---:|---:|---:|",
        *rows,
        "",
    ]


def goal_notes(results: dict[str, dict[str, Any]]) -> list[str]:
    """One line per goal per run: the measured figure, and whether it meets the goal."""
    notes: list[str] = []
    for label, res in results.items():
        one = res.get("one_to_one")
        if one:
            top = float(one["max_delivered_per_s"])
            p99 = _median(one["at_75pct"], "e2e_latency", "p99_ms")["median"]
            # Embedded: ≥ 10k delivered msgs/s sustained, p99 ≤ 50 ms at 75 % of it; the
            # distributed, durable topology: ≥ 3k/s, p99 ≤ 100 ms.
            rate, bound = ONE_TO_ONE_GOALS[_topology(label)]
            verdict = "meets" if top >= rate and p99 <= bound else "falls short of"
            relay_max = (res.get("baseline") or {}).get("one_to_one_max")
            ceiling = (
                f" The relay, searched the same way with the same generator, sustained "
                f"{float(relay_max['max_delivered_per_s']):,.0f}, with p99 "
                f"{_median(relay_max['at_75pct'], 'e2e_latency', 'p99_ms')['median']:,.1f} ms "
                "at 75 % of that."
                if relay_max
                else ""
            )
            notes.append(
                f"{label}: one-to-one max {top:,.0f} delivered msgs/s, p99 {p99:,.1f} ms at 75 % "
                f"of max: {verdict} the goal (≥ {rate:,}/s, p99 ≤ {bound} ms).{ceiling}"
            )
        notes += _relay_goal_notes(label, res)
        for size, rows in (res.get("group_fanout") or {}).items():
            bursts = _bursts(rows)
            # The distributed goal is a rate on the whole topology, not CPU efficiency.
            key, goal, unit, scope = (
                ("deliveries_per_s", DIST_FANOUT_GOAL, "deliveries/s", " for 1,000 members")
                if _topology(label) == "distributed"
                else ("deliveries_per_core_s", FANOUT_GOAL, "deliveries per server core-second", "")
            )
            figure = _median(bursts, key)
            if figure["runs"]:
                verdict = "meets" if figure["median"] >= goal else "falls short of"
                notes.append(
                    f"{label}: group of {int(size):,}: {figure['median']:,.0f} {unit}: "
                    f"{verdict} the goal (≥ {goal:,}{scope})."
                )
        idle = res.get("idle")
        if idle and idle.get("rss_per_conn_kb") is not None:
            kb = float(idle["rss_per_conn_kb"])
            n = int(idle["open_after_hold"])
            note = (
                f"{label}: {n:,} idle connections at {kb:,.1f} KiB each over "
                f"{idle['server_processes']} server process(es): "
                f"{'meets' if kb <= 8 else 'falls short of'} the goal (≤ 8 KiB each)"
            )
            if int(idle["wanted"]) >= 100_000:
                verdict = "meets" if n >= 100_000 else "falls short of"
                note += f"; {verdict} the goal of 100,000 held on this machine"
            notes.append(note + ".")
    return notes


RELAY_GOAL = 2.0


def _relay_goal_notes(label: str, res: dict[str, Any]) -> list[str]:
    """The one-to-one goal against the relay: at most twice its server CPU per delivered msg,
    pipelined (one sender) and open-loop (many senders), medians of the repeats."""
    base = res.get("baseline") or {}
    parts: list[tuple[str, float]] = []
    pipe, relay_pipe = res.get("pipeline"), base.get("pipeline")
    if pipe and relay_pipe:
        ours = _median(pipe["runs"], "server_cpu_us_per_unit")
        floor = _median(relay_pipe["runs"], "server_cpu_us_per_unit")
        if ours["runs"] and floor["runs"] and floor["median"] > 0:
            parts.append(
                (
                    f"pipelined (1 sender, {int(pipe['messages']):,} msgs, "
                    f"{int(ours['runs'])} runs)",
                    ours["median"] / floor["median"],
                )
            )
    one, relay_one = res.get("one_to_one"), base.get("one_to_one")
    if one and relay_one:
        ours = _median(one["at_75pct"], "server_cpu_us_per_unit")
        floor = _median(relay_one["at_75pct"], "server_cpu_us_per_unit")
        if ours["runs"] and floor["runs"] and floor["median"] > 0:
            parts.append(
                (
                    f"open-loop ({one['senders']:,} senders, {one['users']:,} users, at 75 % "
                    "of max)",
                    ours["median"] / floor["median"],
                )
            )
    if not parts:
        return []
    within = all(r <= RELAY_GOAL for _, r in parts)
    if len(parts) == 2:
        verdict = "meets" if within else "falls short of"
    else:  # one half of the goal was measured: no verdict on the whole
        verdict = "within" if within else "above"
        verdict += " the bound for this half of"
    return [
        f"{label}: one-to-one server CPU per delivered message against the relay's: "
        + "; ".join(f"{what} {ratio:,.1f}×" for what, ratio in parts)
        + f": {verdict} the goal (≤ {RELAY_GOAL:.1f}× both pipelined and open-loop; the "
        "goal's open-loop case is 50 senders and 200 users)."
    ]
