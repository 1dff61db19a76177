"""``/message`` routes: offline pull, counters, inbox deletes (docs/protocol.md)."""

from __future__ import annotations

import orjson
from aiohttp import web

from sandcat.api.common import Body, Handler, empty_response, json_response, path_param, read_json
from sandcat.api.users import UserRoutes
from sandcat.services.sync import SyncService


class MessageRoutes:
    def __init__(self, *, sync: SyncService, auth: UserRoutes, body_limit: int) -> None:
        self._sync = sync
        self._auth = auth
        self._limit = body_limit

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("POST", "/message", self.pull),
            ("GET", "/message/seq/{user_id}", self.seq),
            ("DELETE", "/message", self.delete),
        ]

    async def pull(self, request: web.Request) -> web.StreamResponse:
        data = await read_json(request, self._limit)
        body = Body(data)
        user_id = body.text("user_id")
        await self._auth.authed(request, user_id)
        limit = body.opt_integer("limit") or 0
        pages = await self._sync.pull(
            user_id,
            start=body.integer("start"),
            end=body.integer("end"),
            send_start=body.integer("send_start"),
            send_end=body.integer("send_end"),
            limit=limit,
        )
        # The JSON array is written page by page as the pages are read: one page of copies
        # and its JSON in memory at a time, and a slow reader slows only its own pull.
        response = web.StreamResponse()
        response.content_type = "application/json"
        await response.prepare(request)
        separator = b"["
        async for page in pages:
            await response.write(separator + b",".join(orjson.dumps(msg.to_json()) for msg in page))
            separator = b","
        await response.write(b"[]" if separator == b"[" else b"]")
        await response.write_eof()
        return response

    async def seq(self, request: web.Request) -> web.StreamResponse:
        user_id = path_param(request, "user_id")
        await self._auth.authed(request, user_id)
        seq, send_seq = await self._sync.current(user_id)
        return json_response({"seq": seq, "send_seq": send_seq})

    async def delete(self, request: web.Request) -> web.StreamResponse:
        body = Body(await read_json(request, self._limit))
        user_id = body.text("user_id")
        await self._auth.authed(request, user_id)
        await self._sync.delete(user_id, body.integers("msg_id"))
        return empty_response()
