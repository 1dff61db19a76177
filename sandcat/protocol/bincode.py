"""bincode 1.x (little-endian, fixed-width integers, u64 length prefixes): the reference codec.

This pure-Python module is the specification of the wire format. The compiled framing
twin (``native/cython``) must produce byte-identical output and raise the same errors.
"""

from __future__ import annotations

import struct

from sandcat.errors import DecodeError
from sandcat.protocol.msg import Msg

_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_U64 = struct.Struct("<Q")
_U16 = struct.Struct("<H")

#: No single string, byte or list length inside one frame may exceed this.
MAX_LEN = 1 << 26


class Writer:
    """Appends bincode values to a growing buffer."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def i32(self, value: int) -> None:
        self.buf += _I32.pack(value)

    def i64(self, value: int) -> None:
        self.buf += _I64.pack(value)

    def u16(self, value: int) -> None:
        self.buf += _U16.pack(value)

    def boolean(self, value: bool) -> None:
        self.buf.append(1 if value else 0)

    def raw(self, value: bytes) -> None:
        self.buf += _U64.pack(len(value))
        self.buf += value

    def string(self, value: str) -> None:
        self.raw(value.encode())

    def opt_string(self, value: str | None) -> None:
        if value is None:
            self.buf.append(0)
        else:
            self.buf.append(1)
            self.string(value)

    def opt_i64(self, value: int | None) -> None:
        if value is None:
            self.buf.append(0)
        else:
            self.buf.append(1)
            self.i64(value)

    def strings(self, values: list[str]) -> None:
        self.buf += _U64.pack(len(values))
        for value in values:
            self.string(value)

    def getvalue(self) -> bytes:
        return bytes(self.buf)


class Reader:
    """Reads bincode values; every malformed input raises :class:`DecodeError`."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, size: int) -> bytes:
        end = self.pos + size
        if end > len(self.data):
            raise DecodeError("truncated bincode input")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def i32(self) -> int:
        value: int = _I32.unpack(self._take(4))[0]
        return value

    def i64(self) -> int:
        value: int = _I64.unpack(self._take(8))[0]
        return value

    def u16(self) -> int:
        value: int = _U16.unpack(self._take(2))[0]
        return value

    def length(self) -> int:
        size: int = _U64.unpack(self._take(8))[0]
        if size > MAX_LEN or size > len(self.data) - self.pos:
            raise DecodeError("bincode length prefix exceeds the input")
        return size

    def boolean(self) -> bool:
        byte = self._take(1)[0]
        if byte > 1:
            raise DecodeError("invalid bincode bool")
        return byte == 1

    def tag(self) -> bool:
        byte = self._take(1)[0]
        if byte > 1:
            raise DecodeError("invalid bincode Option tag")
        return byte == 1

    def raw(self) -> bytes:
        return self._take(self.length())

    def string(self) -> str:
        try:
            return self.raw().decode()
        except UnicodeDecodeError as exc:
            raise DecodeError("invalid UTF-8 in bincode string") from exc

    def opt_string(self) -> str | None:
        return self.string() if self.tag() else None

    def opt_i64(self) -> int | None:
        return self.i64() if self.tag() else None

    def count(self, min_item_size: int) -> int:
        size: int = _U64.unpack(self._take(8))[0]
        if size * min_item_size > len(self.data) - self.pos:
            raise DecodeError("bincode sequence length exceeds the input")
        return size

    def i64s(self) -> list[int]:
        return [self.i64() for _ in range(self.count(8))]

    def finish(self) -> None:
        if self.pos != len(self.data):
            raise DecodeError("trailing bytes after bincode value")


def encode_msg(msg: Msg) -> bytes:
    """bincode(``Msg``): the 17 fields in declaration order."""
    w = Writer()
    w.string(msg.send_id)
    w.string(msg.receiver_id)
    w.string(msg.local_id)
    w.string(msg.server_id)
    w.i64(msg.create_time)
    w.i64(msg.send_time)
    w.i64(msg.seq)
    w.i32(msg.msg_type)
    w.i32(msg.content_type)
    w.raw(msg.content)
    w.boolean(msg.is_read)
    w.string(msg.group_id)
    w.i32(msg.platform)
    w.string(msg.avatar)
    w.string(msg.nickname)
    w.opt_string(msg.related_msg_id)
    w.i64(msg.send_seq)
    return w.getvalue()


def decode_msg(data: bytes) -> Msg:
    """Parse one bincode ``Msg``; the frame must hold exactly one."""
    r = Reader(bytes(data))
    msg = Msg(
        send_id=r.string(),
        receiver_id=r.string(),
        local_id=r.string(),
        server_id=r.string(),
        create_time=r.i64(),
        send_time=r.i64(),
        seq=r.i64(),
        msg_type=r.i32(),
        content_type=r.i32(),
        content=r.raw(),
        is_read=r.boolean(),
        group_id=r.string(),
        platform=r.i32(),
        avatar=r.string(),
        nickname=r.string(),
        related_msg_id=r.opt_string(),
        send_seq=r.i64(),
    )
    r.finish()
    return msg
