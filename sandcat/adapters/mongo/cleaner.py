"""The inbox cleaner (``db.mongodb.clean``), a job of the msg-server over the Mongo inbox: the
original's ``clean_receive_box``, in ms.

The original compared ``send_time`` (ms) with a cutoff in seconds, so it never deleted
anything; here the cutoff is ``now - period`` days in milliseconds.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from sandcat.adapters.mongo.inbox import CleanReport, MongoInbox
from sandcat.config import MongoCleanConfig
from sandcat.protocol.msg import MsgType

_CAMEL_WORD = re.compile(r"(?<!^)(?=[A-Z])")


def except_type_codes(names: Iterable[str]) -> frozenset[int]:
    """Message types named as in the original's config (``MsgTypeGroupInvitation``), as
    enum names (``GROUP_INVITATION``) or as numbers; raises ``ValueError`` on an unknown one."""
    codes: set[int] = set()
    for name in names:
        if name.isdigit():
            codes.add(MsgType(int(name)).value)
            continue
        bare = name.removeprefix("MsgType")
        key = bare if bare.isupper() else _CAMEL_WORD.sub("_", bare).upper()
        try:
            codes.add(MsgType[key].value)
        except KeyError:
            raise ValueError(f"unknown message type {name!r}") from None
    return frozenset(codes)


async def clean_inbox(inbox: MongoInbox, clean: MongoCleanConfig, now_ms: int) -> CleanReport:
    """One run of the cleaner with the ``db.mongodb.clean`` settings."""
    return await inbox.clean_inbox(now_ms, clean.period, except_type_codes(clean.except_types))
