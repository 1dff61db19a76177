"""The relay baseline: a bare aiohttp WebSocket relay, the cost floor of "decode, ack, forward".

``python -m benchmarks.load.relay --api-port P --ws-port Q`` serves just enough of sandcat's
protocol for the generator's one-to-one and group fan-out scenarios to drive it unchanged:

- ``GET /health``;
- ``POST /user/login``: any account, any password; the user id is derived from the account,
  the token is random and never checked;
- ``POST /group/{owner}``: keeps ``[owner, *members_id]`` in memory under a new group id;
- ``/ws/{user_id}/conn/{pointer_id}/{platform}/{token}``: for every binary frame, decode the
  bincode ``Msg`` (with the generator's own codec), send the sender its ack (type 24, a
  server id, the send time, the sender's next ``send_seq``, ``seq`` 0, no content), then
  forward a copy to the receiver's connections, or for a group to every member but the
  sender, each copy with that receiver's next ``seq`` (a group copy is encoded once and the
  ``seq`` patched in per member).

Nothing is stored and nothing is checked: no password, token, friendship, membership, rate,
size (beyond aiohttp's default) or slow-client limit, no per-connection writer queue (a
frame is written from the sender's read loop). The counters live in dictionaries. What a
sandcat server spends per delivered message above this relay is the price of what it does
beyond relaying; the relay runs on the same aiohttp and uvloop, in one process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import secrets
import struct
import time

from aiohttp import WSMsgType, web

from benchmarks.load import codec

_SEQ = struct.Struct("<q")


def user_id_for(account: str) -> str:
    """A stable user id per account, so a restarted relay gives the same ids."""
    return hashlib.blake2b(account.encode(), digest_size=8).hexdigest()


def seq_offset(msg: codec.Msg) -> int:
    """Where ``seq`` starts in ``codec.encode(msg)``: four length-prefixed strings, then
    ``create_time`` and ``send_time`` (8 bytes each)."""
    strings = (msg.send_id, msg.receiver_id, msg.local_id, msg.server_id)
    return sum(8 + len(s.encode()) for s in strings) + 16


class Relay:
    def __init__(self, ws_addr: str) -> None:
        self.ws_addr = ws_addr
        self.conns: dict[str, dict[int, web.WebSocketResponse]] = {}
        self.seqs: dict[str, int] = {}  # per receiver
        self.send_seqs: dict[str, int] = {}  # per sender
        self.groups: dict[str, list[str]] = {}
        self._ids = itertools.count(1)

    # ------------------------------------------------------------ HTTP

    async def health(self, _: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def login(self, request: web.Request) -> web.Response:
        account = str((await request.json())["account"])
        user = {"id": user_id_for(account), "name": account, "account": account, "email": account}
        token = secrets.token_urlsafe(16)
        return web.json_response(
            {"user": user, "token": token, "refresh_token": token, "ws_addr": self.ws_addr}
        )

    async def create_group(self, request: web.Request) -> web.Response:
        owner = request.match_info["owner"]
        body = await request.json()
        group_id = f"g{next(self._ids)}"
        members = [owner, *(str(m) for m in body.get("members_id", []) if m != owner)]
        self.groups[group_id] = members
        info = {"id": group_id, "owner": owner, "name": body.get("group_name", "")}
        return web.json_response({"info": info, "members": [{"user_id": m} for m in members]})

    # ------------------------------------------------------------ WebSocket

    async def connect(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(heartbeat=30.0, autoping=True)
        await ws.prepare(request)
        user_id = request.match_info["user_id"]
        platform = 1 if request.match_info["platform"] == "1" else 0
        platforms = self.conns.setdefault(user_id, {})
        old = platforms.get(platform)
        platforms[platform] = ws
        if old is not None:
            await old.close()
        try:
            async for frame in ws:
                if frame.type == WSMsgType.BINARY:
                    await self.on_frame(user_id, ws, frame.data)
        finally:
            if platforms.get(platform) is ws:
                del platforms[platform]
        return ws

    async def on_frame(self, user_id: str, ws: web.WebSocketResponse, data: bytes) -> None:
        try:
            msg = codec.decode(data)
        except codec.DecodeError:
            return
        send_seq = self.send_seqs[user_id] = self.send_seqs.get(user_id, 0) + 1
        server_id = f"r{next(self._ids)}"
        now = int(time.time() * 1000)
        ack = msg._replace(
            msg_type=codec.MSG_ACK,
            server_id=server_id,
            send_time=now,
            send_seq=send_seq,
            seq=0,
            content=b"",
        )
        await _send(ws, codec.encode(ack))
        copy = msg._replace(server_id=server_id, send_time=now)
        if msg.msg_type == codec.MSG_GROUP:
            members = self.groups.get(msg.group_id, [])
            await self.fan_out(user_id, copy._replace(seq=0, send_seq=0), members)
        else:
            seq = self.seqs[msg.receiver_id] = self.seqs.get(msg.receiver_id, 0) + 1
            frame = codec.encode(copy._replace(seq=seq, send_seq=send_seq))
            for receiver in list(self.conns.get(msg.receiver_id, {}).values()):
                await _send(receiver, frame)

    async def fan_out(self, sender: str, template: codec.Msg, members: list[str]) -> None:
        """One encoding; each member's copy is that frame with the member's seq patched in."""
        frame = codec.encode(template)
        at = seq_offset(template)
        head, tail = frame[:at], frame[at + _SEQ.size :]
        for member in members:
            if member == sender:
                continue
            seq = self.seqs[member] = self.seqs.get(member, 0) + 1
            copy = b"".join((head, _SEQ.pack(seq), tail))
            for receiver in list(self.conns.get(member, {}).values()):
                await _send(receiver, copy)


async def _send(ws: web.WebSocketResponse, frame: bytes) -> None:
    """Write one frame (aiohttp writes it before its first await; a gone peer is skipped)."""
    try:  # noqa: SIM105 - the hot path: no context manager per frame
        await ws.send_bytes(frame)
    except ConnectionError:
        pass


def apps(relay: Relay) -> tuple[web.Application, web.Application]:
    api = web.Application()
    api.add_routes(
        [
            web.get("/health", relay.health),
            web.post("/user/login", relay.login),
            web.post("/group/{owner}", relay.create_group),
        ]
    )
    gateway = web.Application()
    gateway.add_routes(
        [web.get("/ws/{user_id}/conn/{pointer_id}/{platform}/{token}", relay.connect)]
    )
    return api, gateway


async def serve(host: str, api_port: int, ws_port: int) -> None:
    relay = Relay(f"ws://{host}:{ws_port}/ws")
    runners: list[web.AppRunner] = []
    for app, port in zip(apps(relay), (api_port, ws_port), strict=True):
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, host, port, reuse_address=True, backlog=4096).start()
        runners.append(runner)
    try:
        await asyncio.Event().wait()
    finally:
        for runner in reversed(runners):
            await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load.relay", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--api-port", type=int, required=True)
    parser.add_argument("--ws-port", type=int, required=True)
    args = parser.parse_args(argv)
    import uvloop

    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(args.host, args.api_port, args.ws_port))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
