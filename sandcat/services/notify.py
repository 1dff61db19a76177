"""Friend and group notifications: stored, sequenced messages published through the message log.

A notification is an ordinary ``Submission``: each receiver gets a receive ``seq``, an inbox
copy and a push once it is durable, so an offline receiver pulls it like any message.
Callers submit only after the change it announces is durable (side effects follow
durability), and submission is synchronous so its place in the log is fixed at call time.
"""

from __future__ import annotations

import asyncio

from sandcat.domain import Stored, Submission
from sandcat.ids import nanoid
from sandcat.ports import Clock, MessageLog
from sandcat.protocol.msg import Msg, MsgType


class Notifier:
    def __init__(self, *, log: MessageLog, clock: Clock) -> None:
        self._log = log
        self._clock = clock

    def _submit(
        self,
        kind: MsgType,
        *,
        sender: str,
        receiver_id: str,
        receivers: list[str],
        group_id: str,
        content: bytes,
        outbox: bool,
        members: frozenset[str] | None = None,
    ) -> asyncio.Future[Stored]:
        now = self._clock.now_ms()
        msg = Msg(
            send_id=sender,
            receiver_id=receiver_id,
            local_id=nanoid(),
            server_id=nanoid(),
            create_time=now,
            send_time=now,
            msg_type=kind,
            content=content,
            group_id=group_id,
        )
        # The HTTP caller's platform is unknown, so no device of the actor gets a push:
        # with ``outbox`` the actor's devices find the copy through their send_seq.
        return self._log.submit(
            Submission(
                msg=msg, receivers=receivers, outbox=outbox, push_self=False, members=members
            )
        )

    def friend_event(
        self, kind: MsgType, *, sender: str, receiver: str, content: bytes = b""
    ) -> asyncio.Future[Stored]:
        """Types 10, 11, 13 to one user. No outbox copy: the web client would read its own
        request or deletion as one addressed to it, and friend lists sync by time anyway."""
        return self._submit(
            kind,
            sender=sender,
            receiver_id=receiver,
            receivers=[receiver],
            group_id="",
            content=content,
            outbox=False,
        )

    def group_event(
        self,
        kind: MsgType,
        *,
        actor: str,
        group_id: str,
        receivers: list[str],
        content: bytes = b"",
        members: frozenset[str] | None = None,
    ) -> asyncio.Future[Stored]:
        """Types 2-6 and 9 to ``receivers``; the actor's outbox keeps a copy (one send_seq),
        so the actor's other devices learn of the change through their next pull.
        ``members``: the group's members from this notice on, for a membership change."""
        return self._submit(
            kind,
            sender=actor,
            receiver_id=group_id,
            receivers=receivers,
            group_id=group_id,
            content=content,
            outbox=True,
            members=members,
        )
