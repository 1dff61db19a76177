"""The rate-limit side of one login (``UserService.login``): its three window checks, and on
success the refund of the two failure counts, against the shared Redis limiter, timed per
login (wall µs), one login after another.

    .venv/bin/python -m benchmarks.ratelimit_login [--logins 3000]

Redis is the one of ``SANDCAT_TEST_REDIS_URL`` (``scripts/services.py``); its database is
flushed first. "one call each" is a check or refund per Redis call, "together" the checks
in one ``hit_many`` and the refunds in one ``refund_many``.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Awaitable, Callable

import uvloop
from redis.asyncio import Redis

from sandcat.adapters.embedded.ratelimit import InProcessRateLimiter
from sandcat.adapters.redis.ratelimit import RedisRateLimiter
from sandcat.ports import RateLimiter, WindowRule

# The login rules (sandcat/services/users.py), with limits nobody reaches here.
PER_IP = WindowRule("bench_login_ip", 10**9, 60, "local")
PER_ACCOUNT_IP = WindowRule("bench_login_failures_account_ip", 10**9, 60, "local")
PER_ACCOUNT = WindowRule("bench_login_failures_account", 10**9, 60, "local")

Login = Callable[[RateLimiter, int, bool], Awaitable[None]]


async def one_call_each(limiter: RateLimiter, n: int, success: bool) -> None:
    key, ip = f"account{n % 100}", "10.0.0.1"
    for rule, k in ((PER_IP, ip), (PER_ACCOUNT_IP, f"{key}\n{ip}"), (PER_ACCOUNT, key)):
        await limiter.hit(rule, k)
    if success:
        await limiter.refund(PER_ACCOUNT_IP, f"{key}\n{ip}")
        await limiter.refund(PER_ACCOUNT, key)


async def together(limiter: RateLimiter, n: int, success: bool) -> None:
    key, ip = f"account{n % 100}", "10.0.0.1"
    failures = [(PER_ACCOUNT_IP, f"{key}\n{ip}"), (PER_ACCOUNT, key)]
    await limiter.hit_many([(PER_IP, ip), *failures])
    if success:
        await limiter.refund_many(failures)


async def _timed(limiter: RateLimiter, login: Login, logins: int, success: bool) -> float:
    """Wall µs per login, after a warm-up."""
    for n in range(min(logins, 200)):
        await login(limiter, n, success)
    started = time.perf_counter()
    for n in range(logins):
        await login(limiter, n, success)
    return (time.perf_counter() - started) / logins * 1e6


async def _main(logins: int) -> None:
    client = Redis.from_url(os.environ["SANDCAT_TEST_REDIS_URL"])
    await client.flushdb()
    limiters: dict[str, RateLimiter] = {
        "redis": RedisRateLimiter(client=client, fallback=InProcessRateLimiter()),
        "memory": InProcessRateLimiter(),
    }
    patterns = {"one call each": one_call_each, "together": together}
    try:
        for name, limiter in limiters.items():
            for pattern, login in patterns.items():
                for success in (False, True):
                    micros = await _timed(limiter, login, logins, success)
                    outcome = "right password" if success else "wrong password"
                    print(f"{name:6} {pattern:13} {outcome:14} {micros:8.1f} µs/login")
    finally:
        await client.flushdb()
        await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=3000)
    args = parser.parse_args()
    uvloop.run(_main(args.logins))


if __name__ == "__main__":
    main()
