"""A distributed Sandcat topology (api + two gateways + msg-server as real processes) on the
real backing services, shared by the tests that need one."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from scripts import topology as topology_mod
from tests.client import CodeBook
from tests.oauth_provider import GITHUB_ENV
from tests.process import FAST_ARGON2, OPEN_LIMITS, QUICK_WEBHOOKS
from tests.services import Services

ROOT = Path(__file__).resolve().parents[1]


class LogCodes(CodeBook):
    """Verification codes read from the api process's log file."""

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    async def wait(self, email: str, timeout: float = 10.0) -> str:
        async with asyncio.timeout(timeout):
            while True:
                for line in self.path.read_text(errors="replace").splitlines():
                    self.feed(line)
                if email in self.codes:
                    return self.codes.pop(email)
                await asyncio.sleep(0.05)


async def _create_database(dsn: str, name: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


class Cluster:
    def __init__(self, topology: Any, log: Path) -> None:
        self.topology = topology
        self.log = log

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.topology.api_port}"


def service_env(
    real_services: Services, overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The ``SANDCAT__*`` settings that point a distributed process at ``real_services``,
    with ``overrides`` of their ``SANDCAT_TEST_*`` addresses (a service of a test's own)."""
    return topology_mod.service_overrides(
        {
            "SANDCAT_TEST_PG_DSN": real_services.pg_dsn,
            "SANDCAT_TEST_REDIS_URL": real_services.redis_url,
            "SANDCAT_TEST_KAFKA": real_services.kafka,
            "SANDCAT_TEST_MONGO_URL": real_services.mongo_url,
            "SANDCAT_TEST_S3_ENDPOINT": real_services.s3_endpoint,
            "SANDCAT_TEST_S3_ACCESS_KEY": real_services.s3_access_key,
            "SANDCAT_TEST_S3_SECRET_KEY": real_services.s3_secret_key,
            "SANDCAT_TEST_S3_REGION": real_services.s3_region,
            **(overrides or {}),
        }
    )


def start_cluster(
    real_services: Services,
    tmp_path_factory: pytest.TempPathFactory,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[Cluster]:
    """``extra_env``: more ``SANDCAT__*`` settings for every process of this topology."""
    run = secrets.token_hex(4)
    env = service_env(real_services)
    database = f"sandcat_e2e_{run}"
    asyncio.run(_create_database(real_services.pg_dsn, database))
    env.update(
        {
            "SANDCAT__DB__POSTGRES__DATABASE": database,
            "SANDCAT__DB__MONGODB__DATABASE": database,
            "SANDCAT__DB__MONGODB__USE_SHARDING": "true",
            "SANDCAT__KAFKA__TOPIC": f"chat-{run}",
            "SANDCAT__KAFKA__GROUP": f"group-{run}",
            "SANDCAT__KAFKA__PARTITIONS": "4",
            "SANDCAT__REDIS__DB": "3",
            "SANDCAT__OSS__BUCKET": f"files-{run}",
            "SANDCAT__OSS__AVATAR_BUCKET": f"avatars-{run}",
            "SANDCAT__SERVER__JWT_SECRET": secrets.token_urlsafe(40),
            **FAST_ARGON2,
            **OPEN_LIMITS,
            **QUICK_WEBHOOKS,
            **GITHUB_ENV,
            **(extra_env or {}),
        }
    )
    log = tmp_path_factory.mktemp("cluster") / "cluster.log"
    with log.open("ab") as sink:
        topology = topology_mod.Topology(
            base_env=env,
            api_port=topology_mod.free_port(),
            ws_ports=[topology_mod.free_port(), topology_mod.free_port()],
            stderr=sink,
        )
        topology.migrate()
        try:
            topology.start()
            yield Cluster(topology, log)
        finally:
            topology.stop()
    # Flush Redis DB 3 so a later topology does not see this one's gateways.
    import redis as redis_sync

    client = redis_sync.Redis.from_url(real_services.redis_url, db=3)
    client.flushdb()
    client.close()
