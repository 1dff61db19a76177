"""The record a message travels in between the accepting process and the msg-server.

Binary: a format byte, the storage flags, the receivers with their allocated seqs, then the
``Msg`` in its bincode form (the gateway frame's encoding, compiled when the native framing
module is built). Seqs are allocated before the record is produced, so a msg-server only
stores and routes: replaying a record is idempotent.

Layout (little-endian): ``0x01`` | flags (u8: store, outbox, history, push_self) |
receiver count ``n`` (u32) | length of the id list in bytes (u32) | ``n`` seqs (i64) | the
``n`` receiver ids as a JSON array of strings (orjson: 1,000 ids in tens of microseconds)
| bincode ``Msg`` (the rest). Records written by earlier
versions (JSON, first byte ``{``) are still read, so a topic holding them drains after an
upgrade.
"""

from __future__ import annotations

import struct
import sys
from array import array
from dataclasses import dataclass
from typing import Any

import orjson

from sandcat import _native
from sandcat.errors import DecodeError
from sandcat.protocol.msg import Msg

#: The first byte of a binary record (a JSON record starts with ``{``).
BINARY = 1
_HEAD = struct.Struct("<BBII")
_STORE, _OUTBOX, _HISTORY, _PUSH_SELF = 1, 2, 4, 8
_BIG_ENDIAN = sys.byteorder == "big"


@dataclass(slots=True)
class MessageRecord:
    msg: Msg  # carries the sender's send_seq (0 when it has none)
    receivers: list[tuple[str, int]]
    store: bool
    outbox: bool
    history: bool
    push_self: bool

    def encode(self) -> bytes:
        flags = (
            self.store * _STORE
            | self.outbox * _OUTBOX
            | self.history * _HISTORY
            | self.push_self * _PUSH_SELF
        )
        ids = orjson.dumps([uid for uid, _ in self.receivers])
        seqs = array("q", [seq for _, seq in self.receivers])
        if _BIG_ENDIAN:
            seqs.byteswap()
        return b"".join(
            (
                _HEAD.pack(BINARY, flags, len(seqs), len(ids)),
                seqs.tobytes(),
                ids,
                _native.encode_msg(self.msg),
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> MessageRecord:
        if data[:1] == b"{":
            return cls._decode_json(data)
        try:
            tag, flags, count, size = _HEAD.unpack_from(data)
            if tag != BINARY:
                raise DecodeError(f"unknown message record format {tag}")
            at = _HEAD.size + 8 * count
            seqs = array("q", data[_HEAD.size : at])
            if _BIG_ENDIAN:
                seqs.byteswap()
            ids = orjson.loads(data[at : at + size])
            if len(seqs) != count or not isinstance(ids, list) or len(ids) != count:
                raise DecodeError("truncated message record")
            if not all(isinstance(uid, str) for uid in ids):
                raise DecodeError("a receiver id is not a string")
            return cls(
                msg=_native.decode_msg(data[at + size :]),
                receivers=list(zip(ids, seqs, strict=True)),
                store=bool(flags & _STORE),
                outbox=bool(flags & _OUTBOX),
                history=bool(flags & _HISTORY),
                push_self=bool(flags & _PUSH_SELF),
            )
        except (struct.error, ValueError) as exc:  # orjson's JSONDecodeError is one
            raise DecodeError(f"undecodable message record: {exc}") from exc

    @classmethod
    def _decode_json(cls, data: bytes) -> MessageRecord:
        """The JSON form earlier versions produced (the ``Msg`` in its serde form)."""
        try:
            raw: Any = orjson.loads(data)
            receivers = [(str(uid), int(seq)) for uid, seq in raw["receivers"]]
            return cls(
                msg=Msg.from_json(raw["msg"]),
                receivers=receivers,
                store=bool(raw["store"]),
                outbox=bool(raw["outbox"]),
                history=bool(raw["history"]),
                push_self=bool(raw["push_self"]),
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise DecodeError(f"undecodable message record: {exc}") from exc
