"""The push batch: what one process sends one gateway over the push bus (``PushBus``).

Internal, bincode-style: the entry count (i64), then per entry its kind (u16), the user
id (string), a platform (i32, -1 for none) and a frame (bytes, empty unless delivered).
Each entry says what the gateway does with the user's connections there:

- ``DELIVER``: queue the encoded ``Msg`` frame on every connection but ``platform``'s
  (the sender's own device), or on all of them when it is None;
- ``KNOCK_OFF``: close the connection on ``platform`` with 4001 (the user opened it again
  on another gateway);
- ``END_SESSIONS``: close every connection with 4002 (logout, password change);
- ``EVENT``: write the JSON event in ``frame`` on every v2 connection of the user
  (``sandcat.protocol.events``);
- ``END_DEVICE``: close with 4002 the connections the device whose id is ``frame`` (UTF-8)
  opened (remote logout, ``sandcat.services.devices``).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import NamedTuple

from sandcat.errors import DecodeError
from sandcat.protocol.bincode import Reader, Writer


class EntryKind(IntEnum):
    DELIVER = 0
    KNOCK_OFF = 1
    END_SESSIONS = 2
    EVENT = 3
    END_DEVICE = 4


_KINDS = tuple(EntryKind)
#: kind (2) + user id length (8) + platform (4) + frame length (8).
_MIN_ENTRY_BYTES = 22


class PushEntry(NamedTuple):
    kind: EntryKind
    user_id: str
    #: ``DELIVER``: the platform left out, if any; ``KNOCK_OFF``: the platform closed.
    platform: int | None = None
    frame: bytes = b""


def deliver(user_id: str, frame: bytes, exclude_platform: int | None = None) -> PushEntry:
    return PushEntry(EntryKind.DELIVER, user_id, exclude_platform, frame)


def knock_off(user_id: str, platform: int) -> PushEntry:
    return PushEntry(EntryKind.KNOCK_OFF, user_id, platform)


def end_sessions(user_id: str) -> PushEntry:
    return PushEntry(EntryKind.END_SESSIONS, user_id)


def event(user_id: str, payload: bytes) -> PushEntry:
    return PushEntry(EntryKind.EVENT, user_id, None, payload)


def end_device(user_id: str, device_id: str) -> PushEntry:
    return PushEntry(EntryKind.END_DEVICE, user_id, None, device_id.encode())


def encode_batch(entries: Sequence[PushEntry]) -> bytes:
    w = Writer()
    w.i64(len(entries))
    for kind, user_id, platform, frame in entries:
        w.u16(kind)
        w.string(user_id)
        w.i32(-1 if platform is None else platform)
        w.raw(frame)
    return w.getvalue()


def decode_batch(data: bytes) -> list[PushEntry]:
    """Raises ``DecodeError`` on anything but a whole batch of known entry kinds."""
    r = Reader(data)
    entries: list[PushEntry] = []
    for _ in range(r.count(_MIN_ENTRY_BYTES)):
        code = r.u16()
        if code >= len(_KINDS):
            raise DecodeError(f"unknown push entry kind {code}")
        user_id = r.string()
        platform = r.i32()
        entries.append(
            PushEntry(_KINDS[code], user_id, None if platform < 0 else platform, r.raw())
        )
    r.finish()
    return entries
