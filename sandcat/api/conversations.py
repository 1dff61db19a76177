"""``/conversation`` routes: the token user's conversations, their flags, marking read."""

from __future__ import annotations

from aiohttp import web

from sandcat.api.common import Body, Handler, json_response, path_param, read_json
from sandcat.api.users import UserRoutes
from sandcat.errors import BadRequest
from sandcat.services.conversations import ConversationService, conversation_json

FLAGS = ("pinned", "muted", "hidden")


class ConversationRoutes:
    def __init__(
        self, *, conversations: ConversationService, auth: UserRoutes, body_limit: int
    ) -> None:
        self._conversations = conversations
        self._auth = auth
        self._limit = body_limit

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/conversation", self.list),
            ("PUT", "/conversation/{id}", self.update),
            ("POST", "/conversation/{id}/read", self.read),
        ]

    async def list(self, request: web.Request) -> web.StreamResponse:
        user_id = await self._auth.authed(request)
        raw = request.query.get("since", "0")
        if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
            raise BadRequest("since must be a time in milliseconds")
        conversations, sync_time = await self._conversations.list(user_id, int(raw))
        return json_response(
            {
                "conversations": [conversation_json(conv) for conv in conversations],
                "sync_time": sync_time,
            }
        )

    async def update(self, request: web.Request) -> web.StreamResponse:
        user_id = await self._auth.authed(request)
        data = await read_json(request, self._limit)
        body = Body(data)
        flags = {name: None if data.get(name) is None else body.flag(name) for name in FLAGS}
        if all(value is None for value in flags.values()):
            raise BadRequest(f"set at least one of {', '.join(FLAGS)}")
        conv = await self._conversations.update(
            user_id,
            path_param(request, "id"),
            pinned=flags["pinned"],
            muted=flags["muted"],
            hidden=flags["hidden"],
        )
        return json_response(conversation_json(conv))

    async def read(self, request: web.Request) -> web.StreamResponse:
        user_id = await self._auth.authed(request)
        upto = None
        if request.can_read_body:
            upto = Body(await read_json(request, self._limit)).opt_integer("seq")
            if upto is not None and upto < 0:
                raise BadRequest("seq must not be negative")
        conv = await self._conversations.read(user_id, path_param(request, "id"), upto)
        return json_response(conversation_json(conv))
