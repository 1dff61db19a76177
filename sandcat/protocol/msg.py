"""The ``Msg`` of the sandcat wire protocol (17 fields, bincode in field order) and its enums."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from sandcat.errors import DecodeError


class MsgType(IntEnum):
    SINGLE_MSG = 0
    GROUP_MSG = 1
    GROUP_INVITATION = 2
    GROUP_INVITE_NEW = 3
    GROUP_MEMBER_EXIT = 4
    GROUP_REMOVE_MEMBER = 5
    GROUP_DISMISS = 6
    GROUP_DISMISS_OR_EXIT_RECEIVED = 7
    GROUP_INVITATION_RECEIVED = 8
    GROUP_UPDATE = 9
    FRIEND_APPLY_REQ = 10
    FRIEND_APPLY_RESP = 11
    FRIEND_BLACK = 12
    FRIEND_DELETE = 13
    SINGLE_CALL_INVITE = 14
    REJECT_SINGLE_CALL = 15
    AGREE_SINGLE_CALL = 16
    SINGLE_CALL_INVITE_NOT_ANSWER = 17
    SINGLE_CALL_INVITE_CANCEL = 18
    SINGLE_CALL_OFFER = 19
    HANGUP = 20
    CONNECT_SINGLE_CALL = 21
    CANDIDATE = 22
    READ = 23
    MSG_REC_RESP = 24
    NOTIFICATION = 25
    SERVICE = 26
    FRIENDSHIP_RECEIVED = 27


class ContentType(IntEnum):
    DEFAULT = 0
    TEXT = 1
    IMAGE = 2
    VIDEO = 3
    AUDIO = 4
    FILE = 5
    EMOJI = 6
    VIDEO_CALL = 7
    AUDIO_CALL = 8
    ERROR = 9


class PlatformType(IntEnum):
    DESKTOP = 0
    MOBILE = 1


#: Types the web client cannot decode: never pushed to a v1 client (docs/protocol.md).
NEVER_PUSHED: frozenset[int] = frozenset({7, 8, 12, 23, 25, 26, 27})

#: The field names of ``Msg`` in declaration (= bincode and JSON) order.
MSG_FIELDS: tuple[str, ...] = (
    "send_id",
    "receiver_id",
    "local_id",
    "server_id",
    "create_time",
    "send_time",
    "seq",
    "msg_type",
    "content_type",
    "content",
    "is_read",
    "group_id",
    "platform",
    "avatar",
    "nickname",
    "related_msg_id",
    "send_seq",
)

_STR_FIELDS = ("send_id", "receiver_id", "local_id", "server_id", "group_id", "avatar", "nickname")
_INT_FIELDS = (
    "create_time",
    "send_time",
    "seq",
    "msg_type",
    "content_type",
    "platform",
    "send_seq",
)
I64_MIN, I64_MAX = -(2**63), 2**63 - 1
I32_MIN, I32_MAX = -(2**31), 2**31 - 1
_I32_FIELDS = frozenset({"msg_type", "content_type", "platform"})


@dataclass(slots=True)
class Msg:
    """One chat message or event, exactly the 17 fields of the original's ``Msg``."""

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

    def copy(self, **changes: Any) -> Msg:
        """A shallow copy with some fields replaced."""
        new = Msg(
            self.send_id,
            self.receiver_id,
            self.local_id,
            self.server_id,
            self.create_time,
            self.send_time,
            self.seq,
            self.msg_type,
            self.content_type,
            self.content,
            self.is_read,
            self.group_id,
            self.platform,
            self.avatar,
            self.nickname,
            self.related_msg_id,
            self.send_seq,
        )
        for name, value in changes.items():
            setattr(new, name, value)
        return new

    def to_json(self) -> dict[str, Any]:
        """The serde-JSON form: ``content`` as an array of numbers, keys in declaration order."""
        return {
            "send_id": self.send_id,
            "receiver_id": self.receiver_id,
            "local_id": self.local_id,
            "server_id": self.server_id,
            "create_time": self.create_time,
            "send_time": self.send_time,
            "seq": self.seq,
            "msg_type": self.msg_type,
            "content_type": self.content_type,
            "content": list(self.content),
            "is_read": self.is_read,
            "group_id": self.group_id,
            "platform": self.platform,
            "avatar": self.avatar,
            "nickname": self.nickname,
            "related_msg_id": self.related_msg_id,
            "send_seq": self.send_seq,
        }

    @classmethod
    def from_json(cls, data: object) -> Msg:
        """Parse the serde-JSON form strictly: every non-optional field must be present."""
        if not isinstance(data, dict):
            raise DecodeError("a Msg must be a JSON object")
        values: dict[str, Any] = {}
        for name in _STR_FIELDS:
            value = data.get(name)
            if not isinstance(value, str):
                raise DecodeError(f"Msg.{name} must be a string")
            values[name] = value
        for name in _INT_FIELDS:
            value = data.get(name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise DecodeError(f"Msg.{name} must be an integer")
            low, high = (I32_MIN, I32_MAX) if name in _I32_FIELDS else (I64_MIN, I64_MAX)
            if not low <= value <= high:
                raise DecodeError(f"Msg.{name} is out of range")
            values[name] = value
        content = data.get("content")
        if not isinstance(content, list):
            raise DecodeError("Msg.content must be an array of numbers")
        try:
            values["content"] = bytes(content)
        except (TypeError, ValueError) as exc:
            raise DecodeError("Msg.content must be an array of bytes") from exc
        is_read = data.get("is_read")
        if not isinstance(is_read, bool):
            raise DecodeError("Msg.is_read must be a boolean")
        values["is_read"] = is_read
        related = data.get("related_msg_id")
        if related is not None and not isinstance(related, str):
            raise DecodeError("Msg.related_msg_id must be a string or null")
        values["related_msg_id"] = related
        return cls(**values)
