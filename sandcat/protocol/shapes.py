"""JSON shapes of the HTTP API: every non-optional field present, optionals as ``null``."""

from __future__ import annotations

from typing import Any

from sandcat.domain import UserRecord


def user_json(user: UserRecord) -> dict[str, Any]:
    """``User`` without ``password`` and ``salt``; ``birthday`` is always null (the client
    parses it as a date-time it never receives)."""
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
