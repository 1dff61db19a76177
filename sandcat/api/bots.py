"""``/bot`` routes: a bot's identity and messages (its own API token), and the bot
directory for users (docs/protocol.md, "Bots")."""

from __future__ import annotations

from aiohttp import web

from sandcat.api.common import Body, Handler, bearer_token, json_response, read_json
from sandcat.api.users import UserRoutes
from sandcat.errors import BadRequest
from sandcat.protocol.msg import ContentType
from sandcat.services.bots import BotService


class BotRoutes:
    def __init__(
        self, *, bots: BotService, auth: UserRoutes, body_limit: int, text_bytes: int
    ) -> None:
        self._bots = bots
        self._auth = auth
        self._limit = body_limit
        self._text_bytes = text_bytes

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/bot/me", self.me),
            ("POST", "/bot/message", self.message),
            ("GET", "/bot/directory", self.directory),
        ]

    async def me(self, request: web.Request) -> web.StreamResponse:
        bot = await self._bots.authenticate(bearer_token(request))
        return json_response({"id": bot.id, "name": bot.name, "webhook_url": bot.webhook_url})

    async def message(self, request: web.Request) -> web.StreamResponse:
        bot = await self._bots.authenticate(bearer_token(request))
        body = Body(await read_json(request, self._limit))
        content = body.text("content").encode()
        if len(content) > self._text_bytes:
            raise BadRequest(f"content is larger than {self._text_bytes} bytes")
        ack = await self._bots.send(
            bot,
            receiver_id=body.opt_text("receiver_id") or "",
            group_id=body.opt_text("group_id") or "",
            content=content,
            content_type=body.opt_integer("content_type") or ContentType.TEXT,
            local_id=body.opt_text("local_id") or "",
        )
        return json_response(ack)

    async def directory(self, request: web.Request) -> web.StreamResponse:
        await self._auth.authed(request)
        return json_response(await self._bots.directory())
