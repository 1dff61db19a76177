"""The msg-server's job: store a batch of accepted records, then route their pushes.

Records carry their seqs already, and every write is idempotent, so a batch that is
replayed after a crash (offsets are committed only after ``store_batch`` returns) stores
nothing twice (I2) and loses nothing (I1).
"""

from __future__ import annotations

from collections.abc import Sequence

from sandcat.domain_records import MessageRecord
from sandcat.ports import HistoryStore, InboxWriter, SeqAllocator
from sandcat.protocol.msg import Msg
from sandcat.services.messages import Push, PushRouter, plan_pushes


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


class StorageService:
    def __init__(
        self, *, inbox: InboxWriter, history: HistoryStore, seqs: SeqAllocator, router: PushRouter
    ) -> None:
        self._inbox = inbox
        self._history = history
        self._seqs = seqs
        self._router = router

    async def store_batch(self, records: Sequence[MessageRecord]) -> None:
        """Durably store every record, release their seqs, then push (best effort)."""
        copies = [copy for record in records for copy in inbox_copies(record)]
        if copies:
            await self._inbox.insert_copies(copies)
        history = [record.msg for record in records if record.history]
        if history:
            await self._history.append(history)
        triples: list[tuple[str, int, int]] = []
        for record in records:
            triples.extend((uid, seq, 0) for uid, seq in record.receivers)
            if record.msg.send_seq:
                triples.append((record.msg.send_id, 0, record.msg.send_seq))
        exposed = await self._seqs.mark_stored(triples) if triples else {}
        pushes: list[Push] = []
        for record in records:
            pushes.extend(
                plan_pushes(
                    record.msg,
                    record.receivers,
                    record.msg.send_seq,
                    outbox=record.outbox,
                    push_self=record.push_self,
                    exposed=exposed,
                )
            )
        if pushes:
            # A batch holds records in publish order, which is not each user's seq order when
            # several processes allocate for the same user: push every user's copies in order.
            pushes.sort(key=lambda push: (push[0], push[1].seq, push[1].send_seq))
            await self._router.route(pushes)
