"""A test-side bincode codec written from the spec (§3.2), independent of ``sandcat.protocol``.

It deliberately uses a different technique (one ``struct`` format per field) so that a
mistake in the server's codec is not mirrored here.
"""

from __future__ import annotations

import struct
from typing import Any

FIELDS = (
    ("send_id", "s"),
    ("receiver_id", "s"),
    ("local_id", "s"),
    ("server_id", "s"),
    ("create_time", "q"),
    ("send_time", "q"),
    ("seq", "q"),
    ("msg_type", "i"),
    ("content_type", "i"),
    ("content", "b"),
    ("is_read", "?"),
    ("group_id", "s"),
    ("platform", "i"),
    ("avatar", "s"),
    ("nickname", "s"),
    ("related_msg_id", "o"),
    ("send_seq", "q"),
)


def msg(**values: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "send_id": "",
        "receiver_id": "",
        "local_id": "",
        "server_id": "",
        "create_time": 0,
        "send_time": 0,
        "seq": 0,
        "msg_type": 0,
        "content_type": 0,
        "content": b"",
        "is_read": False,
        "group_id": "",
        "platform": 0,
        "avatar": "",
        "nickname": "",
        "related_msg_id": None,
        "send_seq": 0,
    }
    base.update(values)
    return base


def encode(m: dict[str, Any]) -> bytes:
    out = b""
    for name, kind in FIELDS:
        value = m[name]
        if kind == "s":
            raw = value.encode("utf-8")
            out += struct.pack("<Q", len(raw)) + raw
        elif kind == "b":
            out += struct.pack("<Q", len(value)) + bytes(value)
        elif kind == "o":
            if value is None:
                out += b"\x00"
            else:
                raw = value.encode("utf-8")
                out += b"\x01" + struct.pack("<Q", len(raw)) + raw
        else:
            out += struct.pack("<" + kind, value)
    return out


def decode(data: bytes) -> dict[str, Any]:
    pos = 0
    out: dict[str, Any] = {}

    def take(n: int) -> bytes:
        nonlocal pos
        chunk = data[pos : pos + n]
        assert len(chunk) == n, "truncated"
        pos += n
        return chunk

    for name, kind in FIELDS:
        if kind in {"s", "b"}:
            (size,) = struct.unpack("<Q", take(8))
            raw = take(size)
            out[name] = raw.decode("utf-8") if kind == "s" else raw
        elif kind == "o":
            tag = take(1)[0]
            if tag:
                (size,) = struct.unpack("<Q", take(8))
                out[name] = take(size).decode("utf-8")
            else:
                out[name] = None
        else:
            size = struct.calcsize("<" + kind)
            (out[name],) = struct.unpack("<" + kind, take(size))
    assert pos == len(data), "trailing bytes"
    return out


def read_payload(seqs: list[int], user_id: str) -> bytes:
    raw = user_id.encode()
    return (
        struct.pack("<Q", len(seqs))
        + b"".join(struct.pack("<q", s) for s in seqs)
        + struct.pack("<Q", len(raw))
        + raw
    )
