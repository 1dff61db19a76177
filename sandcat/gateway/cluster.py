"""A gateway's link to the others (in embedded mode, to the one-process cluster of
``sandcat.gateway.local``).

It announces the gateway in the registry (TTL heartbeats), keeps presence
(user, platform -> this gateway) current, listens to its own push channel and hands each
frame to local connections, and tells the previous gateway to knock off a connection
that a user re-opened here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

from sandcat.gateway.connections import Connection, Registry
from sandcat.log import get_logger
from sandcat.ports import GatewayRegistry, Presence, PushBus
from sandcat.protocol.push_batch import EntryKind, decode_batch, encode_batch, knock_off

log = get_logger(__name__)


class GatewayCluster:
    def __init__(
        self,
        *,
        gateway_id: str,
        presence: Presence,
        registry: GatewayRegistry,
        bus: PushBus,
        local: Registry,
        heartbeat_seconds: float = 5.0,
    ) -> None:
        self.gateway_id = gateway_id
        self._presence = presence
        self._registry = registry
        self._bus = bus
        self._local = local
        self._heartbeat = heartbeat_seconds
        self._ws_addr = ""
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, ws_addr: str) -> None:
        self._ws_addr = ws_addr
        await self._registry.register(self.gateway_id, ws_addr)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._beat(), name="gateway-heartbeat"),
            loop.create_task(self._listen(), name="gateway-push-listener"),
        ]
        log.info("gateway_registered", gateway_id=self.gateway_id, ws_addr=ws_addr)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        with contextlib.suppress(Exception):
            await self._registry.unregister(self.gateway_id)

    async def connected(self, conn: Connection) -> None:
        previous = await self._presence.connect(conn.user_id, conn.platform, self.gateway_id)
        if previous and previous != self.gateway_id:
            control = encode_batch([knock_off(conn.user_id, conn.platform)])
            await self._bus.publish({previous: control})

    async def disconnected(self, conn: Connection) -> None:
        if self._local.holds(conn.user_id, conn.platform):
            return  # knocked off by a newer connection here: presence stays ours
        await self._presence.disconnect(conn.user_id, conn.platform, self.gateway_id)

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            try:
                await self._registry.register(self.gateway_id, self._ws_addr)
                await self._presence.refresh(self.gateway_id, _held(self._local))
            except Exception:  # a missed beat is retried on the next one
                log.exception("gateway_heartbeat_failed", gateway_id=self.gateway_id)

    async def _listen(self) -> None:
        while True:
            try:
                async for batch in self._bus.subscribe(self.gateway_id):
                    self._apply(batch)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("push_listener_failed", gateway_id=self.gateway_id)
                await asyncio.sleep(0.5)

    def _apply(self, batch: bytes) -> None:
        for kind, user_id, platform, frame in decode_batch(batch):
            if kind == EntryKind.DELIVER:
                self._local.deliver_frame(user_id, frame, platform)
            elif kind == EntryKind.KNOCK_OFF and platform is not None:
                self._local.knock_off(user_id, platform)
            elif kind == EntryKind.END_SESSIONS:
                self._local.close_sessions(user_id)
            elif kind == EntryKind.END_DEVICE:
                self._local.close_device(user_id, frame.decode())
            elif kind == EntryKind.EVENT:
                self._local.deliver_event(user_id, frame)


def _held(local: Registry) -> Iterator[tuple[str, int]]:
    """The registry's ``(user_id, platform)`` pairs, walked only if presence reads them."""
    for conn in local.all_connections():
        yield conn.user_id, conn.platform
