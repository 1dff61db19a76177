"""Monthly partitions of the history table ``messages`` (docs/distributed.md).

``messages_YYYYMM`` holds ``send_time`` (ms) in that UTC month; ``messages_default`` catches
everything else, so no insert ever fails. ``ensure_partitions`` creates the current and the
next months ahead of time, moving rows that already landed in the default partition;
``archive_partitions`` detaches the months past retention and drops them or moves them to the
``archive`` schema. Both take ``now_ms`` so that tests can run them at any date, and both
serialise on an advisory lock, so several processes may schedule them.
"""

from __future__ import annotations

import datetime as dt
import re

import asyncpg

from sandcat.log import get_logger

log = get_logger(__name__)

ARCHIVE_MODES = ("drop", "move")
ARCHIVE_SCHEMA = "archive"
_LOCK_KEY = 0x5A_4E_DC_A8
_PARTITION_NAME = re.compile(r"^messages_(\d{4})(\d{2})$")


def _month_index(now_ms: int) -> int:
    """Months since year 0 of the UTC month holding ``now_ms``."""
    day = dt.datetime.fromtimestamp(now_ms / 1000, tz=dt.UTC)
    return day.year * 12 + day.month - 1


def _month_start_ms(index: int) -> int:
    year, month0 = divmod(index, 12)
    return int(dt.datetime(year, month0 + 1, 1, tzinfo=dt.UTC).timestamp()) * 1000


def _partition_name(index: int) -> str:
    year, month0 = divmod(index, 12)
    return f"messages_{year:04d}{month0 + 1:02d}"


async def _attached(conn: asyncpg.Connection) -> dict[str, int]:
    """The attached monthly partitions, by name, with their month index."""
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'messages'::regclass"
    )
    found: dict[str, int] = {}
    for (name,) in rows:
        match = _PARTITION_NAME.match(name)
        if match:
            found[name] = int(match[1]) * 12 + int(match[2]) - 1
    return found


async def ensure_partitions(pool: asyncpg.Pool, now_ms: int, months_ahead: int) -> list[str]:
    """Create the partitions of the current month and the ``months_ahead`` next ones that do
    not exist yet; returns the names created."""
    current = _month_index(now_ms)
    created: list[str] = []
    async with pool.acquire() as conn:
        for index in range(current, current + months_ahead + 1):
            name = _partition_name(index)
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
                if name in await _attached(conn):
                    continue
                low, high = _month_start_ms(index), _month_start_ms(index + 1)
                # Inserts into the default partition wait until the new month is attached, so
                # none can slip in between the move and the attach.
                await conn.execute("LOCK TABLE messages_default IN ACCESS EXCLUSIVE MODE")
                await conn.execute(
                    f"CREATE TABLE {name} (LIKE messages INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
                )
                moved = await conn.execute(
                    f"WITH moved AS (DELETE FROM messages_default WHERE send_time >= $1 "
                    f"AND send_time < $2 RETURNING *) INSERT INTO {name} SELECT * FROM moved",
                    low,
                    high,
                )
                await conn.execute(
                    f"ALTER TABLE messages ATTACH PARTITION {name} "
                    f"FOR VALUES FROM ({low}) TO ({high})"
                )
            log.info("history_partition_created", partition=name, moved=moved.rsplit(" ", 1)[-1])
            created.append(name)
    return created


async def archive_partitions(
    pool: asyncpg.Pool, now_ms: int, retention_months: int, mode: str
) -> list[str]:
    """Detach the monthly partitions that end before the start of the month
    ``retention_months`` before the current one, then drop them (``drop``) or move them to
    the ``archive`` schema (``move``); returns the names handled."""
    if mode not in ARCHIVE_MODES:
        raise ValueError(f"history archive mode must be drop or move, not {mode!r}")
    if retention_months < 1:
        raise ValueError("history retention must be at least one month")
    oldest_kept = _month_index(now_ms) - retention_months
    handled: list[str] = []
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
        expired = sorted(name for name, i in (await _attached(conn)).items() if i < oldest_kept)
        if expired and mode == "move":
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {ARCHIVE_SCHEMA}")
        for name in expired:
            await conn.execute(f"ALTER TABLE messages DETACH PARTITION {name}")
            if mode == "drop":
                await conn.execute(f"DROP TABLE {name}")
            else:
                await conn.execute(f"ALTER TABLE {name} SET SCHEMA {ARCHIVE_SCHEMA}")
            log.info("history_partition_archived", partition=name, mode=mode)
            handled.append(name)
    return handled
