"""aiokafka producer and consumer for the message topic, its dead-letter topic and replay.

- Producer: idempotent, ``acks=all``; records are keyed (receiver or group) and placed on
  ``xxh3(key) mod partitions`` so order per conversation holds and placement is stable.
  ``publish`` only appends the record to its partition's batch (it yields only when that
  batch is full) and returns the ack future, so the accept pipeline has every record of a
  batch on its way without waiting for the others' acks.
- Batching (see ``PRODUCER_LINGER_MS``): aiokafka keeps ONE produce request in flight per
  broker; while it waits for the ``acks=all`` answer, every record published meanwhile
  gathers in the partitions' batches and leaves in the next request. Batches therefore grow
  with the load by themselves and the linger only matters when the producer is idle.
- Consumer (msg-server): a consumer group reading batches, manual commit only after the
  batch is durably stored. A batch that fails to store is retried with backoff, never
  skipped; only a record that can never be stored (undecodable) goes to the dead-letter
  topic, and ``sandcat dlq replay`` puts it back. Offsets are committed by a stage of their
  own (one commit for every batch stored meanwhile), never ahead of storage.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import CommitFailedError, KafkaError, TopicAlreadyExistsError

from sandcat import _native
from sandcat.config import KafkaConfig
from sandcat.domain_records import MessageRecord
from sandcat.errors import DecodeError
from sandcat.log import get_logger
from sandcat.metrics import COUNTS

log = get_logger(__name__)

StoreBatch = Callable[[Sequence[MessageRecord]], Awaitable[None]]


def dlq_topic(config: KafkaConfig) -> str:
    return f"{config.topic}-dlq"


async def ensure_topics(config: KafkaConfig) -> None:
    """Create the message topic (``kafka.partitions``) and its dead-letter topic if missing."""
    admin = AIOKafkaAdminClient(bootstrap_servers=list(config.hosts))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, num_partitions=parts, replication_factor=1)
            for name, parts in ((config.topic, config.partitions), (dlq_topic(config), 1))
            if name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
    finally:
        await admin.close()


#: How long an idle producer waits for more records before sending a batch. Measured on the
#: distributed benchmark (2 cores, everything local): 5 ms instead of 1 ms sent fewer produce
#: requests but did not lower the broker's or the gateways' CPU measurably (under load the
#: one-request-in-flight rule batches anyway) and raised send→receive p99 at 200 and
#: 400 msgs/s; so the linger stays short.
PRODUCER_LINGER_MS = 1
#: Upper bound of one partition's batch in a produce request.
PRODUCER_BATCH_BYTES = 256 * 1024
#: How long the broker may hold a fetch with nothing new. aiokafka keeps one fetch in flight
#: per broker and leaves out of it every partition whose records are still waiting to be
#: polled, so a record for such a partition waits for the in-flight fetch to come back: with
#: the default 500 ms that was the msg-server's worst latency at low rates (accept→consumer
#: p99 99 ms at 100 msgs/s, 55 ms with 20 ms). The cost is an empty fetch per 20 ms when idle
#: (measured: about 5 % of a core in the broker and 5 % in the msg-server).
#: With ``kafka.consumer.fetch_min_bytes`` (default 8 KB) the broker also holds a fetch until
#: that many bytes wait, so below saturation a poll carries up to 20 ms of records instead
#: of what arrived since the last fetch returned. Every poll costs the same round trips
#: downstream (claim, inbox, history, release, push): fewer, larger polls cut the Sandcat
#: processes' CPU per message by about a fifth at 400 msgs/s, for 5 to 9 ms more send→receive
#: p50 at 10 to 30 msgs/s (docs/performance.md, 2 Dec).
CONSUMER_FETCH_WAIT_MS = 20


class KafkaQueue:
    """Implements the pipeline's ``MessageQueue``."""

    def __init__(self, config: KafkaConfig) -> None:
        self._config = config
        self._producer = AIOKafkaProducer(
            bootstrap_servers=list(config.hosts),
            acks="all",
            enable_idempotence=True,
            linger_ms=PRODUCER_LINGER_MS,
            retry_backoff_ms=config.producer.retry_interval,
            max_batch_size=PRODUCER_BATCH_BYTES,
        )
        self._partitions = config.partitions

    async def start(self) -> None:
        await self._producer.start()
        parts = await self._producer.partitions_for(self._config.topic)
        if parts:
            self._partitions = len(parts)

    async def stop(self) -> None:
        await self._producer.stop()

    async def publish(self, key: str, value: bytes) -> Awaitable[None]:
        partition = _native.partition_of(key, self._partitions)
        started = time.perf_counter()
        acked: asyncio.Future[None] = await self._producer.send(
            self._config.topic, value, key=key.encode(), partition=partition
        )
        acked.add_done_callback(
            lambda _: COUNTS.kafka_publish.observe(time.perf_counter() - started)
        )
        return acked

    async def ping(self) -> None:
        """Ask a broker for the cluster's metadata (readiness: Kafka answers)."""
        await self._producer.client.fetch_all_metadata()


class KafkaConsumerLoop:
    """The msg-server's consumer: batches in, ``store`` them, commit, repeat."""

    def __init__(
        self,
        config: KafkaConfig,
        *,
        store: StoreBatch,
        max_backoff: float = 5.0,
        max_in_flight: int = 1,
        after_store: Callable[[], None] | None = None,
    ) -> None:
        """``after_store`` runs once each batch is stored, before its offsets go to the
        commit stage (the msg-server's crash test exits there)."""
        self._config = config
        self._store = store
        self._after_store = after_store
        self._max_backoff = max_backoff
        self._max_in_flight = max(1, max_in_flight)
        self._consumer = AIOKafkaConsumer(
            config.topic,
            bootstrap_servers=list(config.hosts),
            group_id=config.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=config.consumer.batch_size,
            fetch_max_wait_ms=CONSUMER_FETCH_WAIT_MS,
            fetch_min_bytes=config.consumer.fetch_min_bytes,
        )
        self._dlq = AIOKafkaProducer(
            bootstrap_servers=list(config.hosts), acks="all", enable_idempotence=True
        )
        self.dead_letters = 0
        #: True while the last poll found nothing new: the consumer has caught up.
        self.idle = False
        #: Offsets of stored batches not committed yet (the commit stage takes them all).
        self._to_commit: dict[TopicPartition, int] = {}
        self._committer: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._dlq.start()
        await self._consumer.start()

    async def stop(self) -> None:
        if self._committer is not None:  # what is stored gets committed first
            await asyncio.gather(self._committer, return_exceptions=True)
        await self._consumer.stop()
        await self._dlq.stop()

    async def run(self) -> None:
        """Poll and store; up to ``max_in_flight`` polls are being stored at once (their
        writes overlap). Offsets go to the commit stage in poll order, each poll's once it
        and every earlier poll are stored."""
        loop = asyncio.get_running_loop()
        in_flight: deque[tuple[asyncio.Task[None], dict[TopicPartition, int]]] = deque()
        try:
            while True:
                while in_flight and in_flight[0][0].done():
                    task, offsets = in_flight.popleft()
                    task.result()  # storage retries itself; anything else ends the loop
                    self._commit_later(offsets)
                if len(in_flight) >= self._max_in_flight:
                    await asyncio.wait({in_flight[0][0]})
                    continue
                batches = await self._consumer.getmany(timeout_ms=200)
                self.idle = not batches and not in_flight
                self._note_lag(batches)
                if batches:
                    offsets = {part: recs[-1].offset + 1 for part, recs in batches.items()}
                    in_flight.append((loop.create_task(self._handle(batches)), offsets))
        finally:
            for task, _ in in_flight:  # not committed: replayed by whoever polls next
                task.cancel()
            await asyncio.gather(*(task for task, _ in in_flight), return_exceptions=True)

    def _note_lag(self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]) -> None:
        """Per assigned partition, the records on the broker past what was polled."""
        lag = COUNTS.kafka_lag
        for part in self._consumer.assignment():
            records = batches.get(part)
            highwater = self._consumer.highwater(part)
            if records:
                lag[part.partition] = max(0, (highwater or 0) - records[-1].offset - 1)
            elif not batches:  # an empty poll: caught up everywhere
                lag[part.partition] = 0

    async def _handle(
        self, batches: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]
    ) -> None:
        """Store every partition's records of one poll as one batch (one inbox write, one
        history write, one seq release, one routing); ``run`` commits their offsets."""
        decoded: list[MessageRecord] = []
        for records in batches.values():  # each partition's records stay in their order
            for item in records:
                try:
                    decoded.append(MessageRecord.decode(item.value or b""))
                except DecodeError as exc:
                    await self._dead_letter(item, str(exc))
        backoff = 0.1
        started = time.perf_counter()
        while decoded:
            try:
                await self._store(decoded)
                COUNTS.store_batch_seconds.observe(time.perf_counter() - started)
                COUNTS.store_batch_size.observe(len(decoded))
                COUNTS.messages_stored += len(decoded)
                break
            except (KafkaError, OSError, RuntimeError) as exc:
                log.warning(
                    "store_batch_retry",
                    size=len(decoded),
                    error=type(exc).__name__,
                    backoff=backoff,
                )
            except Exception as exc:  # adapters raise their own errors; keep retrying
                log.exception(
                    "store_batch_retry",
                    size=len(decoded),
                    error=type(exc).__name__,
                    backoff=backoff,
                )
            await asyncio.sleep(backoff)
            backoff = min(self._max_backoff, backoff * 2)
        if self._after_store is not None:
            self._after_store()

    def _commit_later(self, offsets: dict[TopicPartition, int]) -> None:
        """Hand a stored poll's offsets to the commit stage (started if idle)."""
        self._to_commit.update(offsets)
        if self._committer is None or self._committer.done():
            self._committer = asyncio.get_running_loop().create_task(
                self._commit_stored(), name="kafka-commit"
            )

    async def _commit_stored(self) -> None:
        """The commit stage: the offsets of every batch stored meanwhile in one commit, while
        the loop already polls and stores the next batches. Offsets only ever move forward
        per partition and are committed only once their batch is stored; a failed commit is
        retried with the next one (a crash before it replays stored records: idempotent)."""
        while self._to_commit:
            offsets, self._to_commit = self._to_commit, {}
            try:
                await self._consumer.commit(offsets)
            except CommitFailedError as exc:  # a rebalance: the new owner replays them
                log.warning("commit_dropped", error=repr(exc), partitions=len(offsets))
            except KafkaError as exc:
                log.warning("commit_failed", error=repr(exc), partitions=len(offsets))
                for partition, offset in offsets.items():  # unless a later batch moved on
                    self._to_commit.setdefault(partition, offset)
                await asyncio.sleep(0.2)

    async def _dead_letter(self, item: ConsumerRecord[bytes, bytes], reason: str) -> None:
        self.dead_letters += 1
        COUNTS.dead_letters += 1
        log.error("dead_letter", partition=item.partition, offset=item.offset, reason=reason)
        await self._dlq.send_and_wait(
            dlq_topic(self._config), item.value, key=item.key, headers=[("reason", reason.encode())]
        )


async def replay_dead_letters(config: KafkaConfig, *, limit: int = 0) -> int:
    """Move the dead-letter topic's records back to the message topic; returns the count."""
    consumer = AIOKafkaConsumer(
        dlq_topic(config),
        bootstrap_servers=list(config.hosts),
        group_id=f"{config.group}-dlq",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=list(config.hosts), acks="all", enable_idempotence=True
    )
    await consumer.start()
    await producer.start()
    moved = 0
    try:
        while not limit or moved < limit:
            batches = await consumer.getmany(timeout_ms=1000)
            if not batches:
                break
            for partition, records in batches.items():
                for item in records:
                    key = (item.key or b"").decode()
                    parts = await producer.partitions_for(config.topic)
                    await producer.send_and_wait(
                        config.topic,
                        item.value,
                        key=item.key,
                        partition=_native.partition_of(key, len(parts or {0})),
                    )
                    moved += 1
                await consumer.commit({partition: records[-1].offset + 1})
    finally:
        await producer.stop()
        await consumer.stop()
    return moved
