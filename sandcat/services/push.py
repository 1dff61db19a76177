"""Push routing across processes: msg-server -> the gateways that hold the recipients.

One batch per gateway per stored batch (never a broadcast): the router asks presence
which gateway holds each recipient's platforms, encodes every copy once, and publishes
one batch per gateway (``sandcat.protocol.push_batch``). The gateway's listener hands
each frame to its local connections.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sandcat import _native
from sandcat.log import get_logger
from sandcat.ports import Located, Presence, Push, PushBus
from sandcat.protocol.events import encode_event
from sandcat.protocol.push_batch import (
    PushEntry,
    deliver,
    encode_batch,
    end_device,
    end_sessions,
    event,
)

log = get_logger(__name__)


class RemotePushRouter:
    """Implements ``PushRouter``, ``SessionEnder``, ``DeviceEnder`` and ``Events`` over
    presence and the push bus: the msg-server's and the gateways' in distributed mode, the
    one process's in embedded mode (``sandcat.gateway.local``)."""

    def __init__(self, *, presence: Presence, bus: PushBus) -> None:
        self._presence = presence
        self._bus = bus

    async def end_sessions(self, user_id: str) -> None:
        """Implements ``SessionEnder``: one control entry to each gateway holding the user."""
        await self._control(user_id, end_sessions(user_id))

    async def end_device(self, user_id: str, device_id: str) -> None:
        """Implements ``DeviceEnder``: one control entry to each gateway holding the user
        (the gateway closes only the connections that device opened)."""
        await self._control(user_id, end_device(user_id, device_id))

    async def _control(self, user_id: str, entry: PushEntry) -> None:
        where = await self._presence.locate([user_id])
        gateways = set((where.get(user_id) or {}).values())
        if gateways:
            control = encode_batch([entry])
            await self._bus.publish({gateway: control for gateway in gateways})

    async def emit(self, user_ids: Sequence[str], name: str, data: Mapping[str, object]) -> None:
        """Implements ``Events``: the event, encoded once, in one batch per gateway holding
        any of ``user_ids``; each gateway writes it on the v2 connections only.

        Best effort, like pushes (the HTTP routes are the truth): the caller's change is
        stored already, so an unreachable presence or bus is logged, never raised."""
        try:
            where = await self._presence.locate(sorted(set(user_ids)))
            if not where:
                return
            payload = encode_event(name, data)
            batches: dict[str, list[PushEntry]] = {}
            for user_id, platforms in where.items():
                for gateway in set(platforms.values()):
                    batches.setdefault(gateway, []).append(event(user_id, payload))
            await self._bus.publish({gw: encode_batch(entries) for gw, entries in batches.items()})
        except Exception:
            log.exception("event_publish_failed", name=name, users=len(user_ids))

    async def route(self, pushes: Sequence[Push], where: Located | None = None) -> None:
        if where is None:
            where = await self._presence.locate(sorted({push.user_id for push in pushes}))
        batches: dict[str, list[PushEntry]] = {}
        for user_id, msg, exclude in pushes:
            platforms = where.get(user_id)
            if not platforms:
                continue
            frame = _native.encode_msg(msg)
            gateways = {gw for platform, gw in platforms.items() if platform != exclude}
            for gateway in gateways:
                batches.setdefault(gateway, []).append(deliver(user_id, frame, exclude))
        if not batches:
            return
        try:
            await self._bus.publish({gw: encode_batch(entries) for gw, entries in batches.items()})
        except Exception:  # push is best effort: sync is the source of truth
            log.exception("push_publish_failed", gateways=len(batches))
