"""Distributed mode: PostgreSQL, MongoDB, Kafka, Redis and S3 behind the same ports.

The mirror image of ``sandcat.embedded``: ``composition.build`` calls
``distributed_adapters``, which opens the clients a role needs, builds the adapters, and
starts the msg-server's consumer and scheduled jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import asyncpg
from pymongo import AsyncMongoClient

from sandcat.adapters.embedded.ratelimit import InProcessRateLimiter
from sandcat.adapters.kafka.queue import KafkaConsumerLoop, KafkaQueue, ensure_topics
from sandcat.adapters.mongo.cleaner import clean_inbox
from sandcat.adapters.mongo.inbox import MongoInbox, mongo_url
from sandcat.adapters.postgres.bots import PostgresBotStore
from sandcat.adapters.postgres.conversations import PostgresConversationStore
from sandcat.adapters.postgres.devices import PostgresDeviceStore, PostgresFriendshipReads
from sandcat.adapters.postgres.history import PostgresHistory
from sandcat.adapters.postgres.idempotency import PostgresIdempotency
from sandcat.adapters.postgres.migrate import apply_pg_migrations
from sandcat.adapters.postgres.oauth import PostgresOAuthLinks
from sandcat.adapters.postgres.partitions import archive_partitions, ensure_partitions
from sandcat.adapters.postgres.pool import open_pool, pg_dsn
from sandcat.adapters.postgres.segments import PostgresSegmentStore
from sandcat.adapters.postgres.social import PostgresFriendStore, PostgresGroupStore
from sandcat.adapters.postgres.users import PostgresUserStore
from sandcat.adapters.redis.client import connect as redis_connect
from sandcat.adapters.redis.codes import RedisCodeStore
from sandcat.adapters.redis.membership import RedisMembershipCache
from sandcat.adapters.redis.oauth import RedisOAuthStates
from sandcat.adapters.redis.presence import RedisGatewayRegistry, RedisPresence, RedisPushBus
from sandcat.adapters.redis.ratelimit import RedisRateLimiter
from sandcat.adapters.redis.release import RedisSeqRelease
from sandcat.adapters.redis.seqs import RedisSeqAllocator
from sandcat.adapters.s3.files import S3FileStore
from sandcat.config import Config
from sandcat.gateway.connections import Registry
from sandcat.ids import SystemClock
from sandcat.jobs.scheduler import Scheduler
from sandcat.log import get_logger
from sandcat.observability import Check
from sandcat.services.files import DEFAULT_AVATARS
from sandcat.services.pipeline import QueuedMessageLog
from sandcat.services.push import RemotePushRouter
from sandcat.services.storage import StorageService
from sandcat.wiring import Adapters

log = get_logger(__name__)

#: Orphan uploads are deleted only after this grace period.
ORPHAN_GRACE_SECONDS = 24 * 3600
PULL_WAIT_SECONDS = 2.0
#: Polls the msg-server stores at once: the next poll's inbox and history writes start while
#: the previous ones are still in FerretDB and PostgreSQL (offsets still commit in order).
CONSUMER_IN_FLIGHT = 2
#: What ``/ready`` checks per role: the services that role's requests or jobs use.
READY_NEEDS: dict[str, tuple[str, ...]] = {
    "all": ("postgres", "redis", "kafka", "mongodb", "s3"),
    "api": ("postgres", "redis", "kafka", "mongodb", "s3"),
    "gateway": ("postgres", "redis", "kafka"),
    "msg-server": ("postgres", "redis", "kafka", "mongodb"),
}


def _failpoint() -> Callable[[], None] | None:
    """``SANDCAT_FAILPOINT=after_store_before_commit``, read once at start (the crash test of
    tests/e2e/test_distributed.py): exit with 75 once the first batch is stored, before
    its offsets are committed."""
    if os.environ.get("SANDCAT_FAILPOINT") != "after_store_before_commit":
        return None

    def crash() -> None:
        log.error("failpoint", name="after_store_before_commit")
        os._exit(75)

    return crash


async def migrate_distributed(config: Config) -> list[str]:
    applied: list[str] = await apply_pg_migrations(pg_dsn(config.db.postgres))
    await ensure_topics(config.kafka)
    return applied


def _referenced(pool: asyncpg.Pool) -> Callable[[str, str], Awaitable[bool]]:
    async def referenced(bucket: str, key: str) -> bool:
        """An upload is in use while it is a default avatar, a user's avatar or named by a
        stored message (a scan of the history: the job runs daily, off the hot path)."""
        if key in DEFAULT_AVATARS:
            return True
        row = await pool.fetchrow(
            "SELECT EXISTS (SELECT 1 FROM users WHERE avatar = $1) OR EXISTS (SELECT 1 FROM "
            "messages WHERE position(convert_to($1, 'UTF8') IN content) > 0)",
            key,
        )
        return bool(row and row[0])

    return referenced


async def distributed_adapters(
    config: Config, stack: AsyncExitStack, registry: Registry, scheduler: Scheduler
) -> Adapters:
    role = config.role
    clock = SystemClock()
    pool = await open_pool(pg_dsn(config.db.postgres), max_size=config.db.postgres.max_connections)
    stack.push_async_callback(pool.close)
    redis = redis_connect(config=config.redis)
    stack.push_async_callback(redis.aclose)
    mongo: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(mongo_url(config.db.mongodb))
    stack.push_async_callback(mongo.close)
    inbox = MongoInbox(
        db=mongo[config.db.mongodb.database],
        use_sharding=config.db.mongodb.use_sharding,
        user_shards=config.db.mongodb.user_shards,
    )
    await inbox.start()
    files = S3FileStore(config=config.oss)
    await files.start()
    stack.push_async_callback(files.close)
    seqs = RedisSeqAllocator(
        client=redis, segments=PostgresSegmentStore(pool=pool), step=config.redis.seq_step
    )
    queue = KafkaQueue(config.kafka)
    await queue.start()
    stack.push_async_callback(queue.stop)
    idempotency = PostgresIdempotency(pool=pool, clock=clock)
    message_log = QueuedMessageLog(seqs=seqs, idempotency=idempotency, queue=queue)
    message_log.start()
    stack.push_async_callback(message_log.stop)
    gateways = RedisGatewayRegistry(client=redis)
    presence = RedisPresence(client=redis)
    bus = RedisPushBus(client=redis)
    remote = RemotePushRouter(presence=presence, bus=bus)
    if role in {"all", "msg-server"}:
        storage = StorageService(
            inbox=inbox,
            history=PostgresHistory(pool=pool),
            seqs=seqs,
            router=remote,
            route_in_background=True,
            claims=idempotency,
            release=RedisSeqRelease(client=redis),
        )
        stack.push_async_callback(storage.close)
        consumer = KafkaConsumerLoop(
            config.kafka,
            store=storage.store_batch,
            max_in_flight=CONSUMER_IN_FLIGHT,
            after_store=_failpoint(),
        )
        await consumer.start()
        task = asyncio.get_running_loop().create_task(consumer.run(), name="kafka-consumer")

        async def stop_consumer() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await consumer.stop()

        stack.push_async_callback(stop_consumer)
        pg = config.db.postgres
        scheduler.every(
            3600,
            "history_partitions",
            lambda: ensure_partitions(pool, clock.now_ms(), months_ahead=2),
        )
        scheduler.every(
            24 * 3600,
            "history_archive",
            lambda: archive_partitions(
                pool, clock.now_ms(), pg.history_retention_months, pg.history_archive
            ),
        )
        scheduler.every(
            24 * 3600,
            "inbox_clean",
            lambda: clean_inbox(inbox, config.db.mongodb.clean, clock.now_ms()),
        )
        scheduler.every(3600, "idempotency_purge", idempotency.purge)
        abandon_ms = config.kafka.consumer.abandon_after_seconds * 1000

        async def release_abandoned() -> int:
            """Seqs allocated by a process that died before publishing: release them once
            the consumer has caught up (a record still in Kafka would be stored first)."""
            return await seqs.release_stale(abandon_ms) if consumer.idle else 0

        # Looked for at a quarter of the abandon time (at most every minute), so a short
        # abandon time is honoured within about a quarter more.
        scheduler.every(
            min(60, max(1, abandon_ms // 4000)), "release_abandoned_seqs", release_abandoned
        )
        scheduler.every(
            24 * 3600,
            "orphan_files",
            lambda: files.clean_orphans(
                _referenced(pool), clock.now_ms() - ORPHAN_GRACE_SECONDS * 1000
            ),
        )
    mongo_db = mongo[config.db.mongodb.database]
    probes: dict[str, Check] = {
        "postgres": lambda: pool.fetchval("SELECT 1"),
        "redis": redis.ping,
        "kafka": queue.ping,
        "mongodb": lambda: mongo_db.command("ping"),
        "s3": files.ping,
    }
    return Adapters(
        users=PostgresUserStore(pool=pool),
        codes=RedisCodeStore(client=redis),
        inbox=inbox,
        counters=seqs,
        log=message_log,
        friends=PostgresFriendStore(pool=pool),
        groups=PostgresGroupStore(pool=pool),
        membership=RedisMembershipCache(client=redis),
        files=files,
        conversations=PostgresConversationStore(pool=pool),
        bots=PostgresBotStore(pool=pool),
        devices=PostgresDeviceStore(pool=pool),
        friendship_reads=PostgresFriendshipReads(pool=pool),
        oauth_states=RedisOAuthStates(client=redis),
        oauth_links=PostgresOAuthLinks(pool=pool),
        limiter=RedisRateLimiter(
            client=redis, fallback=InProcessRateLimiter(clock=clock), clock=clock
        ),
        jwt_secret=config.server.jwt_secret,
        pull_wait_seconds=PULL_WAIT_SECONDS,
        presence=presence,
        gateways=gateways,
        bus=bus,
        router=remote,
        login_gateways=gateways,
        checks=[(name, probes[name]) for name in READY_NEEDS[role]],
    )
