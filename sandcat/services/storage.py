"""The msg-server's job: store a batch of accepted records, then route their pushes.

Records carry their seqs already, and every write is idempotent, so a batch that is
replayed after a crash (offsets are committed only after ``store_batch`` returns) stores
nothing twice (I2) and loses nothing (I1).

One batch (every record of one consumer poll) costs one inbox insert (unordered, idempotent
on owner/box/seq) and one history insert, made concurrently, then one seq release, then one
routing (one presence lookup, one push batch per gateway; with a ``SeqRelease`` the lookup
rides with the release, one round trip for both). Several batches may be stored at
once (their writes overlap); their seq releases and push planning take turns, so each
user's watermark is applied in the order Redis computed it. With ``route_in_background`` the
routing runs in an ordered stage of its own: ``store_batch`` returns once the batch is
durable and its seqs released (so the consumer commits and polls again at once), and the
batches queued for routing meanwhile go out together, oldest first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any

from sandcat.domain import Ack, idempotency_key, taken_seqs
from sandcat.domain_records import MessageRecord
from sandcat.ids import SYSTEM_CLOCK
from sandcat.log import get_logger
from sandcat.ports import (
    Clock,
    HistoryStore,
    InboxWriter,
    KeyClaims,
    Located,
    Push,
    PushRouter,
    SeqAllocator,
    SeqRelease,
)
from sandcat.protocol.msg import Msg
from sandcat.services.messages import plan_pushes
from sandcat.util.tasks import run_all


def inbox_copies(record: MessageRecord) -> list[tuple[str, int, Msg]]:
    """One copy per owner: the sender's (box 1, ``send_seq``), each receiver's (box 0)."""
    if not record.store:
        return []
    msg = record.msg
    copies: list[tuple[str, int, Msg]] = []
    if record.outbox and msg.send_seq:
        copies.append((msg.send_id, 1, msg.copy(seq=0)))
    other = 0 if msg.group_id else msg.send_seq
    copies.extend((uid, 0, msg.copy(seq=seq, send_seq=other)) for uid, seq in record.receivers)
    return copies


log = get_logger(__name__)

#: Pushes held above a watermark, at most this many and this long (then the client pulls).
MAX_HELD = 100_000
HOLD_SECONDS = 30.0


def _position(push: Push) -> tuple[int, int]:
    """Which counter a copy exposes: (0, receive seq), or (1, send seq) for the sender's
    own copies (echo and ack, whose ``seq`` is 0)."""
    msg = push.msg
    return (0, msg.seq) if msg.seq else (1, msg.send_seq)


#: Batches of pushes waiting for the routing stage before ``store_batch`` waits for it.
MAX_QUEUED_ROUTES = 64


def _key(record: MessageRecord) -> tuple[str, str] | None:
    """The idempotency key the accepting gateway gave the record's submission, if any."""
    msg = record.msg
    if not (record.store and record.outbox and msg.local_id):
        return None
    return idempotency_key(msg.send_id, msg.receiver_id, msg.local_id)


class StorageService:
    def __init__(
        self,
        *,
        inbox: InboxWriter,
        history: HistoryStore,
        seqs: SeqAllocator,
        router: PushRouter,
        route_in_background: bool = False,
        claims: KeyClaims | None = None,
        release: SeqRelease | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        """``claims``: the idempotency keys, claimed before storing (distributed mode), so a
        message accepted twice (a resend after its gateway died between the broker's ack
        and the key's insert) is stored once. ``release``: seqs are released through it
        (the presence lookup in the same round trip) instead of ``seqs.mark_stored``.
        ``clock`` times the holds."""
        self._inbox = inbox
        self._clock = clock
        self._claims = claims
        self._history = history
        self._seqs = seqs
        self._release_seqs = release
        self._router = router
        self._background = route_in_background
        #: user -> pushes above their watermark, released when it moves past them.
        self._held: dict[str, list[tuple[float, Push]]] = {}
        self._held_count = 0
        #: Released pushes waiting for the routing stage, one list per stored batch, with
        #: their users' presence when it was looked up with the release.
        self._routes: list[tuple[list[Push], Located | None]] = []
        self._routes_changed = asyncio.Condition()
        self._router_task: asyncio.Task[None] | None = None
        #: Serialises seq release and push planning when several batches store at once.
        self._exposing = asyncio.Lock()
        self._queued = 0  # batches queued for routing so far
        self._finished = 0  # of them, routed

    async def store_batch(self, records: Sequence[MessageRecord]) -> None:
        """Durably store every record, release their seqs, then push (best effort; in the
        routing stage when routing in the background)."""
        kept, dropped = await self._claim(records)
        copies = [copy for record in kept for copy in inbox_copies(record)]
        history = [record.msg for record in kept if record.history]
        writes: list[Coroutine[Any, Any, None]] = []
        if copies:
            writes.append(self._inbox.insert_copies(copies))
        if history:
            writes.append(self._history.append(history))
        await run_all(writes)  # on a failure the caller retries the whole batch
        async with self._exposing:  # one batch at a time: watermarks applied in order
            await self._expose(kept, dropped)

    async def _claim(
        self, records: Sequence[MessageRecord]
    ) -> tuple[list[MessageRecord], list[MessageRecord]]:
        """The records to store, and the duplicates (their key belongs to another record)."""
        keyed = [(record, _key(record)) for record in records]
        items = [
            (*key, Ack(r.msg.server_id, r.msg.send_time, r.msg.send_seq))
            for r, key in keyed
            if key is not None
        ]
        if self._claims is None or not items:
            return list(records), []
        owners = await self._claims.claim(items)
        kept: list[MessageRecord] = []
        dropped: list[MessageRecord] = []
        for record, key in keyed:
            owner = owners.get(key) if key is not None else None
            if owner is None or owner == record.msg.server_id:
                kept.append(record)
            else:
                log.warning(
                    "duplicate_record_skipped", server_id=record.msg.server_id, original=owner
                )
                dropped.append(record)
        return kept, dropped

    async def _expose(
        self, records: Sequence[MessageRecord], dropped: Sequence[MessageRecord] = ()
    ) -> None:
        """Release the stored batch's seqs (and the skipped duplicates': a gap), then push
        what the new watermarks allow."""
        taken = [
            seqs
            for record in (*records, *dropped)
            for seqs in taken_seqs(record.msg.send_id, record.receivers, record.msg.send_seq)
        ]
        where: Located | None = None
        if not taken:
            exposed: dict[str, tuple[int, int]] = {}
        elif self._release_seqs is not None:
            exposed, where = await self._release_seqs.release(taken)
        else:
            exposed = await self._seqs.mark_stored(taken)
        planned: list[Push] = []
        for record in records:
            planned.extend(
                plan_pushes(
                    record.msg,
                    record.receivers,
                    record.msg.send_seq,
                    outbox=record.outbox,
                    push_self=record.push_self,
                )
            )
        pushes = self._release(planned, exposed)
        if not pushes:
            return
        if not self._background:
            await self._router.route(pushes, where)
            return
        async with self._routes_changed:
            await self._routes_changed.wait_for(lambda: len(self._routes) < MAX_QUEUED_ROUTES)
            self._routes.append((pushes, where))
            self._queued += 1
            self._routes_changed.notify_all()
        if self._router_task is None or self._router_task.done():
            self._router_task = asyncio.get_running_loop().create_task(
                self._route_loop(), name="push-routing"
            )

    async def _route_loop(self) -> None:
        """The routing stage: every batch queued meanwhile in one ``route`` call, in the
        order they were stored (each user's pushes stay in seq order: a later batch only
        releases seqs above the watermark an earlier one reached). The presence looked up
        with each batch's release serves them all, a later lookup replacing an earlier one's
        answer for the same user."""
        while True:
            async with self._routes_changed:
                await self._routes_changed.wait_for(lambda: bool(self._routes))
                queued, self._routes = self._routes, []
                self._routes_changed.notify_all()
            where: Located | None = {}
            for _, located in queued:
                if located is None or where is None:
                    where = None
                else:
                    where.update(located)
            try:
                await self._router.route([push for pushes, _ in queued for push in pushes], where)
            except Exception:  # push is best effort: sync is the source of truth
                log.exception("push_route_failed", batches=len(queued))
            async with self._routes_changed:
                self._finished += len(queued)
                self._routes_changed.notify_all()

    async def routed(self) -> None:
        """Wait until every push released so far has been through the router."""
        target = self._queued
        async with self._routes_changed:
            await self._routes_changed.wait_for(lambda: self._finished >= target)

    async def close(self) -> None:
        """Stop the routing stage (what is still queued is dropped: clients pull it)."""
        if self._router_task is not None:
            self._router_task.cancel()
            await asyncio.gather(self._router_task, return_exceptions=True)
            self._router_task = None

    def _release(self, planned: list[Push], exposed: dict[str, tuple[int, int]]) -> list[Push]:
        """The pushes at or below their user's watermark (exposure rule), each user's in seq
        order; the others are held until a later batch moves the watermark past them."""
        now = self._clock.monotonic()
        for push in planned:
            self._held.setdefault(push.user_id, []).append((now, push))
            self._held_count += 1
        ready: list[Push] = []
        for user_id in {push.user_id for push in planned} | (exposed.keys() & self._held.keys()):
            held = self._held.get(user_id)
            if not held:
                continue
            marks = exposed.get(user_id)
            keep: list[tuple[float, Push]] = []
            for since, push in held:
                kind, seq = _position(push)
                if marks is not None and seq <= marks[kind]:
                    ready.append(push)
                elif now - since < HOLD_SECONDS:
                    keep.append((since, push))
            self._held_count -= len(held) - len(keep)
            if keep:
                self._held[user_id] = keep
            else:
                del self._held[user_id]
        if self._held_count > MAX_HELD:  # bounded: beyond it the clients' gap pulls take over
            self._held.clear()
            self._held_count = 0
        # A batch holds records in publish order, which is not each user's seq order when
        # several processes allocate for the same user: push every user's copies in order.
        ready.sort(key=lambda push: (push.user_id, *_position(push)))
        return ready
