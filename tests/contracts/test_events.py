"""``RemotePushRouter.emit`` (the ``Events`` port) over real Redis presence and push bus:
one batch per gateway holding a recipient, the event encoded once, nobody else's."""

from __future__ import annotations

import asyncio

import orjson
from redis.asyncio import Redis

from sandcat.adapters.redis.presence import RedisGatewayRegistry, RedisPresence, RedisPushBus
from sandcat.protocol.push_batch import EntryKind, decode_batch
from sandcat.services.push import RemotePushRouter


async def test_an_event_reaches_each_gateway_holding_a_recipient_once(redis_client: Redis) -> None:
    registry = RedisGatewayRegistry(client=redis_client)
    for gateway in ("gw1", "gw2", "gw3"):
        await registry.register(gateway, f"ws://{gateway}")
    presence = RedisPresence(client=redis_client)
    await presence.connect("alice", 0, "gw1")
    await presence.connect("alice", 1, "gw2")
    await presence.connect("bob", 0, "gw1")
    await presence.connect("dave", 0, "gw3")  # not a recipient
    bus = RedisPushBus(client=redis_client, block_seconds=0.1)
    listeners = {gw: bus.subscribe(gw) for gw in ("gw1", "gw2", "gw3")}
    router = RemotePushRouter(presence=presence, bus=bus)
    try:
        await router.emit(["alice", "bob", "alice", "carol"], "conversation.updated", {"id": "x"})
        gw1 = decode_batch(await asyncio.wait_for(anext(listeners["gw1"]), timeout=5))
        gw2 = decode_batch(await asyncio.wait_for(anext(listeners["gw2"]), timeout=5))
        assert sorted((e.kind, e.user_id) for e in gw1) == [
            (EntryKind.EVENT, "alice"),
            (EntryKind.EVENT, "bob"),
        ]
        assert [(e.kind, e.user_id) for e in gw2] == [(EntryKind.EVENT, "alice")]
        assert orjson.loads(gw2[0].frame) == {
            "event": "conversation.updated",
            "data": {"id": "x"},
        }
        # gw3 holds no recipient: its next batch is the one published after the event
        await bus.publish({"gw3": b"next"})
        assert await asyncio.wait_for(anext(listeners["gw3"]), timeout=5) == b"next"
    finally:
        for listener in listeners.values():
            await listener.aclose()
