"""The distributed accept pipeline: idempotency, seq allocation, durable publish.

``QueuedMessageLog`` implements the message-log port of ``MessageService`` for
distributed mode. Storage and pushes happen in a msg-server; here a submission becomes a
Kafka record and its sender's ack. Every backend round trip is made once per *batch*:

1. **Admission** (one batch at a time, in submission order): the queued submissions are
   taken as one batch; ONE idempotency lookup covers all its keys
   (``IdempotencyStore.get_acks``), then ONE Lua call allocates every seq of the batch
   (``SeqAllocator.allocate_many``, in submission order), then each record's publish is
   started as its own task, in allocation order, and admission moves on to the next batch
   without waiting for the broker.
2. **Publish** (per record, concurrently): the record goes to the queue; its broker ack
   (``acks=all``) is awaited by that record alone, so a slow partition or a slow call for one
   key holds back only the records behind it, never the other senders.
3. **Settling** (batched across records): acked records that carry an idempotency key wait
   for ONE idempotency insert covering every record acked meanwhile
   (``IdempotencyStore.put_acks``); then their futures resolve. Records without a key resolve
   on their broker ack. A failed insert is retried (the records are in the queue already:
   an error ack would make the sender store its message twice).

Order: admission is serial, so seqs are allocated in submission order (a sender's
``send_seq`` follows its send order, and a conversation's ``seq`` too), and records are
handed to the queue in allocation order; batches overlap only from the publish on. A
resend of a key that is still in flight (an earlier batch, or earlier in the same one) is
neither looked up nor allocated: it settles with its original's outcome.
"""

from __future__ import annotations

import asyncio

from sandcat.domain import (
    Ack,
    GroupStamp,
    StaleMembership,
    Stored,
    Submission,
    UserSeqs,
    taken_seqs,
)
from sandcat.domain_records import MessageRecord
from sandcat.log import get_logger
from sandcat.ports import IdempotencyStore, MessageQueue, SeqAllocator
from sandcat.services.messages import MessageRefused
from sandcat.util.batching import BatchingWorker

log = get_logger(__name__)

Entry = tuple[Submission, "asyncio.Future[Stored]"]


def record_key(submission: Submission) -> str:
    """Order per conversation: keyed by the group, else by the (first) receiver."""
    msg = submission.msg
    if msg.group_id:
        return msg.group_id
    return submission.receivers[0] if submission.receivers else msg.send_id


#: Before an admission batch smaller than ``max_batch`` the pipeline waits this long (s), so
#: the submissions arriving meanwhile share its lookup, its Lua call and later its insert.
#: With the lookups cheap, batches had shrunk and the gateways' CPU per message grown; 3 ms
#: lowered send→receive p50 / p99 at 800 msgs/s from 84-179 / 450-587 ms to 59-112 /
#: 243-449 ms over four alternating rounds (docs/performance.md).
ADMISSION_GATHER_SECONDS = 0.003
#: Bounds of the pause between two attempts of an idempotency insert that failed (seconds).
SETTLE_RETRY_MIN = 0.1
SETTLE_RETRY_MAX = 2.0


class QueuedMessageLog:
    def __init__(
        self,
        *,
        seqs: SeqAllocator,
        idempotency: IdempotencyStore,
        queue: MessageQueue,
        max_batch: int = 512,
    ) -> None:
        self._seqs = seqs
        self._idem = idempotency
        self._queue = queue
        self._admission: BatchingWorker[Submission, Stored] = BatchingWorker(
            self._admit_batch,
            max_batch=max_batch,
            name="queued-log-admit",
            gather_seconds=ADMISSION_GATHER_SECONDS,
        )
        #: Acked records waiting for the idempotency insert.
        self._acked: list[tuple[tuple[str, str], asyncio.Future[Stored], Stored]] = []
        self._acked_wakeup = asyncio.Event()
        #: idem key -> the future of the submission that holds it while it is in flight.
        self._inflight: dict[tuple[str, str], asyncio.Future[Stored]] = {}
        #: Every submission not settled yet (``stop`` lets them land).
        self._open: set[asyncio.Future[Stored]] = set()
        self._publishing: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        #: Round trips made, for tests and profiles.
        self.batches = 0

    def start(self) -> None:
        self._admission.start()
        self._tasks = [
            asyncio.get_running_loop().create_task(self._settle_loop(), name="queued-log-settle")
        ]

    async def stop(self) -> None:
        if not self._tasks:
            return
        if self._open:  # let what was accepted land before stopping
            await asyncio.gather(*list(self._open), return_exceptions=True)
        await self._admission.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def submit(self, submission: Submission) -> asyncio.Future[Stored]:
        """Queue in call order; the future resolves once the submission is durable."""
        future = self._admission.submit(submission)
        self._open.add(future)
        future.add_done_callback(self._open.discard)
        return future

    # --- admission: one batch at a time -------------------------------------------------

    async def _admit_batch(self, batch: list[Entry]) -> None:
        try:
            await self._admit(batch)
        except Exception:  # the adapters raise; the worker fails the batch's waiters
            log.exception("admit_batch_failed", size=len(batch))
            raise

    async def _admit(self, batch: list[Entry]) -> None:
        self.batches += 1
        fresh: list[Entry] = []
        for sub, future in batch:
            key = sub.idem_key
            if key is not None:
                original = self._inflight.get(key)
                if original is not None:  # a resend of a key in flight: its outcome
                    _follow(original, future)
                    continue
                self._hold(key, future)
            fresh.append((sub, future))
        keys = [sub.idem_key for sub, _ in fresh if sub.idem_key is not None]
        known = await self._idem.get_acks(keys) if keys else {}
        todo: list[Entry] = []
        for sub, future in fresh:
            ack = known.get(sub.idem_key) if sub.idem_key is not None else None
            if ack is not None:
                future.set_result(Stored(ack, duplicate=True))
            else:
                todo.append((sub, future))
        while True:
            if not todo:
                return
            try:
                allocated = await self._seqs.allocate_many(
                    [(sub.msg.send_id if sub.outbox else None, sub.receivers) for sub, _ in todo],
                    [_stamp(sub) for sub, _ in todo],
                )
                break
            except StaleMembership as stale:  # a change of their group came first
                log.info("group_messages_read_again", count=len(stale.indices))
                todo = await _regroup(todo, stale.indices)
        outcomes: list[Stored] = []
        for (sub, _), (send_seq, seqs) in zip(todo, allocated, strict=True):
            msg = sub.msg
            msg.send_seq = send_seq
            outcomes.append(
                Stored(
                    Ack(msg.server_id, msg.send_time, send_seq),
                    duplicate=False,
                    receiver_seqs=list(zip(sub.receivers, seqs, strict=True)),
                )
            )
        pairs = [(sub, st) for (sub, _), st in zip(todo, outcomes, strict=True)]
        try:
            values = [_record(sub, st) for sub, st in pairs]
        except Exception:  # nothing was published: the seqs must not stay pending
            await self._seqs.mark_stored([t for sub, st in pairs for t in _allocated(sub, st)])
            raise
        loop = asyncio.get_running_loop()
        for (sub, future), stored, value in zip(todo, outcomes, values, strict=True):
            # Tasks start in creation order, so the queue sees the records in allocation
            # order; each then waits for its own broker ack only.
            task = loop.create_task(self._publish(sub, future, stored, record_key(sub), value))
            self._publishing.add(task)
            task.add_done_callback(self._publishing.discard)

    def _hold(self, key: tuple[str, str], future: asyncio.Future[Stored]) -> None:
        """Mark ``key`` in flight until ``future`` settles (by then its ack is stored)."""
        self._inflight[key] = future

        def release(done: asyncio.Future[Stored]) -> None:
            if self._inflight.get(key) is done:
                del self._inflight[key]

        future.add_done_callback(release)

    # --- publish: per record ----------------------------------------------------------------

    async def _publish(
        self,
        sub: Submission,
        future: asyncio.Future[Stored],
        stored: Stored,
        key: str,
        value: bytes,
    ) -> None:
        try:
            acked = await self._queue.publish(key, value)
            await acked
        except Exception as exc:
            log.warning("publish_failed", server_id=sub.msg.server_id, error=repr(exc))
            try:
                await self._release(sub, stored)
            except Exception:
                log.exception("release_failed", server_id=sub.msg.server_id)
            if not future.done():
                future.set_exception(exc)
            return
        if sub.idem_key is None:
            if not future.done():
                future.set_result(stored)
            return
        self._acked.append((sub.idem_key, future, stored))
        self._acked_wakeup.set()

    async def _release(self, sub: Submission, stored: Stored) -> None:
        """Seqs of a record that never reached the queue: release them (a gap, not a hole)."""
        taken = _allocated(sub, stored)
        if taken:
            await self._seqs.mark_stored(taken)

    # --- settling: one idempotency insert per wave of acks -----------------------------------

    async def _settle_loop(self) -> None:
        """A failed insert is retried with the next wave, never turned into an error ack:
        the records are already in the queue and will be stored, so a sender told to resend
        would store its message twice. Until the insert lands, their keys stay in flight
        (a resend follows the original) and their senders wait for the ack."""
        pause = SETTLE_RETRY_MIN
        while True:
            await self._acked_wakeup.wait()
            self._acked_wakeup.clear()
            while self._acked:
                wave, self._acked = self._acked, []
                try:
                    await self._idem.put_acks([(*key, stored.ack) for key, _, stored in wave])
                except Exception:
                    log.exception("idempotency_insert_failed", size=len(wave), retry_in=pause)
                    self._acked = wave + self._acked
                    await asyncio.sleep(pause)
                    pause = min(pause * 2, SETTLE_RETRY_MAX)
                    continue
                pause = SETTLE_RETRY_MIN
                for _, future, stored in wave:
                    if not future.done():
                        future.set_result(stored)


def _stamp(sub: Submission) -> GroupStamp | None:
    if sub.epoch is None and sub.members is None:
        return None
    return sub.msg.group_id, sub.epoch, sub.members


async def _regroup(todo: list[Entry], indices: list[int]) -> list[Entry]:
    """Read the receivers of the stale group messages again (all at once); those whose
    sender may no longer post (removed, or the group dismissed) get their refusal."""
    stale = [todo[i] for i in indices]

    async def again(sub: Submission) -> tuple[list[str], int]:
        if sub.regroup is None:
            raise MessageRefused("the group's members changed; send the message again")
        return await sub.regroup()

    outcomes = await asyncio.gather(*(again(sub) for sub, _ in stale), return_exceptions=True)
    refused: set[int] = set()
    for index, (sub, future), outcome in zip(indices, stale, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            refused.add(index)
            if not future.done():
                future.set_exception(outcome)
        else:
            sub.receivers, sub.epoch = outcome
    return [entry for i, entry in enumerate(todo) if i not in refused]


def _record(sub: Submission, stored: Stored) -> bytes:
    return MessageRecord(
        msg=sub.msg,
        receivers=stored.receiver_seqs,
        store=sub.store,
        outbox=sub.outbox,
        history=sub.history,
        push_self=sub.push_self,
    ).encode()


def _allocated(sub: Submission, stored: Stored) -> list[UserSeqs]:
    """The seqs a submission holds pending."""
    return taken_seqs(sub.msg.send_id, stored.receiver_seqs, stored.ack.send_seq)


def _follow(original: asyncio.Future[Stored], future: asyncio.Future[Stored]) -> None:
    """Settle ``future`` (a resend) with ``original``'s outcome once it is known."""

    def settle(done: asyncio.Future[Stored]) -> None:
        if future.done():
            return
        if done.cancelled():
            future.cancel()
        elif (exc := done.exception()) is not None:
            future.set_exception(exc)
        else:
            future.set_result(Stored(done.result().ack, duplicate=True))

    original.add_done_callback(settle)
