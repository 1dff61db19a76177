"""Log in to a Sandcat server, open the WebSocket, send a text message, print what arrives.

    python examples/chat.py --account bob@example.com --password secret            # listen
    python examples/chat.py --account alice@example.com --password secret \\
        --to BOB_ID --text "hello"                                              # send

It needs only aiohttp (installed with Sandcat). The few lines of `encode` and `decode` are
the whole wire format of a `Msg` frame: bincode 1.x, described in docs/protocol.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import struct
import time
import uuid
from typing import Any

import aiohttp

#: The 17 fields of ``Msg`` in wire order, with their struct codes: ``s`` string, ``b``
#: bytes (both: u64 length + bytes), ``o`` optional string (1-byte tag, then a string),
#: ``q`` i64, ``i`` i32, ``?`` bool; all little-endian.
FIELDS = (
    ("send_id", "s"),
    ("receiver_id", "s"),
    ("local_id", "s"),
    ("server_id", "s"),
    ("create_time", "q"),
    ("send_time", "q"),
    ("seq", "q"),
    ("msg_type", "i"),
    ("content_type", "i"),
    ("content", "b"),
    ("is_read", "?"),
    ("group_id", "s"),
    ("platform", "i"),
    ("avatar", "s"),
    ("nickname", "s"),
    ("related_msg_id", "o"),
    ("send_seq", "q"),
)
SINGLE_MSG, MSG_REC_RESP = 0, 24  # msg_type
TEXT, ERROR = 1, 9  # content_type
CLOSE_MEANING = {
    1001: "the server is shutting down: reconnect later",
    4001: "knocked off: this user connected again on the same platform",
    4002: "unauthorized: the token is invalid or revoked, log in again",
    4008: "too slow: frames were not read fast enough",
}


def encode(msg: dict[str, Any]) -> bytes:
    out = bytearray()
    for name, code in FIELDS:
        value = msg.get(name)
        if code == "o":
            if value is None:
                out.append(0)
                continue
            out.append(1)
        if code in "sbo":
            data = value.encode() if isinstance(value, str) else bytes(value or b"")
            out += struct.pack("<Q", len(data)) + data
        else:
            out += struct.pack("<" + code, value or 0)
    return bytes(out)


def decode(data: bytes) -> dict[str, Any]:
    msg: dict[str, Any] = {}
    pos = 0
    for name, code in FIELDS:
        if code == "o":
            pos += 1
            if data[pos - 1] == 0:
                msg[name] = None
                continue
        if code in "sbo":
            (size,) = struct.unpack_from("<Q", data, pos)
            raw = data[pos + 8 : pos + 8 + size]
            pos += 8 + size
            msg[name] = raw if code == "b" else raw.decode()
        else:
            (msg[name],) = struct.unpack_from("<" + code, data, pos)
            pos += struct.calcsize(code)
    return msg


async def chat(args: argparse.Namespace) -> int:
    async with aiohttp.ClientSession() as http:
        # Login takes the password as standard base64 without the '=' padding.
        password = base64.b64encode(args.password.encode()).decode().rstrip("=")
        async with http.post(
            f"{args.api}/user/login", json={"account": args.account, "password": password}
        ) as resp:
            login = await resp.json()
            if resp.status != 200:
                print(f"login refused ({resp.status}): {login['kind']}: {login['details']}")
                return 1
        me, token = login["user"]["id"], login["token"]
        # /ws/{user_id}/conn/{pointer_id}/{platform}/{token}; platform 0 is desktop.
        async with http.ws_connect(f"{login['ws_addr']}/{me}/conn/{me}/0/{token}") as ws:
            print(f"connected as {me}", flush=True)
            if args.to:
                local_id = uuid.uuid4().hex
                await ws.send_bytes(
                    encode(
                        {
                            "send_id": me,
                            "receiver_id": args.to,
                            "local_id": local_id,
                            "create_time": int(time.time() * 1000),
                            "msg_type": SINGLE_MSG,
                            "content_type": TEXT,
                            "content": args.text.encode(),
                        }
                    )
                )
            received = 0
            async for frame in ws:
                if frame.type != aiohttp.WSMsgType.BINARY:
                    continue
                msg = decode(frame.data)
                if msg["msg_type"] == MSG_REC_RESP:
                    if msg["content_type"] == ERROR:
                        print(f"refused: {msg['content'].decode()}", flush=True)
                        return 1
                    print(f"sent: server_id={msg['server_id']} send_seq={msg['send_seq']}")
                    if not args.count:
                        return 0
                elif msg["msg_type"] == SINGLE_MSG:
                    text = msg["content"].decode()
                    print(f"from {msg['send_id']} (seq {msg['seq']}): {text}", flush=True)
                    received += 1
                    if received == args.count:
                        return 0
                else:
                    print(f"event: msg_type {msg['msg_type']} seq {msg['seq']}", flush=True)
            code = ws.close_code
            print(f"closed: {code} {CLOSE_MEANING.get(code or 0, '')}".rstrip())
            return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", default="http://127.0.0.1:50001", help="the HTTP API address")
    parser.add_argument("--account", required=True, help="e-mail or user id")
    parser.add_argument("--password", required=True)
    parser.add_argument("--to", help="the user id to send --text to")
    parser.add_argument("--text", default="hello from examples/chat.py")
    parser.add_argument(
        "--count",
        type=int,
        default=0,
        help="exit after receiving this many messages (default: with --to, after the ack; "
        "without, never)",
    )
    return asyncio.run(chat(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
