"""The load generator against a distributed topology it starts itself.

``python -m benchmarks.load.distributed --out DIR [run options]`` provisions PostgreSQL,
Redis, Kafka, FerretDB and S3 locally (``scripts.provision``), starts the api, two
gateways and a msg-server (``scripts/topology.py``) with the benchmark config, runs
``python -m benchmarks.load run`` against the api's URL (users registered through the
public API with codes from the api's log; every role's PID watched for CPU; groups for
``--scenarios group`` made through the public API), and stops everything. Results land in
``DIR/distributed.json`` for ``report``, with the build (``meta.native``) and the inbox's
store (``meta.inbox``: FerretDB's handler, chosen by ``SANDCAT_MONGO_HANDLER``) that served it.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import tempfile
from pathlib import Path

from benchmarks.load import cli
from benchmarks.load.launch import CONFIG
from scripts import provision
from scripts import topology as topology_mod


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.load.distributed", description=__doc__
    )
    parser.add_argument("--out", required=True, help="results folder")
    parser.add_argument("--register", type=int, default=200, help="users to register")
    args, run_args = parser.parse_known_args(argv)
    run_dir = Path(tempfile.mkdtemp(prefix="sandcat-bench-dist-"))
    services = provision.start_services(None, run_dir)["services"]
    log = run_dir / "topology.log"
    try:
        env = topology_mod.service_overrides(topology_mod.read_env_file(run_dir / "services.env"))
        env["SANDCAT__SERVER__JWT_SECRET"] = secrets.token_urlsafe(48)
        env["SANDCAT__LOG__LEVEL"] = "info"  # the api logs registration codes at warn anyway
        with log.open("ab") as sink:
            topology = topology_mod.Topology(
                base_env=env,
                api_port=topology_mod.free_port(),
                ws_ports=[topology_mod.free_port(), topology_mod.free_port()],
                stderr=sink,
                config=str(CONFIG),
            )
            topology.migrate()
            topology.start()
            try:
                pids = [str(proc.pid) for proc in topology.procs.values()]
                code = cli.main(
                    [
                        "run",
                        "--api",
                        f"http://127.0.0.1:{topology.api_port}",
                        *[arg for pid in pids for arg in ("--pid", pid)],
                        "--register",
                        str(args.register),
                        "--code-source",
                        f"log:{log}",
                        "--label",
                        "distributed",
                        "--out",
                        args.out,
                        *run_args,
                    ]
                )
            finally:
                topology.stop()
    finally:
        provision.stop_services(run_dir)
    # A run by URL cannot tell which build and stores served it; this one started them.
    results = Path(args.out) / "distributed.json"
    if results.exists():
        data = json.loads(results.read_text(encoding="utf-8"))
        data["meta"]["native"] = "off" if os.environ.get("SANDCAT_NO_EXTENSIONS") else "on"
        data["meta"]["inbox"] = services["mongo"]["implementation"]
        results.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
