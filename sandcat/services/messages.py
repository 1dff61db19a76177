"""Accepting messages from a sender, and routing durable ones to their recipients."""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from sandcat import _native
from sandcat.config import LimitsConfig
from sandcat.domain import Stored, Submission, idempotency_key
from sandcat.errors import DecodeError, Forbidden, NotFound, SandcatError
from sandcat.ids import nanoid
from sandcat.log import get_logger
from sandcat.ports import (
    Clock,
    ConversationReads,
    Delivery,
    FriendGate,
    FriendshipReader,
    GroupGate,
    InboxStore,
    MessageLog,
    Push,
    PushRouter,
    UserStore,
)
from sandcat.protocol.msg import NEVER_PUSHED, ContentType, Msg, MsgType

log = get_logger(__name__)

#: Stored one-to-one types: text/media and the call-log events (docs/protocol.md).
STORED_SINGLE = frozenset({0, 15, 17, 18, 20})
#: Relayed only: nothing stored, no seq consumed (21 included, unlike the original).
RELAY_ONLY = frozenset({14, 16, 19, 21, 22})
#: Call signalling: subject to the friendship policy like chat messages.
CALL_TYPES = frozenset(range(14, 23))


class MessageRefused(SandcatError):
    """A client message that is answered with an error ack; the connection stays open."""

    kind = "BadRequest"
    status = 400


def ack_for(msg: Msg, stored: Stored) -> Msg:
    return msg.copy(
        msg_type=MsgType.MSG_REC_RESP,
        server_id=stored.ack.server_id,
        send_time=stored.ack.send_time,
        send_seq=stored.ack.send_seq,
        seq=0,
        content=b"",
    )


def _text_fields(msg: Msg) -> str:
    """The ``Msg``'s client-set text fields, joined (``content`` is bytes, stored as such)."""
    return "".join(
        (
            msg.receiver_id,
            msg.local_id,
            msg.group_id,
            msg.avatar,
            msg.nickname,
            msg.related_msg_id or "",
        )
    )


def error_ack(msg: Msg | None, reason: str) -> Msg:
    base = msg if msg is not None else Msg()
    return base.copy(
        msg_type=MsgType.MSG_REC_RESP,
        content_type=ContentType.ERROR,
        content=reason.encode(),
        server_id="",
        seq=0,
        send_seq=0,
    )


class MessageService:
    """Validates a client message, makes it durable through the message log, builds the ack."""

    def __init__(
        self,
        *,
        log: MessageLog,
        inbox: InboxStore,
        users: UserStore,
        relay: PushRouter,
        clock: Clock,
        limits: LimitsConfig,
        allow_strangers: bool,
        friends: FriendGate,
        groups: GroupGate,
        conversations: ConversationReads,
        friendships: FriendshipReader,
    ) -> None:
        """``conversations``: a Read frame also marks its conversations read;
        ``friendships``: a FriendshipReceived frame marks a friend request read."""
        self._log = log
        self._inbox = inbox
        self._users = users
        self._relay = relay
        self._clock = clock
        self._limits = limits
        self._allow_strangers = allow_strangers
        self._friends = friends
        self._groups = groups
        self._conversations = conversations
        self._friendships = friendships
        self._known_users: OrderedDict[str, None] = OrderedDict()

    async def _user_exists(self, user_id: str) -> bool:
        if user_id in self._known_users:
            self._known_users.move_to_end(user_id)
            return True
        if await self._users.get_user(user_id) is None:
            return False
        self._known_users[user_id] = None
        if len(self._known_users) > 100_000:
            self._known_users.popitem(last=False)
        return True

    async def _check_peer(self, sender: str, receiver: str) -> None:
        if not receiver:
            raise MessageRefused("receiver_id is empty")
        if not await self._user_exists(receiver):
            raise MessageRefused("no such receiver")
        if self._allow_strangers or receiver == sender:
            return
        if not await self._friends.are_friends(sender, receiver):
            raise MessageRefused("the receiver is not your friend")

    async def accept(self, user_id: str, msg: Msg) -> Msg | asyncio.Future[Stored]:
        """Validate ``msg`` from connection user ``user_id``: its ack when that is known
        now, else the future of its storage (the ack is ``ack_for(msg, stored)``).

        Raises :class:`MessageRefused` for a message that gets an error ack now.
        Submission order is kept: call this sequentially per connection.
        """
        if not msg.send_id:
            msg.send_id = user_id
        elif msg.send_id != user_id:
            raise MessageRefused("send_id is not the connection's user")
        if len(msg.content) > self._limits.text_bytes:
            raise MessageRefused(f"content is larger than {self._limits.text_bytes} bytes")
        if "\x00" in _text_fields(msg):
            # PostgreSQL cannot store it: refused alike in both modes, not left to fail
            # the store with an ack that says to resend.
            raise MessageRefused("a text field holds a NUL character (U+0000)")
        kind = msg.msg_type
        msg.server_id = nanoid()
        msg.send_time = self._clock.now_ms()
        msg.seq = 0
        msg.send_seq = 0
        msg.is_read = False
        if kind in STORED_SINGLE:
            await self._check_peer(user_id, msg.receiver_id)
            msg.group_id = ""
            submission = Submission(
                msg=msg,
                receivers=[msg.receiver_id],
                store=True,
                outbox=True,
                history=kind == MsgType.SINGLE_MSG,
                idem_key=(
                    idempotency_key(user_id, msg.receiver_id, msg.local_id)
                    if msg.local_id
                    else None
                ),
            )
            return self._log.submit(submission)
        if kind == MsgType.GROUP_MSG:
            group_id = msg.group_id or msg.receiver_id
            gate = self._groups
            receivers, epoch = await gate.recipients(group_id, user_id)
            msg.group_id = group_id
            msg.receiver_id = group_id
            submission = Submission(
                msg=msg,
                receivers=receivers,
                store=True,
                outbox=True,
                history=True,
                idem_key=(
                    idempotency_key(user_id, msg.receiver_id, msg.local_id)
                    if msg.local_id
                    else None
                ),
                epoch=epoch,
                regroup=lambda: gate.recipients(group_id, user_id, again=True),
            )
            return self._log.submit(submission)
        if kind in RELAY_ONLY:
            await self._check_peer(user_id, msg.receiver_id)
            await self._relay.route([Push(msg.receiver_id, msg)])
            return msg.copy(msg_type=MsgType.MSG_REC_RESP, content=b"")
        if kind == MsgType.READ:
            try:
                payload = _native.decode_read(msg.content)
            except DecodeError as exc:
                raise MessageRefused("malformed Read payload") from exc
            if len(payload.msg_seq) > 10_000:
                raise MessageRefused("too many seqs in one Read")
            await self._inbox.mark_read(user_id, payload.msg_seq)
            await self._conversations.read_seqs(user_id, payload.msg_seq)
            return msg.copy(msg_type=MsgType.MSG_REC_RESP, content=b"")
        if kind == MsgType.FRIENDSHIP_RECEIVED:  # content: the fs_id (docs/protocol.md)
            try:
                fs_id = msg.content.decode()
                if "\x00" in fs_id:  # no request's id; PostgreSQL would refuse the lookup
                    raise NotFound("no such friend request")
                await self._friendships.mark_read(user_id, fs_id)
            except (UnicodeDecodeError, NotFound, Forbidden) as exc:
                raise MessageRefused(f"friend request not marked read: {exc}") from exc
            return msg.copy(msg_type=MsgType.MSG_REC_RESP, content=b"")
        raise MessageRefused(f"message type {kind} cannot be sent by a client")


def plan_pushes(
    msg: Msg,
    receiver_seqs: list[tuple[str, int]],
    send_seq: int,
    *,
    outbox: bool,
    push_self: bool,
) -> list[Push]:
    """Who gets which copy of a durable message.

    Receivers get their own ``seq`` (and the sender's ``send_seq`` for one-to-one, 0 for a
    group); the sender's other platforms get the copy with ``seq = 0`` and the ack copy.
    (The distributed msg-server then holds copies above a user's watermark: docs/distributed.md.)
    """
    if msg.msg_type in NEVER_PUSHED:
        return []
    pushes: list[Push] = []
    other = 0 if msg.group_id else send_seq
    for receiver, seq in receiver_seqs:
        pushes.append(Push(receiver, msg.copy(seq=seq, send_seq=other)))
    if push_self and outbox and msg.send_id and send_seq > 0:
        pushes.append(Push(msg.send_id, msg.copy(seq=0, send_seq=send_seq), msg.platform))
        ack = msg.copy(msg_type=MsgType.MSG_REC_RESP, seq=0, send_seq=send_seq, content=b"")
        pushes.append(Push(msg.send_id, ack, msg.platform))
    return pushes


class DeliveryService:
    """Pushes a durable message to its recipients and to the sender's other devices."""

    def __init__(self, *, delivery: Delivery) -> None:
        self._delivery = delivery

    def on_stored(self, submission: Submission, stored: Stored) -> None:
        msg = submission.msg
        if msg.group_id and len(stored.receiver_seqs) > 1 and msg.msg_type not in NEVER_PUSHED:
            # Group fan-out: encode the copy once, with each member's seq patched in.
            template = msg.copy(send_seq=0)
            frames = _native.encode_fanout(template, [seq for _, seq in stored.receiver_seqs])
            for (receiver, _), frame in zip(stored.receiver_seqs, frames, strict=True):
                self._delivery.deliver_frame(receiver, frame, None)
            receivers: list[tuple[str, int]] = []
        else:
            receivers = stored.receiver_seqs
        for user_id, copy, exclude in plan_pushes(
            msg,
            receivers,
            stored.ack.send_seq,
            outbox=submission.outbox,
            # The sender's other device gets the echo and the ack copy; with none online
            # here, neither copy is built.
            push_self=submission.push_self
            and self._delivery.online_elsewhere(msg.send_id, msg.platform),
        ):
            self._delivery.deliver(user_id, copy, exclude_platform=exclude)
