"""bincode ``content`` payloads of notifications and client events (docs/protocol.md)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from sandcat.protocol.bincode import Reader, Writer

_U64 = struct.Struct("<Q")


@dataclass(slots=True)
class ReadPayload:
    """Type 23 Read: ``{msg_seq: Vec<i64>, user_id: String}``."""

    msg_seq: list[int]
    user_id: str

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


@dataclass(slots=True)
class FriendshipWithUser:
    """A friend request with the other user's profile; bincode body of type 10 (14 fields)."""

    fs_id: str
    user_id: str
    name: str
    avatar: str
    gender: str
    age: int
    region: str | None
    status: int
    apply_msg: str | None
    source: str
    create_time: int
    account: str
    remark: str | None
    email: str | None

    def encode(self) -> bytes:
        w = Writer()
        w.string(self.fs_id)
        w.string(self.user_id)
        w.string(self.name)
        w.string(self.avatar)
        w.string(self.gender)
        w.i32(self.age)
        w.opt_string(self.region)
        w.i32(self.status)
        w.opt_string(self.apply_msg)
        w.string(self.source)
        w.i64(self.create_time)
        w.string(self.account)
        w.opt_string(self.remark)
        w.opt_string(self.email)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> FriendshipWithUser:
        r = Reader(data)
        value = cls(
            fs_id=r.string(),
            user_id=r.string(),
            name=r.string(),
            avatar=r.string(),
            gender=r.string(),
            age=r.i32(),
            region=r.opt_string(),
            status=r.i32(),
            apply_msg=r.opt_string(),
            source=r.string(),
            create_time=r.i64(),
            account=r.string(),
            remark=r.opt_string(),
            email=r.opt_string(),
        )
        r.finish()
        return value


@dataclass(slots=True)
class Friend:
    """A friend as seen by one user; bincode body of type 11 (15 fields)."""

    fs_id: str
    friend_id: str
    account: str
    name: str
    avatar: str
    gender: str
    age: int
    region: str | None
    status: int
    remark: str | None
    email: str | None
    source: str
    signature: str
    create_time: int
    update_time: int

    def encode(self) -> bytes:
        w = Writer()
        w.string(self.fs_id)
        w.string(self.friend_id)
        w.string(self.account)
        w.string(self.name)
        w.string(self.avatar)
        w.string(self.gender)
        w.i32(self.age)
        w.opt_string(self.region)
        w.i32(self.status)
        w.opt_string(self.remark)
        w.opt_string(self.email)
        w.string(self.source)
        w.string(self.signature)
        w.i64(self.create_time)
        w.i64(self.update_time)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> Friend:
        r = Reader(data)
        value = cls(
            fs_id=r.string(),
            friend_id=r.string(),
            account=r.string(),
            name=r.string(),
            avatar=r.string(),
            gender=r.string(),
            age=r.i32(),
            region=r.opt_string(),
            status=r.i32(),
            remark=r.opt_string(),
            email=r.opt_string(),
            source=r.string(),
            signature=r.string(),
            create_time=r.i64(),
            update_time=r.i64(),
        )
        r.finish()
        return value


@dataclass(slots=True)
class GroupInfo:
    """A group; bincode body of type 9 (8 fields)."""

    id: str
    owner: str
    name: str
    avatar: str
    description: str
    announcement: str
    create_time: int
    update_time: int

    def write(self, w: Writer) -> None:
        w.string(self.id)
        w.string(self.owner)
        w.string(self.name)
        w.string(self.avatar)
        w.string(self.description)
        w.string(self.announcement)
        w.i64(self.create_time)
        w.i64(self.update_time)

    def encode(self) -> bytes:
        w = Writer()
        self.write(w)
        return w.getvalue()

    @classmethod
    def read(cls, r: Reader) -> GroupInfo:
        return cls(
            id=r.string(),
            owner=r.string(),
            name=r.string(),
            avatar=r.string(),
            description=r.string(),
            announcement=r.string(),
            create_time=r.i64(),
            update_time=r.i64(),
        )

    @classmethod
    def decode(cls, data: bytes) -> GroupInfo:
        r = Reader(data)
        value = cls.read(r)
        r.finish()
        return value


@dataclass(slots=True)
class GroupMember:
    """One member of a group (11 fields); ``group_name`` is the member's user name."""

    age: int
    group_id: str
    user_id: str
    group_name: str
    avatar: str
    joined_at: int
    region: str | None
    gender: str
    remark: str | None
    signature: str
    role: int

    def write(self, w: Writer) -> None:
        w.i32(self.age)
        w.string(self.group_id)
        w.string(self.user_id)
        w.string(self.group_name)
        w.string(self.avatar)
        w.i64(self.joined_at)
        w.opt_string(self.region)
        w.string(self.gender)
        w.opt_string(self.remark)
        w.string(self.signature)
        w.i32(self.role)

    @classmethod
    def read(cls, r: Reader) -> GroupMember:
        return cls(
            age=r.i32(),
            group_id=r.string(),
            user_id=r.string(),
            group_name=r.string(),
            avatar=r.string(),
            joined_at=r.i64(),
            region=r.opt_string(),
            gender=r.string(),
            remark=r.opt_string(),
            signature=r.string(),
            role=r.i32(),
        )


#: Smallest bincode ``GroupMember``: 4 empty strings and 2 absent options around 3 numbers.
_MIN_MEMBER_BYTES = 4 + 5 * 8 + 8 + 1 + 1 + 4


@dataclass(slots=True)
class GroupInvitation:
    """Type 2 body: ``Option<GroupInfo>`` (1-byte tag) then ``Vec<GroupMember>``."""

    info: GroupInfo | None
    members: list[GroupMember]

    def encode(self) -> bytes:
        w = Writer()
        if self.info is None:
            w.boolean(False)
        else:
            w.boolean(True)
            self.info.write(w)
        w.buf += _U64.pack(len(self.members))
        for member in self.members:
            member.write(w)
        return w.getvalue()

    @classmethod
    def decode(cls, data: bytes) -> GroupInvitation:
        r = Reader(data)
        info = GroupInfo.read(r) if r.tag() else None
        members = [GroupMember.read(r) for _ in range(r.count(_MIN_MEMBER_BYTES))]
        r.finish()
        return cls(info=info, members=members)
