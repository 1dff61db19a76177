"""Domain records shared by services and adapters (no I/O here)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple

from sandcat.protocol.msg import Msg


class FriendStatus(IntEnum):
    """A friend request's or friendship's status, as stored and sent (``friendships.status``,
    ``friends.status``; 3, the original's Blacked, is never set)."""

    PENDING = 0
    ACCEPTED = 1
    REJECTED = 2
    DELETED = 4


class GroupRole(IntEnum):
    """A member's role in a group, as stored and sent (``group_members.role``)."""

    OWNER = 0
    ADMIN = 1
    MEMBER = 2


@dataclass(slots=True)
class UserRecord:
    id: str
    name: str
    account: str
    password: str
    salt: str
    avatar: str
    gender: str = ""
    age: int = 0
    phone: str | None = None
    email: str | None = None
    address: str | None = None
    region: str | None = None
    birthday: int | None = None
    signature: str = ""
    create_time: int = 0
    update_time: int = 0
    is_delete: bool = False
    #: Set by an operator (``sandcat users disable``): the user cannot log in.
    disabled: bool = False


@dataclass(slots=True)
class UserChanges:
    """Fields of ``PUT /user``; ``None`` (or an empty string) leaves a field unchanged."""

    name: str | None = None
    avatar: str | None = None
    gender: str | None = None
    phone: str | None = None
    email: str | None = None
    address: str | None = None
    region: str | None = None
    birthday: int | None = None
    signature: str | None = None


@dataclass(slots=True, frozen=True)
class Ack:
    """What the sender learns once a message is durable."""

    server_id: str
    send_time: int
    send_seq: int


@dataclass(slots=True)
class Submission:
    """A message accepted for storage and delivery.

    ``receivers`` get a receive ``seq`` each and an inbox copy when ``store`` is set;
    ``outbox`` gives the sender a new ``send_seq`` and an outbox copy; ``history`` also
    appends the message to the history table. ``idem_key`` is (send_id, local_id).
    """

    msg: Msg
    receivers: list[str]
    store: bool = True
    outbox: bool = True
    history: bool = False
    idem_key: tuple[str, str] | None = None
    push_self: bool = True
    #: A group message: the membership epoch its ``receivers`` were read at. The distributed
    #: allocation refuses it (``StaleMembership``) once the group's epoch has moved on.
    epoch: int | None = None
    #: A group message: reads its receivers and epoch again after ``StaleMembership``
    #: (raises ``MessageRefused`` when the sender may no longer post).
    regroup: Callable[[], Awaitable[tuple[list[str], int]]] | None = None
    #: A membership change's notice: the group's members from now on (empty: dismissed). The
    #: distributed allocation installs them and moves the epoch with the notice's seqs.
    members: frozenset[str] | None = None


#: A batch allocation's view of one request's group: ``(group_id, epoch, members)``. With
#: ``epoch`` the request is allocated only while the group is at that epoch; with
#: ``members`` it installs them (empty: dismissed) and moves the epoch on.
GroupStamp = tuple[str, int | None, frozenset[str] | None]


class UserSeqs(NamedTuple):
    """The seqs one message took from one user's counters (0: none of that kind)."""

    user_id: str
    seq: int
    send_seq: int


def taken_seqs(
    sender: str, receiver_seqs: Sequence[tuple[str, int]], send_seq: int
) -> list[UserSeqs]:
    """Every seq a message holds: each receiver's ``seq``, and the sender's ``send_seq``."""
    taken = [UserSeqs(user_id, seq, 0) for user_id, seq in receiver_seqs]
    if send_seq:
        taken.append(UserSeqs(sender, 0, send_seq))
    return taken


class StaleMembership(Exception):
    """A batch allocation found group messages read at an epoch their group has left
    (``indices`` of the requests); nothing was allocated."""

    def __init__(self, indices: list[int]) -> None:
        super().__init__(f"stale membership for requests {indices}")
        self.indices = indices


@dataclass(slots=True)
class Stored:
    """The outcome of one submission: the ack, and each receiver's new seq."""

    ack: Ack
    duplicate: bool
    receiver_seqs: list[tuple[str, int]] = field(default_factory=list)


#: Between the conversation and the ``local_id`` in an idempotency key (ids never hold it).
_KEY_SEPARATOR = "\x1f"


def idempotency_key(send_id: str, receiver_id: str, local_id: str) -> tuple[str, str]:
    """What makes a resend a duplicate: the sender and its ``local_id`` *within the
    conversation* (the receiver, or the group) it went to. The same ``local_id`` sent to
    another receiver is another message, stored and acked as such."""
    return send_id, f"{receiver_id}{_KEY_SEPARATOR}{local_id}"


def idempotency_parts(key: tuple[str, str]) -> tuple[str, str, str]:
    """``(send_id, receiver_id, local_id)`` of an ``idempotency_key``."""
    receiver_id, _, local_id = key[1].partition(_KEY_SEPARATOR)
    return key[0], receiver_id, local_id


def conversation_id(user_id: str, peer_id: str, *, is_group: bool) -> str:
    """The stored key of ``user_id``'s conversation with ``peer_id``: the group id, or the
    two user ids in byte order joined by ':' (nanoids never hold it), the same for both."""
    if is_group:
        return peer_id
    return f"{user_id}:{peer_id}" if user_id < peer_id else f"{peer_id}:{user_id}"
