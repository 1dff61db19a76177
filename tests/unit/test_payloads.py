"""Notification payloads byte-exact against vectors built by hand from the proto field order."""

from __future__ import annotations

import struct

import pytest

from sandcat.errors import DecodeError
from sandcat.protocol.payloads import (
    Friend,
    FriendshipWithUser,
    GroupInfo,
    GroupInvitation,
    GroupMember,
    encode_strings,
)
from tests import wire


def s(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("<Q", len(raw)) + raw


def some(text: str) -> bytes:
    return b"\x01" + s(text)


NONE = b"\x00"

FS = FriendshipWithUser(
    fs_id="fs",
    user_id="u1",
    name="Ann",
    avatar="a.png",
    gender="f",
    age=30,
    region=None,
    status=0,
    apply_msg="hi ✓",
    source="search",
    create_time=1_700_000_000_123,
    account="acc",
    remark=None,
    email="a@x.io",
)
FS_BYTES = (
    s("fs")
    + s("u1")
    + s("Ann")
    + s("a.png")
    + s("f")
    + struct.pack("<i", 30)
    + NONE
    + struct.pack("<i", 0)
    + some("hi ✓")
    + s("search")
    + struct.pack("<q", 1_700_000_000_123)
    + s("acc")
    + NONE
    + some("a@x.io")
)
#: Offset of the ``region`` Option tag in ``FS_BYTES``.
REGION_TAG = len(s("fs") + s("u1") + s("Ann") + s("a.png") + s("f")) + 4

FRIEND = Friend(
    fs_id="fs",
    friend_id="u2",
    account="acc2",
    name="Bo",
    avatar="b.png",
    gender="",
    age=-1,
    region="north",
    status=1,
    remark="my Bo",
    email=None,
    source="group",
    signature="sig",
    create_time=5,
    update_time=6,
)
FRIEND_BYTES = (
    s("fs")
    + s("u2")
    + s("acc2")
    + s("Bo")
    + s("b.png")
    + s("")
    + struct.pack("<i", -1)
    + some("north")
    + struct.pack("<i", 1)
    + some("my Bo")
    + NONE
    + s("group")
    + s("sig")
    + struct.pack("<qq", 5, 6)
)

INFO = GroupInfo(
    id="g",
    owner="o",
    name="n",
    avatar="av",
    description="d",
    announcement="",
    create_time=7,
    update_time=8,
)
INFO_BYTES = s("g") + s("o") + s("n") + s("av") + s("d") + s("") + struct.pack("<qq", 7, 8)

MEMBER = GroupMember(
    age=3,
    group_id="g",
    user_id="m",
    group_name="Max",
    avatar="m.png",
    joined_at=9,
    region=None,
    gender="x",
    remark="r",
    signature="",
    role=2,
)
MEMBER_BYTES = (
    struct.pack("<i", 3)
    + s("g")
    + s("m")
    + s("Max")
    + s("m.png")
    + struct.pack("<q", 9)
    + NONE
    + s("x")
    + some("r")
    + s("")
    + struct.pack("<i", 2)
)


def test_friendship_with_user_is_byte_exact() -> None:
    assert FS.encode() == FS_BYTES
    assert FriendshipWithUser.decode(FS_BYTES) == FS
    assert wire.decode_friendship_with_user(FS_BYTES)["apply_msg"] == "hi ✓"


def test_friend_is_byte_exact() -> None:
    assert FRIEND.encode() == FRIEND_BYTES
    assert Friend.decode(FRIEND_BYTES) == FRIEND
    assert wire.decode_friend(FRIEND_BYTES)["region"] == "north"


def test_group_info_is_byte_exact() -> None:
    assert INFO.encode() == INFO_BYTES
    assert GroupInfo.decode(INFO_BYTES) == INFO


def test_group_invitation_is_byte_exact() -> None:
    invitation = GroupInvitation(info=INFO, members=[MEMBER, MEMBER])
    expected = b"\x01" + INFO_BYTES + struct.pack("<Q", 2) + MEMBER_BYTES * 2
    assert invitation.encode() == expected
    assert GroupInvitation.decode(expected) == invitation
    empty = GroupInvitation(info=None, members=[])
    assert empty.encode() == b"\x00" + struct.pack("<Q", 0)
    assert GroupInvitation.decode(empty.encode()) == empty


def test_string_lists() -> None:
    encoded = encode_strings(["a", "bc"])
    assert encoded == struct.pack("<Q", 2) + s("a") + s("bc")
    assert wire.decode_strings(encoded) == ["a", "bc"]


@pytest.mark.parametrize(
    "data",
    [
        FS_BYTES[:-1],  # truncated
        FS_BYTES + b"\x00",  # trailing byte
        FS_BYTES[:REGION_TAG] + b"\x02" + FS_BYTES[REGION_TAG + 1 :],  # bad Option tag
    ],
)
def test_malformed_friendship_is_refused(data: bytes) -> None:
    with pytest.raises(DecodeError):
        FriendshipWithUser.decode(data)


def test_invitation_member_count_cannot_exceed_input() -> None:
    with pytest.raises(DecodeError):
        GroupInvitation.decode(b"\x00" + struct.pack("<Q", 10**9))
