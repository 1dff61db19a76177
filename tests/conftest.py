"""Shared fixtures: a real server on loopback sockets and a protocol-only client."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from sandcat.config import Config, load_config
from sandcat.ids import nanoid
from sandcat.log import TextFormatter
from sandcat.server import Running, running
from tests.client import Api, CodeBook
from tests.cluster import Cluster, LogCodes, start_cluster
from tests.process import QUICK_WEBHOOKS
from tests.services import Services, provide

#: Cheap argon2 and generous limits: each limit has its own test that lowers it.
TEST_OVERRIDES: dict[str, Any] = {
    "auth.argon2_time_cost": 1,
    "auth.argon2_memory_cost": 1024,
    "auth.argon2_parallelism": 1,
    "server.port": 0,
    "websocket.port": 0,
    "server.jwt_secret": "test-secret-test-secret-test-secret!",
    "limits.messages_per_second": 100000,
    "limits.messages_burst": 100000,
    "limits.login_per_minute_per_ip": 100000,
    "limits.code_sends_per_minute_per_ip": 100000,
    "websocket.ping_interval_seconds": 30,
    **{
        key.removeprefix("SANDCAT__").replace("__", ".").lower(): value
        for key, value in QUICK_WEBHOOKS.items()
    },
}


def make_config(data_dir: Path, **overrides: Any) -> Config:
    merged = {**TEST_OVERRIDES, "embedded.data_dir": str(data_dir), **overrides}
    return load_config(None, environ={}, overrides=merged).config


class _CodeHandler(logging.Handler):
    def __init__(self, book: CodeBook) -> None:
        super().__init__()
        self.book = book
        self.setFormatter(TextFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.book.feed(self.format(record))


@pytest.fixture
def codes() -> Any:
    book = CodeBook()
    handler = _CodeHandler(book)
    logger = logging.getLogger("sandcat.mailer")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield book
    logger.removeHandler(handler)


StartServer = Callable[..., AbstractAsyncContextManager[Running]]


@pytest.fixture
def start_server(tmp_path: Path) -> StartServer:
    """Start a server with config overrides (dotted keys), e.g. ``limits.text_bytes=10``."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Running]:
        dotted = {key.replace("__", "."): value for key, value in overrides.items()}
        config = make_config(tmp_path / "data", **dotted)
        async with running(config) as server:
            yield server

    return start


@pytest.fixture
async def server(start_server: StartServer) -> AsyncIterator[Running]:
    async with start_server() as srv:
        yield srv


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


#: ``distributed`` runs the protocol-only e2e tests against the distributed topology.
E2E_TARGET = os.environ.get("SANDCAT_E2E_TARGET", "embedded")


@pytest.fixture
def api(request: pytest.FixtureRequest, session: aiohttp.ClientSession, codes: CodeBook) -> Api:
    """A protocol-only client of a fresh embedded server, or (``SANDCAT_E2E_TARGET=
    distributed``) of the shared distributed topology, with e-mails unique to the test."""
    if E2E_TARGET == "distributed":
        cluster: Cluster = request.getfixturevalue("cluster")
        return Api(session, cluster.api_base, LogCodes(cluster.log), tag=nanoid(8).lower())
    server: Running = request.getfixturevalue("server")
    return Api(session, f"http://127.0.0.1:{server.api_port}", codes)


@pytest.fixture(scope="session")
def cluster(real_services: Services, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """api + two gateways + msg-server as processes on the real services (one per session)."""
    yield from start_cluster(real_services, tmp_path_factory)


@pytest.fixture(autouse=True)
def _restore_logging() -> Any:
    """CLI tests configure logging; put the ``sandcat`` logger back afterwards."""
    logger = logging.getLogger("sandcat")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.fixture(scope="session")
def real_services() -> Any:
    """PostgreSQL, Redis, Kafka, a MongoDB-wire server and S3, once per test session."""
    yield from provide()
