"""The Kafka adapter against a real broker: topics, keyed placement, commit-after-store,
retries without skipping, the dead-letter topic and its replay."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from sandcat import _native
from sandcat.adapters.kafka.queue import (
    KafkaConsumerLoop,
    KafkaQueue,
    dlq_topic,
    ensure_topics,
    replay_dead_letters,
)
from sandcat.config import KafkaConfig
from sandcat.domain_records import MessageRecord
from sandcat.protocol.msg import Msg
from tests.client import until
from tests.services import Services


def _config(services: Services, partitions: int = 4) -> KafkaConfig:
    run = secrets.token_hex(4)
    return KafkaConfig(
        hosts=(services.kafka,), topic=f"t-{run}", group=f"g-{run}", partitions=partitions
    )


def _record(receiver: str, n: int) -> bytes:
    msg = Msg(send_id="s", receiver_id=receiver, server_id=f"id{n}", content=str(n).encode())
    return MessageRecord(
        msg=msg, receivers=[(receiver, n)], store=True, outbox=False, history=False, push_self=False
    ).encode()


async def test_topics_and_keyed_placement(real_services: Services) -> None:
    config = _config(real_services, partitions=4)
    await ensure_topics(config)
    await ensure_topics(config)  # idempotent
    admin = AIOKafkaAdminClient(bootstrap_servers=[real_services.kafka])
    await admin.start()
    try:
        topics = set(await admin.list_topics())
    finally:
        await admin.close()
    assert {config.topic, dlq_topic(config)} <= topics
    queue = KafkaQueue(config)
    await queue.start()
    try:
        acks = [
            await queue.publish(key, _record(key, i))
            for i, key in enumerate(["alice", "bob", "alice", "carol", "alice"])
        ]
        await asyncio.gather(*acks)
    finally:
        await queue.stop()
    consumer = AIOKafkaConsumer(
        config.topic,
        bootstrap_servers=[real_services.kafka],
        auto_offset_reset="earliest",
        group_id=None,
    )
    await consumer.start()
    try:
        got: list[tuple[int, str, int]] = []
        async with asyncio.timeout(20):
            while len(got) < 5:
                for part, records in (await consumer.getmany(timeout_ms=500)).items():
                    for r in records:
                        got.append((part.partition, (r.key or b"").decode(), r.offset))
    finally:
        await consumer.stop()
    for _, key, _ in got:
        assert next(p for p, k, _ in got if k == key) == _native.partition_of(key, 4)
    alice = sorted((off, p) for p, k, off in got if k == "alice")
    assert len(alice) == 3 and len({p for _, p in alice}) == 1  # one partition: ordered


async def test_consumer_retries_then_commits_and_dead_letters(real_services: Services) -> None:
    config = _config(real_services, partitions=1)
    await ensure_topics(config)
    producer = AIOKafkaProducer(bootstrap_servers=[real_services.kafka])
    await producer.start()
    try:
        await producer.send_and_wait(config.topic, _record("u", 1), key=b"u")
        await producer.send_and_wait(config.topic, b"not a record", key=b"u")
        await producer.send_and_wait(config.topic, _record("u", 2), key=b"u")
    finally:
        await producer.stop()

    stored: list[int] = []
    both = asyncio.Event()
    failures = 2

    async def store(records: Sequence[MessageRecord]) -> None:
        nonlocal failures
        if failures:
            failures -= 1
            raise RuntimeError("the inbox is down")
        stored.extend(seq for r in records for _, seq in r.receivers)
        if len(stored) >= 2:
            both.set()

    loop = KafkaConsumerLoop(config, store=store, max_backoff=0.2)
    await loop.start()
    task = asyncio.create_task(loop.run())
    try:
        await asyncio.wait_for(both.wait(), 30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await loop.stop()
    assert stored == [1, 2]  # retried, never skipped, in order
    assert loop.dead_letters == 1

    # Committed: a new consumer of the same group sees only what comes after (a sentinel).
    again: list[int] = []
    sentinel = asyncio.Event()

    async def record_all(records: Sequence[MessageRecord]) -> None:
        again.extend(seq for r in records for _, seq in r.receivers)
        if 3 in again:
            sentinel.set()

    producer = AIOKafkaProducer(bootstrap_servers=[real_services.kafka])
    await producer.start()
    try:
        await producer.send_and_wait(config.topic, _record("u", 3), key=b"u")
    finally:
        await producer.stop()
    second = KafkaConsumerLoop(config, store=record_all)
    await second.start()
    task = asyncio.create_task(second.run())
    try:
        await asyncio.wait_for(sentinel.wait(), 30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await second.stop()
    assert again == [3]

    # The dead letter goes back to the topic on replay (and only once).
    assert await replay_dead_letters(config) == 1
    assert await replay_dead_letters(config) == 0


async def _committed(services: Services, group: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=[services.kafka])
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if meta.offset >= 0}


async def test_offsets_are_committed_only_once_their_batch_is_stored(
    real_services: Services,
) -> None:
    """The commit stage runs beside the polling loop, yet never ahead of storage: while a
    batch's store is stuck nothing of it is committed; once it is stored, its offsets are
    (and stopping the loop waits for that commit)."""
    config = _config(real_services, partitions=1)
    await ensure_topics(config)
    queue = KafkaQueue(config)
    await queue.start()
    try:  # many publishes in flight together, acked as one
        await asyncio.gather(*[await queue.publish("u", _record("u", n)) for n in range(1, 51)])
    finally:
        await queue.stop()
    gate = asyncio.Event()
    entered = asyncio.Event()
    stored: list[int] = []

    async def store(records: Sequence[MessageRecord]) -> None:
        entered.set()
        await gate.wait()
        stored.extend(seq for r in records for _, seq in r.receivers)

    loop = KafkaConsumerLoop(config, store=store)
    await loop.start()
    task = asyncio.create_task(loop.run())
    try:
        await asyncio.wait_for(entered.wait(), 30)
        assert await _committed(real_services, config.group) == {}
        gate.set()

        async def all_committed() -> bool:  # the broker's view of the group
            return await _committed(real_services, config.group) == {0: 50}

        await until(all_committed, 30, "offset 50 committed")
        assert stored == list(range(1, 51))  # in order, each once
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await loop.stop()


async def test_overlapping_polls_commit_in_poll_order(real_services: Services) -> None:
    """With two polls stored at once, a later poll that is stored first is not committed
    before the earlier one: the committed offset never passes an unstored record."""
    config = _config(real_services, partitions=1)
    await ensure_topics(config)
    producer = AIOKafkaProducer(bootstrap_servers=[real_services.kafka])
    await producer.start()
    first_stuck = asyncio.Event()
    release_first = asyncio.Event()
    later_stored = asyncio.Event()
    stored: list[int] = []

    async def store(records: Sequence[MessageRecord]) -> None:
        seqs = [seq for r in records for _, seq in r.receivers]
        if 1 in seqs:
            first_stuck.set()
            await release_first.wait()
        stored.extend(seqs)
        if 2 in seqs:
            later_stored.set()

    loop = KafkaConsumerLoop(config, store=store, max_in_flight=2)
    await loop.start()
    task = asyncio.create_task(loop.run())
    try:
        await producer.send_and_wait(config.topic, _record("u", 1), key=b"u")
        await asyncio.wait_for(first_stuck.wait(), 30)
        await producer.send_and_wait(config.topic, _record("u", 2), key=b"u")
        await asyncio.wait_for(later_stored.wait(), 30)  # the second poll overtook the first
        assert stored == [2]
        assert await _committed(real_services, config.group) == {}
        release_first.set()

        async def both_committed() -> bool:
            return await _committed(real_services, config.group) == {0: 2}

        await until(both_committed, 30, "offset 2 committed")
        assert sorted(stored) == [1, 2]
    finally:
        await producer.stop()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await loop.stop()
