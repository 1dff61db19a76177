"""The distributed accept pipeline: idempotency, seq allocation, durable publish.

``QueuedMessageLog`` implements the message-log port of ``MessageService`` for
distributed mode. One worker takes the queued submissions in FIFO order, so per-sender
order holds (I4): it looks up idempotency keys (concurrently), allocates seqs (in order,
one atomic call per message), publishes every record to the queue (in order), awaits the
broker's acks and only then resolves the acks. Storage and pushes happen in a msg-server.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Protocol

from sandcat.domain import Ack, Stored, Submission
from sandcat.domain_records import MessageRecord
from sandcat.log import get_logger
from sandcat.ports import IdempotencyStore, SeqAllocator
from sandcat.services.batching import BatchingWorker

log = get_logger(__name__)


class MessageQueue(Protocol):
    async def publish(self, key: str, value: bytes) -> Awaitable[None]:
        """Enqueue one record in call order; the result resolves on the broker's ack."""


def record_key(submission: Submission) -> str:
    """Order per conversation: keyed by the group, else by the (first) receiver."""
    msg = submission.msg
    if msg.group_id:
        return msg.group_id
    return submission.receivers[0] if submission.receivers else msg.send_id


class QueuedMessageLog(BatchingWorker):
    def __init__(
        self,
        *,
        seqs: SeqAllocator,
        idempotency: IdempotencyStore,
        queue: MessageQueue,
        max_batch: int = 256,
    ) -> None:
        super().__init__(max_batch=max_batch, name="queued-log")
        self._seqs = seqs
        self._idem = idempotency
        self._queue = queue

    async def process(self, batch: list[tuple[Submission, asyncio.Future[Stored]]]) -> None:
        try:
            await self._process(batch)
        except Exception as exc:  # the adapters raise; every waiter learns of it
            log.exception("publish_batch_failed", size=len(batch))
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)

    async def _process(self, batch: list[tuple[Submission, asyncio.Future[Stored]]]) -> None:
        known = await asyncio.gather(
            *(self._idem.get_ack(*sub.idem_key) if sub.idem_key else _none() for sub, _ in batch)
        )
        fresh: list[tuple[Submission, asyncio.Future[Stored], Stored, Awaitable[None]]] = []
        seen: dict[tuple[str, str], Stored] = {}
        for (sub, future), ack in zip(batch, known, strict=True):
            if ack is not None:
                future.set_result(Stored(ack, duplicate=True))
                continue
            if sub.idem_key is not None and sub.idem_key in seen:  # a resend in the same batch
                first = seen[sub.idem_key]
                fresh.append((sub, future, Stored(first.ack, duplicate=True), _done()))
                continue
            msg = sub.msg
            send_seq, seqs = await self._seqs.allocate(
                msg.send_id if sub.outbox else None, sub.receivers
            )
            msg.send_seq = send_seq
            stored = Stored(
                Ack(msg.server_id, msg.send_time, send_seq),
                duplicate=False,
                receiver_seqs=list(zip(sub.receivers, seqs, strict=True)),
            )
            record = MessageRecord(
                msg=msg,
                receivers=stored.receiver_seqs,
                store=sub.store,
                outbox=sub.outbox,
                history=sub.history,
                push_self=sub.push_self,
            )
            acked = await self._queue.publish(record_key(sub), record.encode())
            if sub.idem_key is not None:
                seen[sub.idem_key] = stored
            fresh.append((sub, future, stored, acked))
        for sub, future, stored, acked in fresh:
            try:
                await acked
            except Exception as exc:
                log.exception("publish_failed", server_id=sub.msg.server_id)
                await self._release(sub, stored)
                if not future.done():
                    future.set_exception(exc)
                continue
            if sub.idem_key is not None and not stored.duplicate:
                await self._idem.put_ack(*sub.idem_key, stored.ack)
            if not future.done():
                future.set_result(stored)

    async def _release(self, sub: Submission, stored: Stored) -> None:
        """Seqs of a record that never reached the queue: release them (a gap, not a hole)."""
        if stored.duplicate:
            return
        triples = [(uid, seq, 0) for uid, seq in stored.receiver_seqs]
        if stored.ack.send_seq:
            triples.append((sub.msg.send_id, 0, stored.ack.send_seq))
        await self._seqs.mark_stored(triples)


async def _none() -> None:
    return None


def _done() -> Awaitable[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future
