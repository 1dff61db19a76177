"""E-mail codes: ``register_code:{email}`` with its own TTL."""

from __future__ import annotations

from redis.asyncio import Redis

from sandcat.adapters.redis.client import redis_errors, text


def _key(email: str) -> str:
    return f"register_code:{email}"


def _failures_key(email: str) -> str:
    return f"register_code_failures:{email}"


#: How long a failure count outlives its code at most (a code lives minutes, not hours).
CODE_FAILURES_TTL_SECONDS = 3600


class RedisCodeStore:
    """Implements ``CodeStore``: one key per e-mail, so each code has its own TTL."""

    def __init__(self, *, client: Redis) -> None:
        self._redis = client

    async def put_code(self, email: str, code: str, ttl_seconds: int) -> None:
        with redis_errors("put_code"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(_key(email), code, ex=ttl_seconds)
                pipe.delete(_failures_key(email))
                await pipe.execute()

    async def get_code(self, email: str) -> str | None:
        with redis_errors("get_code"):
            value = await self._redis.get(_key(email))
        return None if value is None else text(value)

    async def delete_code(self, email: str) -> None:
        with redis_errors("delete_code"):
            await self._redis.delete(_key(email), _failures_key(email))

    async def record_failure(self, email: str, max_attempts: int) -> None:
        with redis_errors("record_failure"):
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(_failures_key(email))
                pipe.expire(_failures_key(email), CODE_FAILURES_TTL_SECONDS)
                failures, _ = await pipe.execute()
            if int(failures) >= max_attempts:
                await self._redis.delete(_key(email), _failures_key(email))
