"""``GatewayRegistry``, ``Presence`` and ``PushBus`` on real Redis.

Embedded mode runs one process and needs none of them, so there is no embedded twin.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

import pytest
from redis.asyncio import Redis

from sandcat.adapters.redis.presence import (
    CHUNK,
    DRAIN,
    GATEWAY_ADDRS,
    RedisGatewayRegistry,
    RedisPresence,
    RedisPushBus,
)
from sandcat.errors import DbError
from tests.client import until

# --- GatewayRegistry --------------------------------------------------------------------


async def test_live_gateways_and_round_robin(redis_client: Redis) -> None:
    registry = RedisGatewayRegistry(client=redis_client)
    assert await registry.live() == {}
    assert await registry.next_ws_addr() is None
    await registry.register("gw-b", "ws://10.0.0.2:50000")
    await registry.register("gw-a", "ws://10.0.0.1:50000")
    await registry.register("gw-a", "ws://10.0.0.1:50000")  # a heartbeat changes nothing
    assert await registry.live() == {"gw-a": "ws://10.0.0.1:50000", "gw-b": "ws://10.0.0.2:50000"}
    # a second API process shares the turn
    other = RedisGatewayRegistry(client=redis_client)
    turns = [await (registry if i % 2 else other).next_ws_addr() for i in range(6)]
    assert turns == ["ws://10.0.0.1:50000", "ws://10.0.0.2:50000"] * 3
    await registry.unregister("gw-a")
    assert await registry.live() == {"gw-b": "ws://10.0.0.2:50000"}
    assert {await registry.next_ws_addr() for _ in range(3)} == {"ws://10.0.0.2:50000"}


async def test_a_gateway_without_heartbeats_expires(redis_client: Redis) -> None:
    registry = RedisGatewayRegistry(client=redis_client, ttl_seconds=1)
    await registry.register("gw-a", "ws://a")
    await registry.register("gw-b", "ws://b")

    async def only_a_left() -> bool:
        await registry.register("gw-a", "ws://a")  # only gw-a beats
        return await registry.live() == {"gw-a": "ws://a"}

    await until(only_a_left, what="gw-b expired")
    assert {await registry.next_ws_addr() for _ in range(4)} == {"ws://a"}
    # the next heartbeat prunes the expired lease, address included (the one that made
    # gw-b look expired may have run a moment before its lease ran out)
    await registry.register("gw-a", "ws://a")
    assert await redis_client.hkeys(GATEWAY_ADDRS) == [b"gw-a"]


# --- Presence ---------------------------------------------------------------------------


@pytest.fixture
async def live_gateways(redis_client: Redis) -> RedisGatewayRegistry:
    registry = RedisGatewayRegistry(client=redis_client)
    for gateway in ("gw1", "gw2"):
        await registry.register(gateway, f"ws://{gateway}")
    return registry


async def test_connections_are_located_per_platform(
    redis_client: Redis, live_gateways: RedisGatewayRegistry
) -> None:
    presence = RedisPresence(client=redis_client)
    assert await presence.connect("alice", 1, "gw1") is None
    assert await presence.connect("alice", 2, "gw2") is None
    assert await presence.connect("bob", 1, "gw2") is None
    assert await presence.connect("bob", 1, "gw2") is None  # the same gateway again
    assert await presence.locate(["alice", "bob", "carol"]) == {
        "alice": {1: "gw1", 2: "gw2"},
        "bob": {1: "gw2"},
    }
    assert await presence.locate([]) == {}


async def test_a_new_connection_takes_the_platform_over(
    redis_client: Redis, live_gateways: RedisGatewayRegistry
) -> None:
    presence = RedisPresence(client=redis_client)
    await presence.connect("alice", 1, "gw1")
    assert await presence.connect("alice", 1, "gw2") == "gw1"  # gw1 must knock its one off
    # gw1's late disconnect of the superseded connection leaves gw2's entry alone
    await presence.disconnect("alice", 1, "gw1")
    assert await presence.locate(["alice"]) == {"alice": {1: "gw2"}}
    await presence.disconnect("alice", 1, "gw2")
    assert await presence.locate(["alice"]) == {}


async def test_entries_of_a_gateway_that_left_are_not_located(
    redis_client: Redis, live_gateways: RedisGatewayRegistry
) -> None:
    presence = RedisPresence(client=redis_client)
    await presence.connect("alice", 1, "gw1")
    await presence.connect("alice", 2, "gw2")
    await presence.connect("bob", 1, "gw3")  # never registered
    await live_gateways.unregister("gw1")
    assert await presence.locate(["alice", "bob"]) == {"alice": {2: "gw2"}}


async def test_heartbeats_keep_entries_and_their_absence_expires_them(
    redis_client: Redis, live_gateways: RedisGatewayRegistry
) -> None:
    presence = RedisPresence(client=redis_client, ttl_seconds=1)
    await presence.connect("alice", 1, "gw1")
    await presence.connect("bob", 1, "gw2")

    async def only_alice_left() -> bool:
        await presence.refresh("gw1", [("alice", 1)])  # only gw1 beats
        return await presence.locate(["alice", "bob"]) == {"alice": {1: "gw1"}}

    await until(only_alice_left, what="bob's entry expired")


async def test_a_heartbeat_restores_an_expired_entry_but_takes_nothing_over(
    redis_client: Redis, live_gateways: RedisGatewayRegistry
) -> None:
    short = RedisPresence(client=redis_client, ttl_seconds=0.3)
    await short.connect("alice", 1, "gw1")

    async def alice_expired() -> bool:
        return await short.locate(["alice"]) == {}

    await until(alice_expired, what="alice's entry expired")
    presence = RedisPresence(client=redis_client, ttl_seconds=60)
    await presence.connect("bob", 1, "gw2")
    await presence.refresh("gw1", [("alice", 1), ("bob", 1)])  # gw1 still holds both?
    assert await presence.locate(["alice", "bob"]) == {"alice": {1: "gw1"}, "bob": {1: "gw2"}}


async def test_large_refreshes_and_lookups_are_split(
    redis_client: Redis, live_gateways: RedisGatewayRegistry
) -> None:
    presence = RedisPresence(client=redis_client)
    users = [f"u{i}" for i in range(CHUNK * 2 + 5)]
    await presence.refresh("gw1", [(user, 3) for user in users])
    found = await presence.locate([*users, "nobody"])
    assert found == {user: {3: "gw1"} for user in users}


# --- PushBus ----------------------------------------------------------------------------


@pytest.fixture
async def bus(redis_client: Redis) -> RedisPushBus:
    return RedisPushBus(client=redis_client, block_seconds=0.1)


@pytest.fixture
async def listener_gw1(bus: RedisPushBus) -> AsyncIterator[AsyncGenerator[bytes, None]]:
    listener = bus.subscribe("gw1")
    yield listener
    await listener.aclose()


async def _next(listener: AsyncIterator[bytes]) -> bytes:
    return await asyncio.wait_for(anext(listener), timeout=5)


async def test_batches_reach_their_gateway_only_in_order(
    bus: RedisPushBus, listener_gw1: AsyncIterator[bytes]
) -> None:
    listener_gw2 = bus.subscribe("gw2")
    await bus.publish({"gw1": b"one", "gw2": b"\x00two\xff"})
    await bus.publish({"gw1": b"three"})
    await bus.publish({})
    assert [await _next(listener_gw1) for _ in range(2)] == [b"one", b"three"]
    assert await _next(listener_gw2) == b"\x00two\xff"
    with pytest.raises(TimeoutError):  # several empty blocking pops, and still nothing
        await asyncio.wait_for(anext(listener_gw2), timeout=0.5)


@pytest.mark.parametrize("ticks", range(6))
async def test_a_cancelled_listener_stops_at_any_tick_of_its_next_pop(
    bus: RedisPushBus, ticks: int
) -> None:
    """Cancelled ``ticks`` loop iterations into the pop after a batch, the listener ends.

    The steps are loop iterations (``sleep(0)``), not time: a pop's first ones send the
    ``BLMPOP``. Sent through ``asyncio.wait_for`` (what redis-py does on a connection with a
    socket timeout), a cancellation landing one iteration after the write finished was
    swallowed on Python 3.11 and the listener popped on forever (gateway shutdown hung).
    """
    listener = bus.subscribe("gw1")
    await bus.publish({"gw1": b"one"})
    assert await _next(listener) == b"one"
    pop = asyncio.ensure_future(anext(listener))
    try:
        for _ in range(ticks):
            await asyncio.sleep(0)
        pop.cancel()
        done, _ = await asyncio.wait([pop], timeout=5)
        assert done and pop.cancelled(), "the cancellation was swallowed"
    finally:
        pop.cancel()  # again, should the first one have been swallowed
        await asyncio.wait([pop], timeout=5)
        await listener.aclose()


async def test_batches_wait_for_a_listener_that_is_not_reading(
    bus: RedisPushBus, listener_gw1: AsyncIterator[bytes], redis_client: Redis
) -> None:
    batches = [f"batch {i}".encode() for i in range(DRAIN * 2 + 10)]
    for batch in batches:
        await bus.publish({"gw1": batch})
    assert 0 < await redis_client.pttl("push:gw1") <= 60_000  # a dead gateway's backlog goes
    assert [await _next(listener_gw1) for _ in batches] == batches


async def test_a_listener_outlasts_the_client_read_timeout(redis_client: Redis) -> None:
    kwargs = redis_client.connection_pool.connection_kwargs
    client = Redis(host=kwargs["host"], port=kwargs["port"], socket_timeout=0.2)
    bus = RedisPushBus(client=client, block_seconds=0.5)  # longer than a read may take
    listener = bus.subscribe("gw1")
    try:
        first = asyncio.ensure_future(anext(listener))
        await asyncio.sleep(1.2)  # two empty blocking pops
        assert not first.done()
        await bus.publish({"gw1": b"late"})
        assert await asyncio.wait_for(first, timeout=5) == b"late"
    finally:
        await listener.aclose()
        await client.aclose()


async def _mute_redis(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers +OK to every command but never to the blocking pop (BLMPOP): a silent link."""
    try:
        while header := await reader.readline():
            words = [
                await reader.readexactly(int((await reader.readline())[1:]) + 2)
                for _ in range(int(header[1:]))
            ]
            if words[0][:-2].upper() != b"BLMPOP":
                writer.write(b"+OK\r\n")
    finally:
        writer.close()


async def test_a_silent_connection_ends_the_listener_with_a_db_error() -> None:
    server = await asyncio.start_server(_mute_redis, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = Redis(host="127.0.0.1", port=port, socket_timeout=10)
    bus = RedisPushBus(client=client, block_seconds=0.1, read_grace_seconds=0.2)
    listener = bus.subscribe("gw1")
    try:
        with pytest.raises(DbError):
            await asyncio.wait_for(anext(listener), timeout=5)
    finally:
        await listener.aclose()
        await client.aclose()
        server.close()
        await server.wait_closed()
