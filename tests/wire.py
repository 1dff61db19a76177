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


# --- Notification payloads (§3.4), field lists transcribed from the proto (§3.3) ---------
# Kinds: "s" string, "o" Option<String>, "i" i32, "q" i64.

FRIENDSHIP_WITH_USER = (
    ("fs_id", "s"),
    ("user_id", "s"),
    ("name", "s"),
    ("avatar", "s"),
    ("gender", "s"),
    ("age", "i"),
    ("region", "o"),
    ("status", "i"),
    ("apply_msg", "o"),
    ("source", "s"),
    ("create_time", "q"),
    ("account", "s"),
    ("remark", "o"),
    ("email", "o"),
)
FRIEND = (
    ("fs_id", "s"),
    ("friend_id", "s"),
    ("account", "s"),
    ("name", "s"),
    ("avatar", "s"),
    ("gender", "s"),
    ("age", "i"),
    ("region", "o"),
    ("status", "i"),
    ("remark", "o"),
    ("email", "o"),
    ("source", "s"),
    ("signature", "s"),
    ("create_time", "q"),
    ("update_time", "q"),
)
GROUP_INFO = (
    ("id", "s"),
    ("owner", "s"),
    ("name", "s"),
    ("avatar", "s"),
    ("description", "s"),
    ("announcement", "s"),
    ("create_time", "q"),
    ("update_time", "q"),
)
GROUP_MEMBER = (
    ("age", "i"),
    ("group_id", "s"),
    ("user_id", "s"),
    ("group_name", "s"),
    ("avatar", "s"),
    ("joined_at", "q"),
    ("region", "o"),
    ("gender", "s"),
    ("remark", "o"),
    ("signature", "s"),
    ("role", "i"),
)


class _Cursor:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        chunk = self.data[self.pos : self.pos + n]
        assert len(chunk) == n, "truncated"
        self.pos += n
        return chunk

    def unpack(self, fmt: str) -> Any:
        (value,) = struct.unpack(fmt, self.take(struct.calcsize(fmt)))
        return value

    def text(self) -> str:
        return self.take(self.unpack("<Q")).decode("utf-8")

    def record(self, fields: tuple[tuple[str, str], ...]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, kind in fields:
            if kind == "s":
                out[name] = self.text()
            elif kind == "o":
                tag = self.take(1)[0]
                assert tag in (0, 1), "bad Option tag"
                out[name] = self.text() if tag else None
            else:
                out[name] = self.unpack("<" + kind)
        return out

    def done(self) -> None:
        assert self.pos == len(self.data), "trailing bytes"


def _one(data: bytes, fields: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    cur = _Cursor(data)
    out = cur.record(fields)
    cur.done()
    return out


def decode_friendship_with_user(data: bytes) -> dict[str, Any]:
    return _one(data, FRIENDSHIP_WITH_USER)


def decode_friend(data: bytes) -> dict[str, Any]:
    return _one(data, FRIEND)


def decode_group_info(data: bytes) -> dict[str, Any]:
    return _one(data, GROUP_INFO)


def decode_group_invitation(data: bytes) -> dict[str, Any]:
    """``Option<GroupInfo>`` then ``Vec<GroupMember>``."""
    cur = _Cursor(data)
    tag = cur.take(1)[0]
    assert tag in (0, 1), "bad Option tag"
    info = cur.record(GROUP_INFO) if tag else None
    members = [cur.record(GROUP_MEMBER) for _ in range(cur.unpack("<Q"))]
    cur.done()
    return {"info": info, "members": members}


def decode_strings(data: bytes) -> list[str]:
    """``Vec<String>`` (types 3 and 5)."""
    cur = _Cursor(data)
    values = [cur.text() for _ in range(cur.unpack("<Q"))]
    cur.done()
    return values
