"""The process's one heartbeat timer: quiet connections are pinged, dead ones dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest

from sandcat.server import Running
from tests.client import Api, CodeBook, until
from tests.conftest import StartServer

INTERVAL = 0.2


@pytest.fixture
async def server(start_server: StartServer) -> AsyncIterator[Running]:
    async with start_server(websocket__ping_interval_seconds=INTERVAL) as srv:
        yield srv


async def test_quiet_connections_are_pinged_and_dead_ones_closed(
    server: Running, session: aiohttp.ClientSession, codes: CodeBook
) -> None:
    api = Api(session, f"http://127.0.0.1:{server.api_port}", codes)
    mute = await api.new_user("mute", "mute@example.com")
    alive = await api.new_user("alive", "alive@example.com")
    # `mute` reads frames but never answers a ping; `alive` answers them (aiohttp's autoping).
    dead = await session.ws_connect(
        f"{mute.ws_addr}/{mute.id}/conn/{mute.id}/0/{mute.token}", autoping=False
    )
    live = await session.ws_connect(
        f"{alive.ws_addr}/{alive.id}/conn/{alive.id}/0/{alive.token}", autoping=True
    )
    # aiohttp answers pings inside receive(): keep one pending on the live socket.
    reading = asyncio.create_task(live.receive())
    pings = 0
    async with asyncio.timeout(20 * INTERVAL + 5):
        while (frame := await dead.receive()).type == aiohttp.WSMsgType.PING:
            pings += 1
    # The ping right after connect, then at least one from the heartbeat; then the drop.
    assert pings >= 2
    assert frame.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    registry = server.apps.registry
    await until(lambda: not registry.holds(mute.id, 0), what="the dead peer unregistered")
    # The answering peer outlived the mute one's three beats, pings included.
    assert registry.holds(alive.id, 0) and not live.closed and not reading.done()
    reading.cancel()
    await live.close()
