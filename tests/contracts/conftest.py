"""Contract-suite fixtures: fresh embedded and real databases, one per test.

Isolation is by database name: PostgreSQL databases are copied from one migrated template
per session; MongoDB databases get a random name and are dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from miniopy_async.api import Minio
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.monitoring import CommandListener
from redis.asyncio import Redis

from sandcat.adapters.embedded.sqlite import SqliteDatabase, apply_migrations
from sandcat.adapters.postgres.migrate import apply_pg_migrations
from sandcat.config import OssConfig
from sandcat.ids import nanoid
from sandcat.migrations import MIGRATIONS_DIR
from tests.services import Services

OpenSqlite = Callable[[], AbstractAsyncContextManager[SqliteDatabase]]
OpenPg = Callable[[], AbstractAsyncContextManager[asyncpg.Pool]]
OpenMongo = Callable[..., AbstractAsyncContextManager[AsyncDatabase[dict[str, Any]]]]
OpenPgBefore = Callable[[str], AbstractAsyncContextManager[tuple[str, asyncpg.Connection]]]


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def _db_name(prefix: str) -> str:
    return f"{prefix}_{nanoid(12).lower().replace('-', 'x').replace('_', 'y')}"


async def _admin(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


def _run(coro_fn: Callable[[], Any]) -> Any:
    """Run a coroutine function on a private loop in another thread (session set-up)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro_fn()).result()


@pytest.fixture(scope="session")
def pg_template(real_services: Services) -> Iterator[str]:
    """A database with every PostgreSQL migration applied, copied by each test."""
    name = f"sandcat_contracts_tpl_{os.getpid()}"
    admin = real_services.pg_dsn
    _run(
        lambda: _admin(
            admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", f"CREATE DATABASE {name}"
        )
    )
    _run(lambda: apply_pg_migrations(with_database(admin, name)))
    yield name
    _run(lambda: _admin(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


@pytest.fixture
def open_pg(real_services: Services, pg_template: str) -> OpenPg:
    """Open a pool on a fresh, migrated database (dropped on exit)."""

    @asynccontextmanager
    async def open_() -> AsyncIterator[asyncpg.Pool]:
        name = _db_name("t")
        admin = real_services.pg_dsn
        await _admin(admin, f"CREATE DATABASE {name} TEMPLATE {pg_template}")
        try:
            pool = await asyncpg.create_pool(with_database(admin, name), min_size=1, max_size=4)
            try:
                yield pool
            finally:
                await pool.close()
        finally:
            await _admin(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    return open_


@pytest.fixture
def open_pg_before(real_services: Services, tmp_path: Path) -> OpenPgBefore:
    """Open a connection on a fresh database migrated up to the PostgreSQL migration whose
    name starts with ``first`` (e.g. ``"0009"``), that one left out; yields the database's
    DSN, for ``apply_pg_migrations`` to upgrade it, and the connection (dropped on exit)."""

    @asynccontextmanager
    async def open_(first: str) -> AsyncIterator[tuple[str, asyncpg.Connection]]:
        before = tmp_path / f"before_{first}"
        before.mkdir()
        for script in sorted((MIGRATIONS_DIR / "postgres").glob("*.sql")):
            if script.name < first:
                shutil.copy(script, before / script.name)
        name = _db_name("t_upgrade")
        admin = real_services.pg_dsn
        await _admin(admin, f"CREATE DATABASE {name}")
        try:
            dsn = with_database(admin, name)
            await apply_pg_migrations(dsn, before)
            conn = await asyncpg.connect(dsn)
            try:
                yield dsn, conn
            finally:
                await conn.close()
        finally:
            await _admin(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    return open_


@pytest.fixture
def open_sqlite(tmp_path: Path) -> OpenSqlite:
    """Open a fresh, migrated embedded database."""

    @asynccontextmanager
    async def open_() -> AsyncIterator[SqliteDatabase]:
        path = str(tmp_path / f"{nanoid(8)}.db")
        apply_migrations(path)
        db = SqliteDatabase(path)
        await db.open()
        try:
            yield db
        finally:
            await db.close()

    return open_


@pytest.fixture
def open_mongo(real_services: Services) -> OpenMongo:
    """Open a fresh database on the MongoDB-wire server (dropped on exit); keyword
    ``listeners`` attaches command listeners to the client."""

    @asynccontextmanager
    async def open_(
        listeners: Sequence[CommandListener] = (),
    ) -> AsyncIterator[AsyncDatabase[dict[str, Any]]]:
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(
            real_services.mongo_url, event_listeners=list(listeners)
        )
        name = _db_name("t")
        try:
            yield client[name]
        finally:
            await client.drop_database(name)
            await client.close()

    return open_


@pytest.fixture
async def sqlite_db(open_sqlite: OpenSqlite) -> AsyncIterator[SqliteDatabase]:
    """A fresh, migrated embedded database."""
    async with open_sqlite() as db:
        yield db


@pytest.fixture
async def pg_pool(open_pg: OpenPg) -> AsyncIterator[asyncpg.Pool]:
    """A pool on a fresh, migrated PostgreSQL database."""
    async with open_pg() as pool:
        yield pool


@pytest.fixture
async def redis_client(real_services: Services) -> AsyncIterator[Redis]:
    """A client (bytes replies) on an emptied Redis database."""
    client = Redis.from_url(real_services.redis_url, decode_responses=False)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
async def oss_config(real_services: Services) -> AsyncIterator[OssConfig]:
    """The ``oss`` section pointing at the test S3 server, with buckets of this test only
    (deleted afterwards with whatever the test left in them)."""
    config = OssConfig(
        endpoint=real_services.s3_endpoint,
        access_key=real_services.s3_access_key,
        secret_key=real_services.s3_secret_key,
        region=real_services.s3_region,
        bucket=f"files-{uuid.uuid4().hex[:16]}",
        avatar_bucket=f"avatars-{uuid.uuid4().hex[:16]}",
    )
    yield config
    client = Minio(
        urlsplit(config.endpoint).netloc,
        access_key=config.access_key,
        secret_key=config.secret_key,
        secure=False,
        region=config.region,
    )
    try:
        for bucket in (config.bucket, config.avatar_bucket):
            if not await client.bucket_exists(bucket):
                continue
            async for obj in client.list_objects(bucket, recursive=True):
                if obj.object_name:
                    await client.remove_object(bucket, obj.object_name)
            await client.remove_bucket(bucket)
    finally:
        await client.close_session()  # type: ignore[no-untyped-call]
