"""Protocol v2 on the wire: a client that connects with ``?v=2`` gets JSON events in text
frames (``hello`` first); the original client's connection never gets a text frame."""

from __future__ import annotations

import aiohttp

from tests.client import Api, Socket, alice_and_bob


async def test_v2_connection_says_hello_and_v1_gets_no_text_frame(
    api: Api, session: aiohttp.ClientSession
) -> None:
    alice, bob = await alice_and_bob(api)
    v2 = await Socket.connect(session, alice, platform=1, v2=True)
    hello = await v2.event("hello")
    assert hello["version"] == 2 and hello["conn_id"]
    v1 = await Socket.connect(session, bob)
    # A message both ways: each socket's frames are read in order, and v1's stay binary.
    await v2.send(send_id=alice.id, receiver_id=bob.id, local_id="v2-1", content=b"hi")
    got = await v1.recv_until(lambda m: m["msg_type"] == 0)
    assert got["content"] == b"hi"
    await v1.send(send_id=bob.id, receiver_id=alice.id, local_id="v1-1", content=b"yo")
    back = await v2.recv_until(lambda m: m["msg_type"] == 0 and m["send_id"] == bob.id)
    assert back["content"] == b"yo"
    await v1.ready(bob)  # every frame written to v1 before this ack has been read
    assert v1.events_seen() == []
    await v1.close()
    await v2.close()


async def test_a_v2_query_other_than_two_is_the_original_protocol(
    api: Api, session: aiohttp.ClientSession
) -> None:
    alice, _ = await alice_and_bob(api)
    url = f"{alice.ws_addr}/{alice.id}/conn/{alice.id}/0/{alice.token}?v=3"
    sock = Socket(await session.ws_connect(url))
    await sock.ready(alice)
    assert sock.events_seen() == []
    await sock.close()
