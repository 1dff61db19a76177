"""Durable segment marks behind the Redis counters: the ``sequence`` table."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

from sandcat.errors import DbError
from sandcat.log import get_logger

log = get_logger(__name__)

_COLUMNS = {"rec": "rec_max_seq", "send": "send_max_seq"}


@contextmanager
def _pg_errors(operation: str) -> Iterator[None]:
    try:
        yield
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
        log.warning("postgres_error", operation=operation, error=repr(exc))
        raise DbError("the database is unavailable") from exc


class PostgresSegmentStore:
    """Implements ``SegmentStore``: one UPSERT per raise, committed before it returns."""

    def __init__(self, *, pool: asyncpg.Pool) -> None:
        self._pool = pool

    async def raise_mark(self, user_id: str, kind: str, step: int) -> int:
        column = _COLUMNS.get(kind)
        if column is None:
            raise ValueError(f"unknown segment kind {kind!r}")
        with _pg_errors("raise_mark"):
            mark: int = await self._pool.fetchval(
                f"INSERT INTO sequence (user_id, {column}) VALUES ($1, $2) "
                f"ON CONFLICT (user_id) DO UPDATE SET {column} = sequence.{column} + $2 "
                f"RETURNING {column}",
                user_id,
                step,
            )
        return mark

    async def marks(self, user_id: str) -> tuple[int, int]:
        with _pg_errors("marks"):
            row = await self._pool.fetchrow(
                "SELECT rec_max_seq, send_max_seq FROM sequence WHERE user_id = $1", user_id
            )
        return (0, 0) if row is None else (int(row[0]), int(row[1]))
