"""Push routing across processes: msg-server -> the gateways that hold the recipients.

One batch per gateway per stored batch (never a broadcast): the router asks presence
which gateway holds each recipient's platforms, encodes every copy once, and publishes
one frame list per gateway. The gateway's listener hands each frame to its local
connections. The batch format is internal (bincode-style: count, then per entry the user
id, the platform to exclude or -1, and the encoded ``Msg`` frame).
"""

from __future__ import annotations

from collections.abc import Sequence

from sandcat import _native
from sandcat.log import get_logger
from sandcat.ports import Presence, Push, PushBus
from sandcat.protocol.bincode import Reader, Writer

log = get_logger(__name__)

PushEntry = tuple[str, int, bytes]  # (user id, platform to exclude or -1, frame)
#: A control entry, not a frame: close every connection of the user with 4002 (logout).
END_SESSIONS = -2


def encode_batch(entries: Sequence[PushEntry]) -> bytes:
    w = Writer()
    w.i64(len(entries))
    for user_id, exclude, frame in entries:
        w.string(user_id)
        w.i32(exclude)
        w.raw(frame)
    return w.getvalue()


def decode_batch(data: bytes) -> list[PushEntry]:
    r = Reader(data)
    entries = [(r.string(), r.i32(), r.raw()) for _ in range(r.count(20))]
    r.finish()
    return entries


class RemotePushRouter:
    """Implements ``PushRouter`` and ``SessionEnder`` over presence and the push bus: the
    msg-server's and the gateways' in distributed mode, the one process's in embedded
    mode (``sandcat.gateway.local``)."""

    def __init__(self, *, presence: Presence, bus: PushBus) -> None:
        self._presence = presence
        self._bus = bus

    async def end_sessions(self, user_id: str) -> None:
        """Implements ``SessionEnder``: one control entry to each gateway holding the user."""
        where = await self._presence.locate([user_id])
        gateways = set((where.get(user_id) or {}).values())
        if gateways:
            control = encode_batch([(user_id, END_SESSIONS, b"")])
            await self._bus.publish({gateway: control for gateway in gateways})

    async def route(self, pushes: Sequence[Push]) -> None:
        where = await self._presence.locate(sorted({user for user, _, _ in pushes}))
        batches: dict[str, list[PushEntry]] = {}
        for user_id, msg, exclude in pushes:
            platforms = where.get(user_id)
            if not platforms:
                continue
            frame = _native.encode_msg(msg)
            gateways = {gw for platform, gw in platforms.items() if platform != exclude}
            for gateway in gateways:
                batches.setdefault(gateway, []).append(
                    (user_id, -1 if exclude is None else exclude, frame)
                )
        if not batches:
            return
        try:
            await self._bus.publish({gw: encode_batch(entries) for gw, entries in batches.items()})
        except Exception:  # push is best effort: sync is the source of truth
            log.exception("push_publish_failed", gateways=len(batches))
