"""A fast bincode-1 codec for the sandcat ``Msg`` (docs/protocol.md), written for the generator.

It shares no code with ``sandcat.protocol`` on purpose: the generator must be able to drive
any sandcat-compatible server, and a bug in the server's codec must not be mirrored here.
Strings and bytes carry a u64 little-endian length; integers are fixed-width little-endian;
``related_msg_id`` is an ``Option<String>`` (one tag byte).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

_U64 = struct.Struct("<Q")
_MIDDLE = struct.Struct("<qqqii")  # create_time, send_time, seq, msg_type, content_type
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")

MSG_SINGLE = 0
MSG_GROUP = 1
MSG_ACK = 24
CONTENT_TEXT = 1
CONTENT_ERROR = 9


class Msg(NamedTuple):
    """The 17 fields of ``Msg`` in declaration order."""

    send_id: str = ""
    receiver_id: str = ""
    local_id: str = ""
    server_id: str = ""
    create_time: int = 0
    send_time: int = 0
    seq: int = 0
    msg_type: int = 0
    content_type: int = 0
    content: bytes = b""
    is_read: bool = False
    group_id: str = ""
    platform: int = 0
    avatar: str = ""
    nickname: str = ""
    related_msg_id: str | None = None
    send_seq: int = 0


def _s(value: str) -> bytes:
    raw = value.encode()
    return _U64.pack(len(raw)) + raw


def encode(m: Msg) -> bytes:
    related = b"\x00" if m.related_msg_id is None else b"\x01" + _s(m.related_msg_id)
    return b"".join(
        (
            _s(m.send_id),
            _s(m.receiver_id),
            _s(m.local_id),
            _s(m.server_id),
            _MIDDLE.pack(m.create_time, m.send_time, m.seq, m.msg_type, m.content_type),
            _U64.pack(len(m.content)),
            m.content,
            b"\x01" if m.is_read else b"\x00",
            _s(m.group_id),
            _I32.pack(m.platform),
            _s(m.avatar),
            _s(m.nickname),
            related,
            _I64.pack(m.send_seq),
        )
    )


class DecodeError(ValueError):
    """The frame is not one well-formed bincode ``Msg``."""


def _str(data: bytes, pos: int) -> tuple[str, int]:
    (size,) = _U64.unpack_from(data, pos)
    pos += 8
    end = pos + size
    if end > len(data):
        raise DecodeError("truncated string")
    return data[pos:end].decode(), end


def decode(data: bytes) -> Msg:
    try:
        send_id, pos = _str(data, 0)
        receiver_id, pos = _str(data, pos)
        local_id, pos = _str(data, pos)
        server_id, pos = _str(data, pos)
        create_time, send_time, seq, msg_type, content_type = _MIDDLE.unpack_from(data, pos)
        pos += _MIDDLE.size
        (size,) = _U64.unpack_from(data, pos)
        pos += 8
        content = data[pos : pos + size]
        pos += size
        if len(content) != size or pos >= len(data):
            raise DecodeError("truncated content")
        is_read = data[pos] == 1
        group_id, pos = _str(data, pos + 1)
        (platform,) = _I32.unpack_from(data, pos)
        avatar, pos = _str(data, pos + 4)
        nickname, pos = _str(data, pos)
        related: str | None = None
        if pos >= len(data):
            raise DecodeError("truncated option tag")
        if data[pos] == 1:
            related, pos = _str(data, pos + 1)
        else:
            pos += 1
        (send_seq,) = _I64.unpack_from(data, pos)
        pos += 8
    except (struct.error, UnicodeDecodeError) as exc:
        raise DecodeError(str(exc)) from exc
    if pos != len(data):
        raise DecodeError("trailing bytes")
    return Msg(
        send_id,
        receiver_id,
        local_id,
        server_id,
        create_time,
        send_time,
        seq,
        msg_type,
        content_type,
        content,
        is_read,
        group_id,
        platform,
        avatar,
        nickname,
        related,
        send_seq,
    )
