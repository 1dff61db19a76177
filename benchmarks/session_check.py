"""The store side of one token check (``UserService.session``): the two calls it made
before (``token_generation`` then ``DeviceStore.is_active``) against ``session_state``,
in CPU and wall time per check, on SQLite (embedded) and PostgreSQL (distributed).

    .venv/bin/python -m benchmarks.session_check [--checks 5000]

PostgreSQL is the one of ``SANDCAT_TEST_PG_DSN`` (``scripts/services.py``): a scratch
database is created there, migrated, and dropped afterwards; without it only SQLite runs.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
import uvloop

from sandcat.adapters.embedded.devices import SqliteDeviceStore
from sandcat.adapters.embedded.sqlite import SqliteDatabase, apply_migrations
from sandcat.adapters.embedded.users import SqliteUserStore
from sandcat.adapters.postgres.devices import PostgresDeviceStore
from sandcat.adapters.postgres.migrate import apply_pg_migrations
from sandcat.adapters.postgres.pool import open_pool
from sandcat.adapters.postgres.users import PostgresUserStore
from sandcat.domain import UserRecord
from sandcat.ids import nanoid
from sandcat.ports import Device, DeviceStore, UserStore

Check = Callable[[], Awaitable[object]]


async def _timed(check: Check, checks: int) -> tuple[float, float]:
    """(CPU µs, wall µs) per check, after a warm-up."""
    for _ in range(min(checks, 200)):
        await check()
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(checks):
        await check()
    return (
        (time.process_time() - cpu) / checks * 1e6,
        (time.perf_counter() - wall) / checks * 1e6,
    )


async def _setup(users: UserStore, devices: DeviceStore) -> None:
    user = UserRecord(id="ann", name="ann", account="ann", password="", salt="", avatar="a")
    await users.insert_user(user)
    await devices.add_device(Device("d1", "ann", "web", "", "", "", 1, 1), "j1", keep=10)


async def _compare(mode: str, before: Check, users: UserStore, checks: int) -> None:
    """``before`` is the two reads a check made; ``session_state`` the one it makes."""

    async def after() -> object:
        return await users.session_state("ann", "d1")

    assert await before() == await after() == (0, True)
    # Alternated twice, so a drift of the machine's load shows as a spread, not a winner.
    for name, check in (("before", before), ("after", after)) * 2:
        cpu, wall = await _timed(check, checks)
        print(f"{mode:10} {name:6}  CPU {cpu:7.1f} µs  wall {wall:7.1f} µs  per check")


async def _sqlite(checks: int) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "bench.db")
        apply_migrations(path)
        db = SqliteDatabase(path)
        await db.open()
        try:
            devices = SqliteDeviceStore(db)
            users = SqliteUserStore(db, devices)
            await _setup(users, devices)

            async def before() -> object:
                return (await users.token_generation("ann"), await devices.is_active("ann", "d1"))

            await _compare("sqlite", before, users, checks)
        finally:
            await db.close()


async def _postgres(dsn: str, checks: int) -> None:
    name = f"bench_session_{nanoid(8).lower().replace('-', 'x').replace('_', 'y')}"
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        scratch = dsn.rsplit("/", 1)[0] + "/" + name
        await apply_pg_migrations(scratch)
        pool = await open_pool(scratch)
        try:
            users = PostgresUserStore(pool=pool)
            await _setup(users, PostgresDeviceStore(pool=pool))

            async def before() -> object:
                generation = await users.token_generation("ann")
                # The device query the check ran next (the former
                # ``PostgresDeviceStore.is_active``).
                active = await pool.fetchval(
                    "SELECT 1 FROM devices WHERE id = $1 AND user_id = $2", "d1", "ann"
                )
                return (generation, bool(active))

            await _compare("postgresql", before, users, checks)
        finally:
            await pool.close()
    finally:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


async def main(checks: int) -> None:
    await _sqlite(checks)
    dsn = os.environ.get("SANDCAT_TEST_PG_DSN")
    if dsn:
        await _postgres(dsn, checks)
    else:
        print("postgresql: SANDCAT_TEST_PG_DSN is not set (scripts/services.py start)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=5000)
    uvloop.run(main(parser.parse_args().checks))
