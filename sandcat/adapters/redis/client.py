"""The shared Redis client and the translation of driver errors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from sandcat.config import RedisConfig
from sandcat.errors import DbError
from sandcat.log import get_logger

log = get_logger(__name__)


def connect(*, config: RedisConfig, max_connections: int = 100) -> Redis:
    """A client for ``config`` with bytes replies, as every adapter here expects.

    At most ``max_connections`` connections; a command waits (up to 10 s) for a free one
    rather than failing when many run at once. A push listener opens one more of its own.
    Nothing is opened until the first command; ``await client.aclose()`` at shutdown.
    A command that meets a broken connection (Redis restarted: every pooled connection is
    dead) is tried again on a new one, twice at most, instead of failing its request.
    """
    pool = BlockingConnectionPool(
        host=config.host,
        port=config.port,
        db=config.db,
        max_connections=max_connections,
        timeout=10,
        socket_connect_timeout=5,
        retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 2),
        retry_on_error=[RedisConnectionError],
    )
    return Redis.from_pool(pool)


@contextmanager
def redis_errors(operation: str) -> Iterator[None]:
    """Turn a driver error into ``DbError`` (the detail goes to the log only)."""
    try:
        yield
    except RedisError as exc:
        log.warning("redis_error", operation=operation, error=repr(exc))
        raise DbError("the cache is unavailable") from exc


def text(value: bytes | str) -> str:
    """A reply element as ``str`` (replies are bytes)."""
    return value.decode() if isinstance(value, bytes) else value
