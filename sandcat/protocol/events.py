"""Protocol v2 events: what a client that connected with ``?v=2`` gets besides ``Msg``
frames (docs/protocol.md, "Protocol v2").

An event is a WebSocket text frame holding one JSON object ``{"event": name, "data":
{...}}``. Binary frames keep carrying bincode ``Msg`` exactly as for the original web
client, which never gets an event (it does not know text frames from the server).
"""

from __future__ import annotations

from collections.abc import Mapping

import orjson

#: The first event on every v2 connection, once it is registered.
HELLO = "hello"


def encode_event(event: str, data: Mapping[str, object]) -> bytes:
    return orjson.dumps({"event": event, "data": data})
