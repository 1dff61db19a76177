"""Real backing services for contract and distributed tests.

``make test`` starts them once (``scripts/services.py``, the ``scripts.provision`` package)
and exports ``SANDCAT_TEST_*``; a bare ``pytest`` run starts them itself for the session.
Never skipped: a service that cannot start fails the run with the service's name and log.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from scripts import provision

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


def _from_env(env: dict[str, str]) -> Services:
    return Services(*(env[key] for key in ENV_KEYS))


def provide() -> Iterator[Services]:
    """Yield the running services, starting (and afterwards stopping) them if needed."""
    if all(os.environ.get(key) for key in ENV_KEYS):
        yield _from_env(dict(os.environ))
        return
    run_dir = tempfile.mkdtemp(prefix="sandcat-services-")
    provision.start_services(None, run_dir)
    try:
        env: dict[str, str] = {}
        for line in (Path(run_dir) / "services.env").read_text().splitlines():
            key, _, value = line.partition("=")
            env[key] = value
        yield _from_env(env)
    finally:
        provision.stop_services(run_dir)
