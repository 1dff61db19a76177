"""JSON shapes of the HTTP API: every non-optional field present, optionals as ``null``."""

from __future__ import annotations

from typing import Any

from sandcat.domain import UserRecord
from sandcat.protocol.payloads import (
    Friend,
    FriendshipWithUser,
    GroupInfo,
    GroupInvitation,
    GroupMember,
)


def user_json(user: UserRecord, *, own: bool = True) -> dict[str, Any]:
    """``User`` without ``password`` and ``salt``; ``birthday`` is always null (the client
    parses it as a date-time it never receives). Seen by another user (``own`` false), the
    contact fields (phone, e-mail, address) are null: they are the user's own to read."""
    if not own:
        return {**user_json(user), "phone": None, "email": None, "address": None}
    return {
        "id": user.id,
        "name": user.name,
        "account": user.account,
        "avatar": user.avatar,
        "gender": user.gender,
        "age": user.age,
        "phone": user.phone,
        "email": user.email,
        "address": user.address,
        "region": user.region,
        "birthday": None,
        "create_time": user.create_time,
        "update_time": user.update_time,
        "signature": user.signature,
    }


def user_with_match_type_json(user: UserRecord, match_type: str, is_friend: bool) -> dict[str, Any]:
    return {
        "id": user.id,
        "name": user.name,
        "account": user.account,
        "avatar": user.avatar,
        "gender": user.gender,
        "age": user.age,
        "email": user.email,
        "region": user.region,
        "birthday": None,
        "match_type": match_type,
        "signature": user.signature,
        "is_friend": is_friend,
    }


def friendship_with_user_json(fs: FriendshipWithUser) -> dict[str, Any]:
    return {
        "fs_id": fs.fs_id,
        "user_id": fs.user_id,
        "name": fs.name,
        "avatar": fs.avatar,
        "gender": fs.gender,
        "age": fs.age,
        "region": fs.region,
        "status": fs.status,
        "apply_msg": fs.apply_msg,
        "source": fs.source,
        "create_time": fs.create_time,
        "account": fs.account,
        "remark": fs.remark,
        "email": fs.email,
    }


def friend_json(friend: Friend) -> dict[str, Any]:
    return {
        "fs_id": friend.fs_id,
        "friend_id": friend.friend_id,
        "account": friend.account,
        "name": friend.name,
        "avatar": friend.avatar,
        "gender": friend.gender,
        "age": friend.age,
        "region": friend.region,
        "status": friend.status,
        "remark": friend.remark,
        "email": friend.email,
        "source": friend.source,
        "signature": friend.signature,
        "create_time": friend.create_time,
        "update_time": friend.update_time,
    }


def friend_info_json(user: UserRecord) -> dict[str, Any]:
    """``FriendInfo``: the public profile of a user (its e-mail is empty: not public)."""
    return {
        "id": user.id,
        "name": user.name,
        "avatar": user.avatar,
        "gender": user.gender,
        "age": user.age,
        "region": user.region,
        "account": user.account,
        "signature": user.signature,
        "email": "",
    }


def group_info_json(info: GroupInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "owner": info.owner,
        "name": info.name,
        "avatar": info.avatar,
        "description": info.description,
        "announcement": info.announcement,
        "create_time": info.create_time,
        "update_time": info.update_time,
    }


def group_member_json(member: GroupMember) -> dict[str, Any]:
    return {
        "age": member.age,
        "group_id": member.group_id,
        "user_id": member.user_id,
        "group_name": member.group_name,
        "avatar": member.avatar,
        "joined_at": member.joined_at,
        "region": member.region,
        "gender": member.gender,
        "remark": member.remark,
        "signature": member.signature,
        "role": member.role,
    }


def group_invitation_json(invitation: GroupInvitation) -> dict[str, Any]:
    """``GroupInvitation``: ``{info, members}`` (``info`` is null only if absent)."""
    info = invitation.info
    return {
        "info": None if info is None else group_info_json(info),
        "members": [group_member_json(m) for m in invitation.members],
    }
