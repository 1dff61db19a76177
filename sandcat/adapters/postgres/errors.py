"""Driver errors become ``DbError`` at the adapter boundary."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

import asyncpg

from sandcat.errors import DbError
from sandcat.log import get_logger

log = get_logger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


def pg_errors(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Log a PostgreSQL or connection failure of ``fn`` and raise ``DbError`` instead."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("postgres_error", operation=fn.__qualname__, error=repr(exc))
            raise DbError("the database is unavailable") from exc

    return wrapper
