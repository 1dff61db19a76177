"""``RateLimiter``: this process's memory (embedded) and Redis (distributed) count alike;
Redis's counts are shared by every limiter on it, and its outage follows each rule's
``on_outage``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from sandcat.adapters.embedded.ratelimit import InProcessRateLimiter
from sandcat.adapters.redis.client import connect
from sandcat.adapters.redis.ratelimit import PAUSE_SECONDS, RedisRateLimiter
from sandcat.config import RedisConfig
from sandcat.errors import DbError
from sandcat.metrics import COUNTS
from sandcat.ports import BucketRule, RateLimiter, WindowRule
from tests.client import until
from tests.clock import FakeClock
from tests.services import Services

LOGINS = WindowRule("test_logins", 3, 60, "local")
SHORT = WindowRule("test_short", 2, 1, "local")
BUCKET = BucketRule("test_bucket", 20.0, 3, "local")
_FALLBACK_RULES = ("test_logins", "test_bucket", "test_short", "test_codes")


@pytest.fixture(params=["memory", "redis"])
def limiter(request: pytest.FixtureRequest) -> RateLimiter:
    if request.param == "memory":
        return InProcessRateLimiter()
    client: Redis = request.getfixturevalue("redis_client")
    return RedisRateLimiter(client=client, fallback=InProcessRateLimiter())


async def _hits(limiter: RateLimiter, rule: WindowRule, key: str, n: int) -> list[int]:
    return [await limiter.hit(rule, key) for _ in range(n)]


async def test_a_window_counts_up_to_its_limit_per_rule_and_key(limiter: RateLimiter) -> None:
    assert await _hits(limiter, LOGINS, "1.2.3.4", 3) == [0, 0, 0]
    refused = await limiter.hit(LOGINS, "1.2.3.4")
    assert 1 <= refused <= 60  # Retry-After: until the oldest event leaves the window
    assert await limiter.hit(LOGINS, "5.6.7.8") == 0  # another key
    other = WindowRule("test_other", 3, 60, "local")
    assert await limiter.hit(other, "1.2.3.4") == 0  # another rule, same key


async def test_a_refund_gives_one_event_back(limiter: RateLimiter) -> None:
    assert await _hits(limiter, LOGINS, "acct", 3) == [0, 0, 0]
    await limiter.refund(LOGINS, "acct")
    assert await limiter.hit(LOGINS, "acct") == 0
    assert await limiter.hit(LOGINS, "acct") > 0
    await limiter.refund(LOGINS, "nobody")  # nothing to take back: harmless


async def test_a_refused_event_is_not_counted_and_the_window_slides(
    limiter: RateLimiter,
) -> None:
    assert await _hits(limiter, SHORT, "k", 2) == [0, 0]
    assert await limiter.hit(SHORT, "k") == 1
    # Refusals count nothing: the polls below are refused hits until the two events are a
    # second old, and if they counted they would keep the window full and never pass. The
    # two events left one after the other (they were made a few ms apart), so the window
    # has room for one pass when the first leaves and another when the second does.
    await until(lambda: _passes(limiter, SHORT, "k"), 5, "the first event left the window")
    await until(lambda: _passes(limiter, SHORT, "k"), 5, "the second event left the window")
    assert await limiter.hit(SHORT, "k") > 0  # those two passes fill it again


async def _passes(limiter: RateLimiter, rule: WindowRule, key: str) -> bool:
    return await limiter.hit(rule, key) == 0


async def test_a_limit_of_zero_or_a_rate_of_zero_is_no_limit(limiter: RateLimiter) -> None:
    off = WindowRule("test_off", 0, 60, "local")
    assert set(await _hits(limiter, off, "k", 50)) == {0}
    free = BucketRule("test_free", 0.0, 1, "local")
    assert all([await limiter.take(free, "bot") for _ in range(50)])


async def test_a_bucket_gives_its_burst_then_refills_at_its_rate(limiter: RateLimiter) -> None:
    assert [await limiter.take(BUCKET, "bot") for _ in range(4)] == [True, True, True, False]
    assert await limiter.take(BUCKET, "other bot")
    await until(lambda: limiter.take(BUCKET, "bot"), 5, "a token came back")
    # Never more than the burst plus what the rate refilled meanwhile.
    started = time.monotonic()
    taken = [await limiter.take(BUCKET, "third bot") for _ in range(100)]
    assert sum(taken) <= 3 + 20 * (time.monotonic() - started) + 1


async def test_hit_many_counts_every_check_of_a_request_or_none(limiter: RateLimiter) -> None:
    per_ip = WindowRule("test_many_ip", 2, 60, "local")
    login = [(per_ip, "1.2.3.4"), (LOGINS, "acct")]
    assert await limiter.hit_many(login) == [0, 0]
    assert await limiter.hit_many(login) == [0, 0]
    ip_refused, account_ok = await limiter.hit_many(login)
    assert 1 <= ip_refused <= 60
    assert account_ok == 0  # within its own limit, yet not counted: the request was refused
    assert await limiter.hit(LOGINS, "acct") == 0  # its third event
    assert await limiter.hit(LOGINS, "acct") > 0
    # Every check gets its verdict, even after an earlier one was refused.
    both = await limiter.hit_many([(per_ip, "1.2.3.4"), (LOGINS, "acct")])
    assert all(both)
    # A rule without a limit passes and counts nothing; an empty request is no call.
    off = WindowRule("test_off", 0, 60, "local")
    assert await limiter.hit_many([(off, "k"), (per_ip, "other")]) == [0, 0]
    assert await limiter.hit_many([]) == []


async def test_hit_many_with_one_key_twice_counts_both_or_neither(limiter: RateLimiter) -> None:
    rule = WindowRule("test_twice", 3, 60, "local")
    assert await limiter.hit_many([(rule, "k"), (rule, "k")]) == [0, 0]
    first, second = await limiter.hit_many([(rule, "k"), (rule, "k")])
    assert first == 0 and second > 0  # the third event fits, the fourth does not
    assert await limiter.hit(rule, "k") == 0  # so neither was counted
    assert await limiter.hit(rule, "k") > 0


async def test_refund_many_gives_one_event_back_per_check(limiter: RateLimiter) -> None:
    other = WindowRule("test_refund_other", 1, 60, "local")
    checks = [(LOGINS, "acct"), (other, "acct")]
    assert await limiter.hit_many(checks) == [0, 0]
    assert await limiter.hit(other, "acct") > 0
    await limiter.refund_many(checks)
    assert await limiter.hit_many(checks) == [0, 0]
    await limiter.refund_many([(other, "nobody")])  # nothing to take back: harmless


async def test_hit_many_is_one_redis_command(redis_client: Redis) -> None:
    limiter = RedisRateLimiter(client=redis_client, fallback=InProcessRateLimiter())
    checks = [(LOGINS, "a"), (SHORT, "b"), (WindowRule("test_third", 5, 60, "local"), "c")]
    assert await limiter.hit_many(checks) == [0, 0, 0]  # the script is loaded now

    async def evalsha_calls() -> int:
        stats = await redis_client.info("commandstats")
        return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))

    before = await evalsha_calls()
    assert await limiter.hit_many(checks) == [0, 0, 0]
    assert await evalsha_calls() == before + 1


@pytest.fixture
async def two_redis(real_services: Services) -> AsyncIterator[tuple[Redis, Redis]]:
    """Two clients (two processes' pools) on the emptied test database."""
    first = Redis.from_url(real_services.redis_url)
    second = Redis.from_url(real_services.redis_url)
    await first.flushdb()
    try:
        yield first, second
    finally:
        await first.aclose()
        await second.aclose()


async def test_two_limiters_on_one_redis_share_every_budget(
    two_redis: tuple[Redis, Redis],
) -> None:
    a, b = (RedisRateLimiter(client=c, fallback=InProcessRateLimiter()) for c in two_redis)
    assert await a.hit(LOGINS, "acct") == 0
    assert await b.hit(LOGINS, "acct") == 0
    assert await a.hit(LOGINS, "acct") == 0
    assert await b.hit(LOGINS, "acct") > 0
    await a.refund(LOGINS, "acct")
    assert await b.hit(LOGINS, "acct") == 0
    assert [await a.take(BUCKET, "bot"), await b.take(BUCKET, "bot")] == [True, True]
    assert [await a.take(BUCKET, "bot"), await b.take(BUCKET, "bot")] == [True, False]


async def test_concurrent_hits_from_two_limiters_never_exceed_the_limit(
    two_redis: tuple[Redis, Redis],
) -> None:
    a, b = (RedisRateLimiter(client=c, fallback=InProcessRateLimiter()) for c in two_redis)
    rule = WindowRule("test_race", 10, 60, "local")
    results = await asyncio.gather(*(x.hit(rule, "k") for x in (a, b) for _ in range(40)))
    assert results.count(0) == 10
    # Requests of two checks each: the tighter budget lets exactly its limit through, and
    # the refused requests left nothing in the looser one.
    tight, loose = (
        WindowRule("test_race_tight", 7, 60, "local"),
        WindowRule("test_race_loose", 30, 60, "local"),
    )
    both = [(tight, "k"), (loose, "k")]
    verdicts = await asyncio.gather(*(x.hit_many(both) for x in (a, b) for _ in range(20)))
    assert verdicts.count([0, 0]) == 7
    counts = [await two_redis[0].zcard(f"ratelimit:window:{r.name}:k") for r in (tight, loose)]
    assert counts == [7, 7]
    bucket = BucketRule("test_race_bucket", 0.001, 10, "local")
    taken = await asyncio.gather(*(x.take(bucket, "k") for x in (a, b) for _ in range(40)))
    assert taken.count(True) == 10


async def test_every_redis_key_expires(two_redis: tuple[Redis, Redis]) -> None:
    client = two_redis[0]
    limiter = RedisRateLimiter(client=client, fallback=InProcessRateLimiter())
    await limiter.hit(LOGINS, "k")
    await limiter.take(BUCKET, "k")
    keys = sorted(await client.keys("ratelimit:*"))
    assert keys == [b"ratelimit:bucket:test_bucket:k", b"ratelimit:window:test_logins:k"]
    window_ttl = await client.pttl(b"ratelimit:window:test_logins:k")
    bucket_ttl = await client.pttl(b"ratelimit:bucket:test_bucket:k")
    assert 0 < window_ttl <= 60_000
    assert 0 < bucket_ttl <= 3 / 20 * 1000 + 1000  # refilled to the burst, plus a second


@pytest.fixture
async def broken_redis() -> AsyncIterator[tuple[Redis, list[int]]]:
    """A client, configured as the servers' is, of a "Redis" that closes every connection
    at once; the list counts the connections it was asked for."""
    accepted: list[int] = []

    def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = connect(config=RedisConfig(host="127.0.0.1", port=port))
    try:
        yield client, accepted
    finally:
        await client.aclose()
        server.close()
        await server.wait_closed()


async def test_while_redis_is_down_local_rules_count_here_and_the_others_refuse(
    broken_redis: tuple[Redis, list[int]],
) -> None:
    client, accepted = broken_redis
    before = {rule: COUNTS.ratelimit_fallbacks.get(rule, 0) for rule in _FALLBACK_RULES}
    clock = FakeClock()
    limiter = RedisRateLimiter(
        client=client, fallback=InProcessRateLimiter(clock=clock), clock=clock
    )
    # Logins: this process's own budget, so nobody is locked out and nobody is unlimited.
    assert await _hits(limiter, LOGINS, "acct", 4) == [0, 0, 0, 60]
    await limiter.refund(LOGINS, "acct")  # never raises
    assert await limiter.hit(LOGINS, "acct") == 0
    assert [await limiter.take(BUCKET, "bot") for _ in range(4)] == [True, True, True, False]
    codes = WindowRule("test_codes", 3, 60, "refuse")
    with pytest.raises(DbError):
        await limiter.hit(codes, "1.2.3.4")
    # A request with a "refuse" rule among its checks is refused whole, counting nothing.
    with pytest.raises(DbError):
        await limiter.hit_many([(codes, "1.2.3.4"), (SHORT, "acct")])
    assert await limiter.hit_many([(SHORT, "acct"), (LOGINS, "other")]) == [0, 0]
    await limiter.refund_many([(SHORT, "acct"), (LOGINS, "other")])
    assert await limiter.hit_many([(SHORT, "acct"), (SHORT, "acct")]) == [0, 0]
    # The metric counts each check answered here (within its limit or not), per rule;
    # those of "refuse" rules were answered by no one.
    assert {rule: COUNTS.ratelimit_fallbacks.get(rule, 0) - n for rule, n in before.items()} == {
        "test_logins": 6,
        "test_bucket": 4,
        "test_short": 3,
        "test_codes": 0,
    }
    # Only the first check asked Redis (and its retries); the rest went by the pause.
    tried = len(accepted)
    assert 1 <= tried <= 3
    clock.advance(PAUSE_SECONDS)  # then Redis is asked again
    with pytest.raises(DbError):
        await limiter.hit(codes, "1.2.3.4")
    assert len(accepted) > tried
