"""GitHub login's sign-ins in progress: ``oauth_state:{state}`` with its own TTL."""

from __future__ import annotations

from redis.asyncio import Redis

from sandcat.adapters.redis.client import redis_errors, text


def _key(state: str) -> str:
    return f"oauth_state:{state}"


class RedisOAuthStates:
    """Implements ``OAuthStates``: GETDEL takes a state once, whatever races it."""

    def __init__(self, *, client: Redis) -> None:
        self._redis = client

    async def put_state(self, state: str, value: str, ttl_seconds: int) -> None:
        with redis_errors("put_oauth_state"):
            await self._redis.set(_key(state), value, ex=ttl_seconds)

    async def take_state(self, state: str) -> str | None:
        with redis_errors("take_oauth_state"):
            value = await self._redis.getdel(_key(state))
        return None if value is None else text(value)
