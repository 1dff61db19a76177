"""The one-process cluster of embedded mode (``sandcat.gateway.local``): the same
``GatewayCluster`` and ``RemotePushRouter`` as with many gateways, over in-memory presence
and push bus."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from sandcat import _native
from sandcat.gateway.cluster import GatewayCluster
from sandcat.gateway.connections import CLOSE_UNAUTHORIZED, Connection, Registry
from sandcat.gateway.local import LocalGatewayRegistry, LocalPresence, LocalPushBus
from sandcat.ports import Push
from sandcat.protocol.msg import Msg
from sandcat.services.push import RemotePushRouter
from tests.client import until


@dataclass
class FakeConnection:
    """What the registry and the cluster use of a connection."""

    user_id: str
    platform: int
    ip: str = "127.0.0.1"
    conn_id: str = "c"
    sent: list[bytes] = field(default_factory=list)
    closed_with: int | None = None

    def send(self, frame: bytes) -> None:
        self.sent.append(frame)

    def close(self, code: int, reason: str) -> None:
        self.closed_with = code


def _connect(registry: Registry, user_id: str, platform: int) -> FakeConnection:
    conn = FakeConnection(user_id, platform)
    registry.register(cast(Connection, conn))
    return conn


async def test_presence_is_a_view_of_the_registry() -> None:
    registry = Registry()
    presence = LocalPresence(gateway_id="gw", local=registry)
    _connect(registry, "alice", 1)
    _connect(registry, "alice", 2)
    assert await presence.connect("alice", 1, "gw") is None
    assert await presence.locate(["alice", "bob"]) == {"alice": {1: "gw", 2: "gw"}}


async def test_bus_delivers_to_the_subscribed_gateway_only() -> None:
    bus = LocalPushBus()
    await bus.publish({"gw": b"before"})  # nobody listens yet: dropped
    stream = bus.subscribe("gw")
    await bus.publish({"gw": b"one", "other": b"dropped"})
    await bus.publish({"gw": b"two"})
    assert [await anext(stream), await anext(stream)] == [b"one", b"two"]
    await stream.aclose()  # type: ignore[attr-defined]
    await bus.publish({"gw": b"after"})  # unsubscribed: dropped, nothing raised


async def test_relay_and_logout_reach_local_connections_through_the_cluster() -> None:
    registry = Registry()
    presence = LocalPresence(gateway_id="gw", local=registry)
    bus = LocalPushBus()
    gateways = LocalGatewayRegistry()
    cluster = GatewayCluster(
        gateway_id="gw", presence=presence, registry=gateways, bus=bus, local=registry
    )
    router = RemotePushRouter(presence=presence, bus=bus)
    await cluster.start("ws://127.0.0.1:1/ws")
    try:
        assert await gateways.next_ws_addr() == "ws://127.0.0.1:1/ws"
        phone, desk = _connect(registry, "alice", 1), _connect(registry, "alice", 2)
        msg = Msg(send_id="bob", receiver_id="alice", msg_type=14, content=b"offer")

        async def relayed() -> bool:
            """Routed again until the cluster's listener has subscribed to the bus."""
            await router.route([Push("alice", msg, exclude_platform=2)])
            return bool(phone.sent)

        await until(relayed, what="the relayed frame")
        assert set(phone.sent) == {_native.encode_msg(msg)} and desk.sent == []
        await router.end_sessions("alice")
        await until(lambda: desk.closed_with is not None, what="the logout")
        assert phone.closed_with == desk.closed_with == CLOSE_UNAUTHORIZED
    finally:
        await cluster.stop()
    assert await gateways.live() == {}
