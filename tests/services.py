"""Real backing services for contract and distributed tests.

``make test`` starts them once (``scripts/services.py``) and exports ``SANDCAT_TEST_*``;
a bare ``pytest`` run starts them itself for the session. Never skipped: a service that
cannot start fails the run with the service's name and log.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
ENV_KEYS = (
    "SANDCAT_TEST_PG_DSN",
    "SANDCAT_TEST_REDIS_URL",
    "SANDCAT_TEST_KAFKA",
    "SANDCAT_TEST_MONGO_URL",
    "SANDCAT_TEST_S3_ENDPOINT",
    "SANDCAT_TEST_S3_ACCESS_KEY",
    "SANDCAT_TEST_S3_SECRET_KEY",
    "SANDCAT_TEST_S3_REGION",
)


@dataclass(frozen=True)
class Services:
    pg_dsn: str
    redis_url: str
    kafka: str
    mongo_url: str
    s3_endpoint: str
    s3_access_key: str
    s3_secret_key: str
    s3_region: str


def load_script(name: str) -> ModuleType:
    """``scripts/<name>.py`` as a module (the scripts are stdlib-only files, not a package)."""
    spec = importlib.util.spec_from_file_location(
        f"sandcat_{name}", ROOT / "scripts" / f"{name}.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


def _from_env(env: dict[str, str]) -> Services:
    return Services(*(env[key] for key in ENV_KEYS))


def provide() -> Iterator[Services]:
    """Yield the running services, starting (and afterwards stopping) them if needed."""
    if all(os.environ.get(key) for key in ENV_KEYS):
        yield _from_env(dict(os.environ))
        return
    provisioner = load_script("services")
    run_dir = tempfile.mkdtemp(prefix="sandcat-services-")
    provisioner.start_services(None, run_dir)
    try:
        env: dict[str, str] = {}
        for line in (Path(run_dir) / "services.env").read_text().splitlines():
            key, _, value = line.partition("=")
            env[key] = value
        yield _from_env(env)
    finally:
        provisioner.stop_services(run_dir)
