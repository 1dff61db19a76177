"""Domain records shared by services and adapters (no I/O here)."""

from __future__ import annotations

from dataclasses import dataclass, field

from sandcat.protocol.msg import Msg


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
