"""bincode ``content`` payloads of notifications and client events (protocol §3.4)."""

from __future__ import annotations

from dataclasses import dataclass

from sandcat.protocol.bincode import Reader, Writer


@dataclass(slots=True)
class ReadPayload:
    """Type 23 Read: ``{msg_seq: Vec<i64>, user_id: String}``."""

    msg_seq: list[int]
    user_id: str

    def encode(self) -> bytes:
        w = Writer()
        w.i64s(self.msg_seq)
        w.string(self.user_id)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> ReadPayload:
        r = Reader(data)
        value = cls(msg_seq=r.i64s(), user_id=r.string())
        r.finish()
        return value


def encode_strings(values: list[str]) -> bytes:
    """bincode ``Vec<String>`` (types 3 and 5)."""
    w = Writer()
    w.strings(values)
    return w.getvalue()


def decode_strings(data: bytes) -> list[str]:
    r = Reader(data)
    values = r.strings()
    r.finish()
    return values
