"""No head-of-line blocking in the distributed accept pipeline, on the real services.

``QueuedMessageLog`` runs on real Redis (seqs), PostgreSQL (idempotency keys, segment
marks) and Kafka (``acks=all``). One sender's publishes are held back at the publish call
until a gate opens; another sender's messages, in the same batches and in later ones, are
acked meanwhile, each within a bound, and the held sender's land in order once released.
(``tests/unit/test_distributed_services.py`` checks the same with in-process fakes, also
for a broker that holds the ack instead of the call.)
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Awaitable

import asyncpg
import pytest
from redis.asyncio import Redis

from sandcat.adapters.kafka.queue import KafkaQueue, ensure_topics
from sandcat.adapters.postgres.idempotency import PostgresIdempotency
from sandcat.adapters.postgres.segments import PostgresSegmentStore
from sandcat.adapters.redis.seqs import RedisSeqAllocator
from sandcat.config import KafkaConfig
from sandcat.domain import Stored, Submission
from sandcat.domain_records import MessageRecord
from sandcat.protocol.msg import Msg
from sandcat.services.pipeline import QueuedMessageLog
from tests.services import Services

#: A free sender's ack, broker round trip included, must come within this (a stalled
#: pipeline would hold it until the gate opens, which the test does only afterwards).
PROMPT_SECONDS = 5.0


class HeldQueue:
    """The real Kafka queue; records of the ``held`` sender wait at the publish call until
    ``gate`` is set (a slow backend call for that one user)."""

    def __init__(self, real: KafkaQueue, held: str) -> None:
        self.real = real
        self.held = held
        self.gate = asyncio.Event()
        self.waiting = 0

    async def publish(self, key: str, value: bytes) -> Awaitable[None]:
        if MessageRecord.decode(value).msg.send_id == self.held:
            self.waiting += 1
            await self.gate.wait()
        return await self.real.publish(key, value)


@pytest.fixture
async def queue(real_services: Services) -> AsyncIterator[HeldQueue]:
    run = secrets.token_hex(4)
    config = KafkaConfig(hosts=(real_services.kafka,), topic=f"hol-{run}", group=f"g-{run}")
    await ensure_topics(config)
    real = KafkaQueue(config)
    await real.start()
    yield HeldQueue(real, held=f"slow-{run}")
    await real.stop()


def _chat(sender: str, receiver: str, local_id: str) -> Submission:
    msg = Msg(send_id=sender, receiver_id=receiver, local_id=local_id, server_id=local_id)
    return Submission(msg=msg, receivers=[receiver], history=True, idem_key=(sender, local_id))


async def test_a_held_sender_does_not_hold_back_another(
    queue: HeldQueue, redis_client: Redis, pg_pool: asyncpg.Pool
) -> None:
    seqs = RedisSeqAllocator(
        client=redis_client, segments=PostgresSegmentStore(pool=pg_pool), step=100
    )
    log = QueuedMessageLog(seqs=seqs, idempotency=PostgresIdempotency(pool=pg_pool), queue=queue)
    log.start()
    slow, fast = queue.held, f"fast-{secrets.token_hex(4)}"
    held: list[asyncio.Future[Stored]] = []
    free: list[asyncio.Future[Stored]] = []
    for i in range(5):  # interleaved: the same admission batches
        held.append(log.submit(_chat(slow, "r1", f"s{i}")))
        free.append(log.submit(_chat(fast, "r2", f"f{i}")))
    first = await asyncio.wait_for(asyncio.gather(*free), PROMPT_SECONDS)
    later = [log.submit(_chat(fast, "r3", f"g{i}")) for i in range(5)]  # later batches too
    second = await asyncio.wait_for(asyncio.gather(*later), PROMPT_SECONDS)
    assert [st.ack.send_seq for st in first + second] == list(range(1, 11))
    assert queue.waiting >= 1 and not any(future.done() for future in held)
    queue.gate.set()
    released = await asyncio.wait_for(asyncio.gather(*held), 30)
    assert [st.ack.send_seq for st in released] == [1, 2, 3, 4, 5]  # in order, once released
    await log.stop()
