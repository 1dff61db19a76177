"""The distributed message path's services against in-process fakes of their ports.

The real adapters pass the same port contracts in ``tests/contracts``; the end-to-end
distributed topology runs in ``tests/e2e``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Iterable, Mapping, Sequence

import orjson
import pytest

from sandcat.domain import Ack, GroupStamp, StaleMembership, Stored, Submission
from sandcat.domain_records import MessageRecord
from sandcat.errors import DbError, DecodeError
from sandcat.ports import Located, Push
from sandcat.protocol.bincode import Writer
from sandcat.protocol.msg import Msg
from sandcat.protocol.push_batch import (
    EntryKind,
    PushEntry,
    decode_batch,
    deliver,
    encode_batch,
    end_sessions,
    knock_off,
)
from sandcat.services.messages import MessageRefused
from sandcat.services.pipeline import QueuedMessageLog, record_key
from sandcat.services.push import RemotePushRouter
from sandcat.services.storage import StorageService, inbox_copies


class FakeSeqs:
    """Counters with a pending set and the exposure watermark, like the Redis adapter."""

    def __init__(self) -> None:
        self.cur: dict[tuple[str, int], int] = {}
        self.pending: dict[tuple[str, int], set[int]] = {}
        self.calls = 0  # allocate_many round trips
        #: Groups whose next checked allocation is stale (once).
        self.stale_groups: set[str] = set()

    async def allocate(self, sender: str | None, receivers: Sequence[str]) -> tuple[int, list[int]]:
        def bump(user: str, kind: int) -> int:
            value = self.cur.get((user, kind), 0) + 1
            self.cur[(user, kind)] = value
            self.pending.setdefault((user, kind), set()).add(value)
            return value

        send_seq = bump(sender, 1) if sender else 0
        return send_seq, [bump(r, 0) for r in receivers]

    async def allocate_many(
        self,
        requests: Sequence[tuple[str | None, Sequence[str]]],
        groups: Sequence[GroupStamp | None] = (),
    ) -> list[tuple[int, list[int]]]:
        """Group epochs: a stamp's check fails while ``stale_epochs`` holds its group."""
        self.calls += 1
        stale = [
            i
            for i, stamp in enumerate(groups)
            if stamp is not None and stamp[1] is not None and stamp[0] in self.stale_groups
        ]
        if stale:
            self.stale_groups.clear()
            raise StaleMembership(stale)
        return [await self.allocate(sender, receivers) for sender, receivers in requests]

    def _exposed(self, user: str, kind: int) -> int:
        pending = self.pending.get((user, kind))
        return min(pending) - 1 if pending else self.cur.get((user, kind), 0)

    async def mark_stored(
        self, items: Sequence[tuple[str, int, int]]
    ) -> dict[str, tuple[int, int]]:
        for user, seq, send_seq in items:
            if seq:
                self.pending.get((user, 0), set()).discard(seq)
            if send_seq:
                self.pending.get((user, 1), set()).discard(send_seq)
        return {u: (self._exposed(u, 0), self._exposed(u, 1)) for u, _, _ in items}

    async def exposed(self, user_id: str) -> tuple[int, int]:
        return self._exposed(user_id, 0), self._exposed(user_id, 1)


class FakeIdem:
    def __init__(self) -> None:
        self.acks: dict[tuple[str, str], Ack] = {}
        self.lookups: list[list[tuple[str, str]]] = []  # one entry per round trip
        self.inserts: list[list[tuple[str, str]]] = []

    async def get_ack(self, send_id: str, local_id: str) -> Ack | None:
        return self.acks.get((send_id, local_id))

    async def put_ack(self, send_id: str, local_id: str, ack: Ack) -> None:
        self.acks[(send_id, local_id)] = ack

    async def get_acks(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Ack]:
        self.lookups.append(list(keys))
        return {key: self.acks[key] for key in keys if key in self.acks}

    async def put_acks(self, items: Sequence[tuple[str, str, Ack]]) -> None:
        self.inserts.append([(send_id, local_id) for send_id, local_id, _ in items])
        for send_id, local_id, ack in items:
            self.acks[(send_id, local_id)] = ack


class FakeQueue:
    def __init__(self, fail_keys: frozenset[str] = frozenset()) -> None:
        self.records: list[tuple[str, bytes]] = []
        self.fail_keys = fail_keys

    async def publish(self, key: str, value: bytes) -> Awaitable[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if key in self.fail_keys:
            future.set_exception(RuntimeError("broker down"))
        else:
            self.records.append((key, value))
            future.set_result(None)
        return future


def chat(sender: str, receiver: str, local_id: str, server_id: str = "s") -> Submission:
    msg = Msg(
        send_id=sender,
        receiver_id=receiver,
        local_id=local_id,
        server_id=server_id,
        send_time=1,
        content=b"x",
    )
    return Submission(
        msg=msg,
        receivers=[receiver],
        history=True,
        idem_key=(sender, local_id) if local_id else None,
    )


async def test_pipeline_keeps_fifo_and_publishes_keyed_records() -> None:
    seqs, queue = FakeSeqs(), FakeQueue()
    log = QueuedMessageLog(seqs=seqs, idempotency=FakeIdem(), queue=queue)
    log.start()
    futures = [log.submit(chat("a", "b", f"l{i}", f"s{i}")) for i in range(5)]
    stored = await asyncio.gather(*futures)
    await log.stop()
    assert [s.ack.send_seq for s in stored] == [1, 2, 3, 4, 5]
    assert [s.receiver_seqs for s in stored] == [[("b", i)] for i in range(1, 6)]
    assert [key for key, _ in queue.records] == ["b"] * 5
    record = MessageRecord.decode(queue.records[2][1])
    assert record.msg.send_seq == 3 and record.receivers == [("b", 3)] and record.history


async def test_pipeline_idempotency_across_and_within_batches() -> None:
    seqs, queue, idem = FakeSeqs(), FakeQueue(), FakeIdem()
    log = QueuedMessageLog(seqs=seqs, idempotency=idem, queue=queue)
    log.start()
    first, again = (
        log.submit(chat("a", "b", "same", "s1")),
        log.submit(chat("a", "b", "same", "s2")),
    )
    one, two = await first, await again
    later = await log.submit(chat("a", "b", "same", "s3"))
    empty = [await log.submit(chat("a", "b", "", f"e{i}")) for i in range(2)]
    await log.stop()
    assert not one.duplicate and two.duplicate and later.duplicate
    assert one.ack == two.ack == later.ack
    assert len(queue.records) == 3  # "same" once, and both empty local_ids
    assert [e.ack.send_seq for e in empty] == [2, 3]


def group_msg(
    sender: str, group: str, receivers: list[str], epoch: int, regroup: list[str] | None
) -> Submission:
    """A group message read at ``epoch``; read again it finds ``regroup`` (None: refused)."""

    async def again() -> tuple[list[str], int]:
        if regroup is None:
            raise MessageRefused("you are not a member of this group")
        return regroup, epoch + 1

    msg = Msg(send_id=sender, receiver_id=group, group_id=group, server_id=sender, msg_type=1)
    return Submission(msg=msg, receivers=receivers, epoch=epoch, regroup=again)


async def test_stale_group_messages_are_read_again_and_allocated_in_the_same_batch() -> None:
    """A change of the group came first: the batch's messages of that group get their
    receivers again (the removed sender is refused); nothing else of the batch is lost."""
    seqs, queue = FakeSeqs(), FakeQueue()
    seqs.stale_groups.add("g")
    log = QueuedMessageLog(seqs=seqs, idempotency=FakeIdem(), queue=queue)
    log.start()
    kept = log.submit(group_msg("a", "g", ["b", "x"], 1, ["b"]))
    other = log.submit(chat("a", "c", "1"))
    gone = log.submit(group_msg("x", "g", ["a", "b"], 1, None))
    stored = await kept
    assert stored.receiver_seqs == [("b", 1)]  # x was removed: not a receiver any more
    assert (await other).ack.send_seq == 2
    with pytest.raises(MessageRefused):
        await gone
    await log.stop()
    assert seqs.calls == 2  # the stale try, then the whole batch at once
    assert [key for key, _ in queue.records] == ["g", "c"]


async def test_pipeline_publish_failure_fails_the_ack_and_releases_seqs() -> None:
    seqs = FakeSeqs()
    log = QueuedMessageLog(seqs=seqs, idempotency=FakeIdem(), queue=FakeQueue(frozenset({"c"})))
    log.start()
    ok = log.submit(chat("a", "b", "1"))
    bad = log.submit(chat("a", "c", "2"))
    assert (await ok).ack.send_seq == 1
    with pytest.raises(RuntimeError):
        await bad
    await log.stop()
    # The failed record's seqs are released: nothing stays pending forever.
    assert await seqs.exposed("c") == (1, 0)
    assert seqs.pending[("a", 1)] == {1}  # only the stored-to-be message is still pending


class GatedQueue:
    """A broker whose records of the senders in ``slow`` wait for ``gate``: at the publish
    call itself (``where="enqueue"``) or at their ack (``where="ack"``). ``hold_all`` holds
    every ack until ``gate`` opens."""

    def __init__(
        self, slow: frozenset[str] = frozenset(), where: str = "enqueue", hold_all: bool = False
    ) -> None:
        self.slow = slow
        self.where = where
        self.hold_all = hold_all
        self.gate = asyncio.Event()
        self.records: list[tuple[str, MessageRecord]] = []
        self._changed = asyncio.Condition()

    async def publish(self, key: str, value: bytes) -> Awaitable[None]:
        record = MessageRecord.decode(value)
        held = record.msg.send_id in self.slow
        if held and self.where == "enqueue":
            await self.gate.wait()
        self.records.append((key, record))
        async with self._changed:
            self._changed.notify_all()
        if self.hold_all or (held and self.where == "ack"):
            return asyncio.ensure_future(self._opened())
        return _resolved()

    async def _opened(self) -> None:
        await self.gate.wait()

    async def wait_records(self, count: int) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: len(self.records) >= count)


def _resolved() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


async def test_pipeline_batches_every_round_trip() -> None:
    """One admission of 20 submissions from 4 senders: one idempotency lookup, one seq
    allocation call, one idempotency insert."""
    seqs, idem, queue = FakeSeqs(), FakeIdem(), GatedQueue()
    log = QueuedMessageLog(seqs=seqs, idempotency=idem, queue=queue)
    log.start()
    subs = [chat(f"s{i % 4}", f"r{i % 3}", f"l{i}", f"id{i}") for i in range(20)]
    futures = [log.submit(sub) for sub in subs]
    stored = await asyncio.wait_for(asyncio.gather(*futures), 10)
    await log.stop()
    assert log.batches == 1 and seqs.calls == 1
    assert idem.lookups == [[(f"s{i % 4}", f"l{i}") for i in range(20)]]
    assert len(idem.inserts) == 1 and sorted(idem.inserts[0]) == sorted(idem.lookups[0])
    for sender in range(4):  # each sender's send_seqs follow its send order
        mine = [st.ack.send_seq for sub, st in zip(subs, stored, strict=True)]
        mine = [n for sub, n in zip(subs, mine, strict=True) if sub.msg.send_id == f"s{sender}"]
        assert mine == list(range(1, 6))
    # the queue saw the records in allocation order
    assert [r.msg.server_id for _, r in queue.records] == [f"id{i}" for i in range(20)]


@pytest.mark.parametrize("where", ["enqueue", "ack"])
async def test_a_slow_sender_does_not_hold_back_the_others(where: str) -> None:
    """The broker stalls one sender's records (at the publish call or at the ack); the
    other senders' messages, in the same batches and in later ones, are acked meanwhile,
    and the slow sender's land in order once the broker moves."""
    seqs, idem = FakeSeqs(), FakeIdem()
    queue = GatedQueue(frozenset({"slow"}), where=where)
    log = QueuedMessageLog(seqs=seqs, idempotency=idem, queue=queue)
    log.start()
    slow: list[asyncio.Future[Stored]] = []
    fast: list[asyncio.Future[Stored]] = []
    for i in range(3):  # one batch, interleaved
        slow.append(log.submit(chat("slow", "b", f"s{i}", f"slow{i}")))
        fast.append(log.submit(chat("fast", "c", f"f{i}", f"fast{i}")))
    first = await asyncio.wait_for(asyncio.gather(*fast), 10)
    later = [log.submit(chat("other", "d", f"o{i}", f"other{i}")) for i in range(3)]
    later.append(log.submit(chat("slow", "b", "s3", "slow3")))  # behind its own, only
    slow.append(later.pop())
    rest = await asyncio.wait_for(asyncio.gather(*later), 10)
    assert [st.ack.send_seq for st in first] == [1, 2, 3]
    assert [st.ack.send_seq for st in rest] == [1, 2, 3]
    assert not any(future.done() for future in slow)  # still held by the broker
    queue.gate.set()
    held = await asyncio.wait_for(asyncio.gather(*slow), 10)
    assert [st.ack.send_seq for st in held] == [1, 2, 3, 4]
    assert [r.msg.server_id for _, r in queue.records if r.msg.send_id == "slow"] == [
        f"slow{i}" for i in range(4)
    ]
    await log.stop()


class GatedSeqs(FakeSeqs):
    """Allocations wait for ``gate``; with ``fail_first`` the first one then fails."""

    def __init__(self, fail_first: bool = False) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.fail_first = fail_first

    async def allocate_many(
        self,
        requests: Sequence[tuple[str | None, Sequence[str]]],
        groups: Sequence[GroupStamp | None] = (),
    ) -> list[tuple[int, list[int]]]:
        self.entered.set()
        await self.gate.wait()
        if self.fail_first:
            self.fail_first = False
            raise DbError("the cache is unavailable")
        return await super().allocate_many(requests, groups)


async def test_a_failed_allocation_fails_its_batch_only() -> None:
    """A batch whose allocation fails (Redis down) fails its own senders only: the batch
    queued behind it is allocated, and a resend of a failed key is allocated afresh."""
    seqs, queue = GatedSeqs(fail_first=True), GatedQueue()
    log = QueuedMessageLog(seqs=seqs, idempotency=FakeIdem(), queue=queue)
    log.start()
    one = [log.submit(chat("a", "b", f"l{i}", f"first{i}")) for i in range(2)]
    await asyncio.wait_for(seqs.entered.wait(), 10)
    two = [log.submit(chat("a", "b", f"l{i}", f"second{i}")) for i in range(2, 4)]
    seqs.gate.set()
    failed = await asyncio.wait_for(asyncio.gather(*one, return_exceptions=True), 10)
    assert all(isinstance(outcome, DbError) for outcome in failed)
    stored = await asyncio.wait_for(asyncio.gather(*two), 10)
    # a resend of a key whose batch failed is looked up and allocated afresh
    again = await asyncio.wait_for(log.submit(chat("a", "b", "l0", "again")), 10)
    await log.stop()
    assert [st.ack.send_seq for st in stored] == [1, 2] and again.ack.send_seq == 3
    assert [r.msg.server_id for _, r in queue.records] == ["second2", "second3", "again"]


async def test_batches_overlap_while_the_broker_acks() -> None:
    """A later batch is admitted and published while an earlier one waits for its acks; a
    resend of a key in flight waits for the original instead of taking new seqs."""
    seqs, idem = FakeSeqs(), FakeIdem()
    queue = GatedQueue(hold_all=True)
    log = QueuedMessageLog(seqs=seqs, idempotency=idem, queue=queue)
    log.start()
    one = [log.submit(chat("a", "b", f"l{i}", f"first{i}")) for i in range(3)]
    await asyncio.wait_for(queue.wait_records(3), 10)
    two = [log.submit(chat("a", "b", f"l{i}", f"second{i}")) for i in range(3, 6)]
    resend = log.submit(chat("a", "b", "l1", "resent"))
    await asyncio.wait_for(queue.wait_records(6), 10)
    assert log.batches == 2 and not any(f.done() for f in one + two + [resend])
    queue.gate.set()
    stored = await asyncio.wait_for(asyncio.gather(*one, *two), 10)
    again = await asyncio.wait_for(resend, 10)
    await log.stop()
    assert [st.ack.send_seq for st in stored] == [1, 2, 3, 4, 5, 6]
    assert again.duplicate and again.ack == stored[1].ack
    assert len(queue.records) == 6 and seqs.cur[("a", 1)] == 6  # the resend took nothing
    assert sorted(idem.acks) == [("a", f"l{i}") for i in range(6)]


class FakeInbox:
    def __init__(self) -> None:
        self.copies: list[tuple[str, int, Msg]] = []

    async def insert_copies(self, copies: Sequence[tuple[str, int, Msg]]) -> None:
        self.copies.extend(copies)


class FakeHistory:
    def __init__(self) -> None:
        self.rows: list[Msg] = []

    async def append(self, messages: Sequence[Msg]) -> None:
        self.rows.extend(messages)


class FakeRouter:
    def __init__(self) -> None:
        self.pushes: list[Push] = []
        self.located: list[Located | None] = []  # the presence each call came with

    async def route(self, pushes: Sequence[Push], where: Located | None = None) -> None:
        self.pushes.extend(pushes)
        self.located.append(where)


def record(
    sender: str, receivers: list[tuple[str, int]], send_seq: int, group: str = ""
) -> MessageRecord:
    msg = Msg(
        send_id=sender,
        receiver_id=group or receivers[0][0],
        group_id=group,
        send_seq=send_seq,
        msg_type=1 if group else 0,
        content=b"c",
        platform=0,
    )
    return MessageRecord(
        msg=msg, receivers=receivers, store=True, outbox=True, history=True, push_self=True
    )


def test_inbox_copies_one_per_owner() -> None:
    copies = inbox_copies(record("a", [("b", 7)], 3))
    assert [(o, box, m.seq, m.send_seq) for o, box, m in copies] == [("a", 1, 0, 3), ("b", 0, 7, 3)]
    group = inbox_copies(record("a", [("b", 7), ("c", 2)], 3, group="g"))
    assert [(o, box, m.seq, m.send_seq) for o, box, m in group] == [
        ("a", 1, 0, 3),
        ("b", 0, 7, 0),
        ("c", 0, 2, 0),
    ]


async def test_storage_holds_pushes_above_the_watermark_until_it_moves() -> None:
    seqs, inbox, history, router = FakeSeqs(), FakeInbox(), FakeHistory(), FakeRouter()
    _, (s1,) = await seqs.allocate("a", ["b"])
    _, (s2,) = await seqs.allocate("a", ["b"])
    service = StorageService(inbox=inbox, history=history, seqs=seqs, router=router)
    # The record holding b's seq 2 is stored before the one holding seq 1 (other partition).
    await service.store_batch([record("a", [("b", s2)], 2)])
    assert [(u, m.seq) for u, m, _ in router.pushes if u == "b"] == []
    assert await seqs.exposed("b") == (0, 0)
    await service.store_batch([record("a", [("b", s1)], 1)])
    # The hole is filled: both go out now, in seq order.
    assert [(u, m.seq) for u, m, _ in router.pushes if u == "b"] == [("b", 1), ("b", 2)]
    assert await seqs.exposed("b") == (2, 0)
    assert len(inbox.copies) == 4 and len(history.rows) == 2


class FakePresence:
    def __init__(self, where: dict[str, dict[int, str]]) -> None:
        self.where = where
        self.lookups = 0

    async def connect(self, user_id: str, platform: int, gateway_id: str) -> str | None:
        raise NotImplementedError

    async def disconnect(self, user_id: str, platform: int, gateway_id: str) -> None:
        raise NotImplementedError

    async def refresh(self, gateway_id: str, connections: Iterable[tuple[str, int]]) -> None:
        raise NotImplementedError

    async def locate(self, user_ids: Sequence[str]) -> dict[str, dict[int, str]]:
        self.lookups += 1
        return {u: self.where[u] for u in user_ids if u in self.where}


class FakeBus:
    def __init__(self) -> None:
        self.sent: dict[str, list[bytes]] = {}

    async def publish(self, batches: Mapping[str, bytes]) -> None:
        for gateway_id, batch in batches.items():
            self.sent.setdefault(gateway_id, []).append(batch)

    async def subscribe(self, gateway_id: str) -> AsyncIterator[bytes]:
        for batch in self.sent.get(gateway_id, []):
            yield batch


async def test_router_sends_one_batch_per_holding_gateway_only() -> None:
    bus = FakeBus()
    presence = FakePresence({"b": {0: "gw1"}, "c": {0: "gw2", 1: "gw1"}, "a": {0: "gw1", 1: "gw2"}})
    router = RemotePushRouter(presence=presence, bus=bus)
    m = Msg(send_id="a", content=b"z")
    await router.route([Push("b", m), Push("c", m), Push("a", m, 0), Push("offline", m)])
    assert sorted(bus.sent) == ["gw1", "gw2"]  # never a broadcast; nobody for "offline"
    gw1 = decode_batch(bus.sent["gw1"][0])
    gw2 = decode_batch(bus.sent["gw2"][0])
    assert {e.kind for e in gw1 + gw2} == {EntryKind.DELIVER}
    assert [(e.user_id, e.platform) for e in gw1] == [("b", None), ("c", None)]
    # a's platform 0 excluded:
    assert [(e.user_id, e.platform) for e in gw2] == [("c", None), ("a", 0)]


def test_push_batch_round_trip_and_garbage() -> None:
    entries = [
        deliver("u1", b"\x01\x02"),
        deliver("u2", b"", 1),
        knock_off("u3", 0),
        end_sessions("u4"),
    ]
    assert decode_batch(encode_batch(entries)) == entries
    assert [e.kind for e in entries] == [
        EntryKind.DELIVER,
        EntryKind.DELIVER,
        EntryKind.KNOCK_OFF,
        EntryKind.END_SESSIONS,
    ]
    with pytest.raises(DecodeError):
        decode_batch(encode_batch(entries)[:-1])
    unknown = Writer()
    unknown.i64(1)
    unknown.u16(len(EntryKind))
    unknown.string("u5")
    unknown.i32(-1)
    unknown.raw(b"")
    with pytest.raises(DecodeError, match="kind"):
        decode_batch(unknown.getvalue())
    assert decode_batch(encode_batch([PushEntry(EntryKind.DELIVER, "u6")])) == [deliver("u6", b"")]


def test_record_keys() -> None:
    assert record_key(chat("a", "b", "1")) == "b"
    group = Submission(msg=Msg(send_id="a", group_id="g"), receivers=["b", "c"])
    assert record_key(group) == "g"
    with pytest.raises(DecodeError):
        MessageRecord.decode(b"{}")


def test_message_record_round_trips_binary_and_reads_the_json_form() -> None:
    """The binary record carries every field (flags, receivers with seqs, the whole Msg);
    a JSON record an earlier version left in the topic still decodes to the same record."""
    for rec in (
        record("a", [("b", 7)], 3),
        record("a", [(f"u{i}é", i) for i in range(1000)], 9, group="g"),
        MessageRecord(
            msg=Msg(send_id="a", receiver_id="b", related_msg_id="r", content=bytes(range(256))),
            receivers=[],
            store=False,
            outbox=True,
            history=False,
            push_self=False,
        ),
    ):
        data = rec.encode()
        assert data[:1] == b"\x01"
        assert MessageRecord.decode(data) == rec
        legacy = orjson.dumps(
            {
                "msg": rec.msg.to_json(),
                "receivers": rec.receivers,
                "store": rec.store,
                "outbox": rec.outbox,
                "history": rec.history,
                "push_self": rec.push_self,
            }
        )
        assert MessageRecord.decode(legacy) == rec
    data = record("a", [("b", 7)], 3).encode()
    ids = data.index(b'["b"]')
    not_a_string = data[:ids] + b"[123]" + data[ids + 5 :]
    for broken in (data[:5], data[:-1], b"\x02" + data[1:], not_a_string, b""):
        with pytest.raises(DecodeError):
            MessageRecord.decode(broken)


async def test_storage_pushes_each_users_copies_in_seq_order() -> None:
    """Two gateways allocated b's seqs 1 and 2 but published them the other way round."""
    seqs, router = FakeSeqs(), FakeRouter()
    _, (s1,) = await seqs.allocate("a", ["b"])
    _, (s2,) = await seqs.allocate("c", ["b"])
    service = StorageService(inbox=FakeInbox(), history=FakeHistory(), seqs=seqs, router=router)
    await service.store_batch([record("c", [("b", s2)], 1), record("a", [("b", s1)], 1)])
    assert [m.seq for u, m, _ in router.pushes if u == "b"] == [1, 2]


class GatedRouter(FakeRouter):
    """Routes only once ``gate`` opens; records each call."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.calls = 0

    async def route(self, pushes: Sequence[Push], where: Located | None = None) -> None:
        self.calls += 1
        self.entered.set()
        await self.gate.wait()
        await super().route(pushes, where)


async def test_background_routing_does_not_hold_back_storage_and_keeps_order() -> None:
    """A stuck push route does not stall the next batches' storage (the consumer commits
    and polls on); once it moves, the batches queued meanwhile go out in one call, each
    user's copies in seq order."""
    seqs, inbox, router = FakeSeqs(), FakeInbox(), GatedRouter()
    allocated = [await seqs.allocate("a", ["b"]) for _ in range(4)]
    service = StorageService(
        inbox=inbox, history=FakeHistory(), seqs=seqs, router=router, route_in_background=True
    )
    for n, (send_seq, (seq,)) in enumerate(allocated):  # four polls; the first route sticks
        await asyncio.wait_for(service.store_batch([record("a", [("b", seq)], send_seq)]), 10)
        if n == 0:
            await asyncio.wait_for(router.entered.wait(), 10)
    assert len(inbox.copies) == 8 and await seqs.exposed("b") == (4, 0)
    assert router.pushes == []
    router.gate.set()
    await asyncio.wait_for(service.routed(), 10)
    assert [m.seq for u, m, _ in router.pushes if u == "b"] == [1, 2, 3, 4]
    assert router.calls == 2  # the first batch, then the three queued behind it together
    await service.close()


class FakeRelease:
    """``SeqRelease`` over ``FakeSeqs`` and ``FakePresence``: the users of each call."""

    def __init__(self, seqs: FakeSeqs, presence: FakePresence) -> None:
        self.seqs = seqs
        self.presence = presence
        self.calls: list[list[str]] = []

    async def release(
        self, items: Sequence[tuple[str, int, int]]
    ) -> tuple[dict[str, tuple[int, int]], Located]:
        users = sorted({user for user, _, _ in items})
        self.calls.append(users)
        where = {u: dict(self.presence.where[u]) for u in users if u in self.presence.where}
        return await self.seqs.mark_stored(items), where


async def test_the_presence_looked_up_with_the_release_routes_the_batch() -> None:
    """With a ``SeqRelease`` a batch's seqs are released and its users located in one call,
    and the router publishes with that answer instead of asking presence again."""
    seqs, bus = FakeSeqs(), FakeBus()
    presence = FakePresence({"a": {1: "gw1"}, "b": {0: "gw2"}})  # a sends from platform 0
    release = FakeRelease(seqs, presence)
    send_seq, (seq,) = await seqs.allocate("a", ["b"])
    service = StorageService(
        inbox=FakeInbox(),
        history=FakeHistory(),
        seqs=seqs,
        router=RemotePushRouter(presence=presence, bus=bus),
        release=release,
    )
    await service.store_batch([record("a", [("b", seq)], send_seq)])
    assert release.calls == [["a", "b"]] and presence.lookups == 0
    assert await seqs.exposed("b") == (1, 0)
    assert sorted(bus.sent) == ["gw1", "gw2"]
    assert [(e.user_id, e.kind) for e in decode_batch(bus.sent["gw2"][0])] == [
        ("b", EntryKind.DELIVER)
    ]


async def test_queued_batches_route_with_the_latest_presence_of_each_user() -> None:
    """Batches queued behind a stuck route go out in one call whose presence is every
    batch's lookup, a later one's answer replacing an earlier one's for the same user."""
    seqs, router = FakeSeqs(), GatedRouter()
    presence = FakePresence({"a": {0: "gw1"}, "b": {0: "gw1"}})
    allocated = [await seqs.allocate("a", ["b"]) for _ in range(3)]
    service = StorageService(
        inbox=FakeInbox(),
        history=FakeHistory(),
        seqs=seqs,
        router=router,
        route_in_background=True,
        release=FakeRelease(seqs, presence),
    )
    for n, (send_seq, (seq,)) in enumerate(allocated):
        if n == 2:
            presence.where["b"] = {0: "gw2"}  # b moved between the second and third batch
        await asyncio.wait_for(service.store_batch([record("a", [("b", seq)], send_seq)]), 10)
        if n == 0:
            await asyncio.wait_for(router.entered.wait(), 10)
    router.gate.set()
    await asyncio.wait_for(service.routed(), 10)
    assert router.located == [
        {"a": {0: "gw1"}, "b": {0: "gw1"}},
        {"a": {0: "gw1"}, "b": {0: "gw2"}},
    ]
    assert [m.seq for u, m, _ in router.pushes if u == "b"] == [1, 2, 3]
    await service.close()


class MeetingStore:
    """An inbox and a history that each wait until the other has started: only concurrent
    writes finish."""

    def __init__(self) -> None:
        self.inbox_started = asyncio.Event()
        self.history_started = asyncio.Event()
        self.inbox_calls = 0
        self.history_calls = 0

    async def insert_copies(self, copies: Sequence[tuple[str, int, Msg]]) -> None:
        self.inbox_calls += 1
        self.inbox_started.set()
        await self.history_started.wait()

    async def append(self, messages: Sequence[Msg]) -> None:
        self.history_calls += 1
        self.history_started.set()
        await self.inbox_started.wait()


async def test_one_inbox_and_one_history_write_per_batch_made_together() -> None:
    seqs, router, store = FakeSeqs(), FakeRouter(), MeetingStore()
    records = []
    for sender in ("a", "c", "d"):
        send_seq, (seq,) = await seqs.allocate(sender, ["b"])
        records.append(record(sender, [("b", seq)], send_seq))
    service = StorageService(inbox=store, history=store, seqs=seqs, router=router)
    await asyncio.wait_for(service.store_batch(records), 10)
    assert (store.inbox_calls, store.history_calls) == (1, 1)
    assert [m.seq for u, m, _ in router.pushes if u == "b"] == [1, 2, 3]


class FailingHistory(FakeHistory):
    async def append(self, messages: Sequence[Msg]) -> None:
        raise RuntimeError("history is down")


async def test_a_failed_history_write_fails_the_batch_before_any_seq_is_released() -> None:
    seqs, router = FakeSeqs(), FakeRouter()
    _, (seq,) = await seqs.allocate("a", ["b"])
    service = StorageService(inbox=FakeInbox(), history=FailingHistory(), seqs=seqs, router=router)
    with pytest.raises(RuntimeError, match="history is down"):
        await service.store_batch([record("a", [("b", seq)], 1)])
    assert await seqs.exposed("b") == (0, 0) and router.pushes == []  # retried, not exposed


class GatedInbox(FakeInbox):
    """Holds the write of any batch holding ``owner``'s copy ``seq`` until ``gate`` opens."""

    def __init__(self, owner: str, seq: int) -> None:
        super().__init__()
        self.held = (owner, seq)
        self.gate = asyncio.Event()

    async def insert_copies(self, copies: Sequence[tuple[str, int, Msg]]) -> None:
        if any((o, m.seq) == self.held for o, box, m in copies if box == 0):
            await self.gate.wait()
        await super().insert_copies(copies)


async def test_batches_stored_at_once_release_seqs_and_push_in_order() -> None:
    """Two polls stored concurrently, the later one first: nothing of the earlier one's
    user is exposed or pushed early, and the pushes come out in seq order."""
    seqs, router = FakeSeqs(), FakeRouter()
    inbox = GatedInbox("b", 1)
    _, (s1,) = await seqs.allocate("a", ["b"])
    _, (s2,) = await seqs.allocate("a", ["b"])
    service = StorageService(inbox=inbox, history=FakeHistory(), seqs=seqs, router=router)
    first = asyncio.ensure_future(service.store_batch([record("a", [("b", s1)], 1)]))
    await asyncio.wait_for(service.store_batch([record("a", [("b", s2)], 2)]), 10)
    assert not first.done() and await seqs.exposed("b") == (0, 0)
    assert [m.seq for u, m, _ in router.pushes if u == "b"] == []
    inbox.gate.set()
    await asyncio.wait_for(first, 10)
    assert [m.seq for u, m, _ in router.pushes if u == "b"] == [1, 2]
    assert await seqs.exposed("b") == (2, 0)


async def test_a_batch_that_cannot_be_encoded_releases_its_seqs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seqs, queue = FakeSeqs(), GatedQueue()
    log = QueuedMessageLog(seqs=seqs, idempotency=FakeIdem(), queue=queue)
    log.start()

    def broken(self: MessageRecord) -> bytes:
        raise ValueError("cannot encode")

    monkeypatch.setattr(MessageRecord, "encode", broken)
    futures = [log.submit(chat("a", "b", f"l{i}")) for i in range(3)]
    results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 10)
    assert all(isinstance(r, ValueError) for r in results) and queue.records == []
    assert await seqs.exposed("b") == (3, 0) and await seqs.exposed("a") == (0, 3)
    await log.stop()
