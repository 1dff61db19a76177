"""``/bot`` routes: a bot's identity, messages and friend requests (its own API token), and
the bot directory for users (docs/protocol.md, "Bots")."""

from __future__ import annotations

from aiohttp import web

from sandcat.api.common import (
    Body,
    Handler,
    bearer_token,
    empty_response,
    json_response,
    path_param,
    read_json,
)
from sandcat.api.users import UserRoutes
from sandcat.errors import BadRequest
from sandcat.protocol.msg import ContentType
from sandcat.protocol.shapes import friend_json, friendship_with_user_json
from sandcat.services.bots import BotService
from sandcat.services.friends import FriendService


class BotRoutes:
    def __init__(
        self,
        *,
        bots: BotService,
        friends: FriendService,
        auth: UserRoutes,
        body_limit: int,
        text_bytes: int,
    ) -> None:
        self._bots = bots
        self._friends = friends
        self._auth = auth
        self._limit = body_limit
        self._text_bytes = text_bytes

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("GET", "/bot/me", self.me),
            ("POST", "/bot/message", self.message),
            ("GET", "/bot/directory", self.directory),
            ("GET", "/bot/friend/requests", self.friend_requests),
            ("PUT", "/bot/friend/{fs_id}/agree", self.agree),
            ("PUT", "/bot/friend/{fs_id}/refuse", self.refuse),
        ]

    async def _optional_body(self, request: web.Request) -> Body:
        """The JSON object body, or an empty one when the request has none."""
        return Body(await read_json(request, self._limit) if request.body_exists else {})

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

    async def friend_requests(self, request: web.Request) -> web.StreamResponse:
        """The friend requests sent to the bot that wait for an answer."""
        bot = await self._bots.authenticate(bearer_token(request))
        pending = await self._friends.pending(bot.id)
        return json_response([friendship_with_user_json(fs) for fs in pending])

    async def agree(self, request: web.Request) -> web.StreamResponse:
        """Accept a request as a user does (``PUT /friend/agree``): the same notifications."""
        bot = await self._bots.authenticate(bearer_token(request))
        body = await self._optional_body(request)
        fs_id = path_param(request, "fs_id")
        friend = await self._friends.agree(
            bot.id, fs_id, body.opt_text("resp_msg"), body.opt_text("resp_remark")
        )
        self._auth.audit(request, "bot_friend_agree", actor=bot.id, target=friend.friend_id)
        return json_response(friend_json(friend))

    async def refuse(self, request: web.Request) -> web.StreamResponse:
        """Refuse a request as a user does (``PUT /friend/deny``)."""
        bot = await self._bots.authenticate(bearer_token(request))
        body = await self._optional_body(request)
        fs_id = path_param(request, "fs_id")
        await self._friends.deny(bot.id, fs_id, body.opt_text("resp_msg"))
        self._auth.audit(request, "bot_friend_refuse", actor=bot.id, target=fs_id)
        return empty_response()
