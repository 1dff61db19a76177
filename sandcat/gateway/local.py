"""The cluster of one process (embedded mode): ``Presence``, ``GatewayRegistry`` and
``PushBus`` in memory, so the gateway and the push router run the same code as with many
gateways (``GatewayCluster``, ``RemotePushRouter``).

Presence is a view of the gateway's own ``Registry``: it stores nothing per connection
(idle-connection memory stays what the registry holds) and has nothing to expire. Stored
messages do not pass through here: the embedded message log hands them to the registry
directly (``DeliveryService``); the bus carries relayed messages, logouts and knock-offs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence

from sandcat.gateway.connections import Registry


class LocalPresence:
    """Implements ``Presence`` over the one gateway's ``Registry``."""

    def __init__(self, *, gateway_id: str, local: Registry) -> None:
        self._gateway_id = gateway_id
        self._local = local

    async def connect(self, user_id: str, platform: int, gateway_id: str) -> str | None:
        return None  # the registry knocked off a previous connection on this platform

    async def disconnect(self, user_id: str, platform: int, gateway_id: str) -> None:
        return None

    async def refresh(self, gateway_id: str, connections: Iterable[tuple[str, int]]) -> None:
        return None  # nothing expires: the registry is never walked

    async def locate(self, user_ids: Sequence[str]) -> dict[str, dict[int, str]]:
        found: dict[str, dict[int, str]] = {}
        for user_id in user_ids:
            connections = self._local.connections(user_id)
            if connections:
                found[user_id] = {conn.platform: self._gateway_id for conn in connections}
        return found


class LocalGatewayRegistry:
    """Implements ``GatewayRegistry`` in one process (no lease: the process is the gateway)."""

    def __init__(self) -> None:
        self._live: dict[str, str] = {}

    async def register(self, gateway_id: str, ws_addr: str) -> None:
        self._live[gateway_id] = ws_addr

    async def unregister(self, gateway_id: str) -> None:
        self._live.pop(gateway_id, None)

    async def live(self) -> dict[str, str]:
        return dict(self._live)

    async def next_ws_addr(self) -> str | None:
        return next(iter(self._live.values()), None)


class LocalPushBus:
    """Implements ``PushBus`` in one process: a queue per subscribed gateway (a batch for a
    gateway that does not listen is dropped, as on the shared bus)."""

    def __init__(self) -> None:
        self._queues: dict[str, asyncio.Queue[bytes]] = {}

    async def publish(self, batches: Mapping[str, bytes]) -> None:
        for gateway_id, batch in batches.items():
            queue = self._queues.get(gateway_id)
            if queue is not None:
                queue.put_nowait(batch)

    def subscribe(self, gateway_id: str) -> AsyncIterator[bytes]:
        """Subscribed at once: what is published after this call is kept for the iterator."""
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._queues[gateway_id] = queue
        return self._batches(gateway_id, queue)

    async def _batches(self, gateway_id: str, queue: asyncio.Queue[bytes]) -> AsyncIterator[bytes]:
        try:
            while True:
                yield await queue.get()
        finally:
            if self._queues.get(gateway_id) is queue:
                del self._queues[gateway_id]
