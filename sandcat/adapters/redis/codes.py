"""E-mail codes: ``register_code:{email}`` with its own TTL."""

from __future__ import annotations

from redis.asyncio import Redis

from sandcat.adapters.redis.client import redis_errors, text


def _key(email: str) -> str:
    return f"register_code:{email}"


class RedisCodeStore:
    """Implements ``CodeStore``: one key per e-mail, so each code has its own TTL."""

    def __init__(self, *, client: Redis) -> None:
        self._redis = client

    async def put_code(self, email: str, code: str, ttl_seconds: int) -> None:
        with redis_errors("put_code"):
            await self._redis.set(_key(email), code, ex=ttl_seconds)

    async def get_code(self, email: str) -> str | None:
        with redis_errors("get_code"):
            value = await self._redis.get(_key(email))
        return None if value is None else text(value)

    async def delete_code(self, email: str) -> None:
        with redis_errors("delete_code"):
            await self._redis.delete(_key(email))
