"""Framing helpers built on the reference codec (``sandcat.protocol.bincode``).

``decode_read`` is the type-23 (Read) payload decoder as a function.
``encode_fanout`` is "encode once, send to many" for a message whose copies differ only in
``seq`` (a group message: one copy per member): the reference here encodes each distinct
copy; the compiled twin encodes once and patches the seq of each copy.
"""

from __future__ import annotations

from collections.abc import Iterable

from sandcat.protocol.bincode import encode_msg
from sandcat.protocol.msg import Msg
from sandcat.protocol.payloads import ReadPayload


def encode_fanout(msg: Msg, seqs: Iterable[int]) -> list[bytes]:
    """One frame per seq, each ``encode_msg(msg.copy(seq=seq))``; equal seqs share one frame."""
    frames: dict[int, bytes] = {}
    out: list[bytes] = []
    for seq in seqs:
        frame = frames.get(seq)
        if frame is None:
            frame = frames[seq] = encode_msg(msg.copy(seq=seq))
        out.append(frame)
    return out


def decode_read(data: bytes) -> ReadPayload:
    """bincode ``{msg_seq: Vec<i64>, user_id: String}`` (type 23 Read)."""
    return ReadPayload.decode(data)
