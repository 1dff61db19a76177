"""Driver errors become ``DbError`` at the adapter boundary."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from pymongo.errors import PyMongoError

from sandcat.errors import DbError
from sandcat.log import get_logger

log = get_logger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


def mongo_errors(fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """Log a MongoDB or connection failure of ``fn`` and raise ``DbError`` instead."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except PyMongoError as exc:
            log.warning("mongo_error", operation=fn.__qualname__, error=repr(exc))
            raise DbError("the inbox database is unavailable") from exc

    return wrapper
