"""``/friend`` routes: apply, agree, deny, delete, remark, query, pending and since."""

from __future__ import annotations

from aiohttp import web

from sandcat.api.common import (
    Body,
    Handler,
    empty_response,
    json_response,
    path_int,
    path_param,
    read_json,
)
from sandcat.api.users import UserRoutes
from sandcat.protocol.shapes import friend_info_json, friend_json, friendship_with_user_json
from sandcat.services.friends import FriendService


class FriendRoutes:
    def __init__(self, *, friends: FriendService, auth: UserRoutes, body_limit: int) -> None:
        self._friends = friends
        self._auth = auth
        self._limit = body_limit

    def routes(self) -> list[tuple[str, str, Handler]]:
        # Fixed segments first: `/friend/query/x` and `/friend/x/apply` must not be read as
        # `/friend/{id}/{offline_time}`.
        return [
            ("POST", "/friend", self.apply),
            ("PUT", "/friend/agree", self.agree),
            ("PUT", "/friend/deny", self.deny),
            ("DELETE", "/friend", self.delete),
            ("PUT", "/friend/remark", self.remark),
            ("GET", "/friend/query/{user_id}", self.query),
            ("GET", "/friend/{id}/apply", self.pending),
            ("GET", "/friend/{id}/{offline_time}", self.since),
        ]

    async def _body(self, request: web.Request) -> Body:
        return Body(await read_json(request, self._limit))

    async def apply(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        user_id = body.text("user_id")
        await self._auth.authed(request, user_id)
        fs = await self._friends.apply(
            user_id=user_id,
            friend_id=body.text("friend_id"),
            apply_msg=body.opt_text("apply_msg"),
            req_remark=body.opt_text("req_remark"),
            source=body.text("source"),
        )
        self._auth.audit(
            request, "friend_apply", actor=user_id, target=body.text("friend_id"), fs_id=fs.fs_id
        )
        return json_response(friendship_with_user_json(fs))

    async def agree(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        user_id = await self._auth.authed(request)
        friend = await self._friends.agree(
            user_id,
            body.text("fs_id"),
            body.opt_text("resp_msg"),
            body.opt_text("resp_remark"),
        )
        self._auth.audit(
            request, "friend_agree", actor=user_id, target=friend.friend_id, fs_id=friend.fs_id
        )
        return json_response(friend_json(friend))

    async def deny(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        user_id = await self._auth.authed(request)
        fs_id = body.text("fs_id")
        await self._friends.deny(user_id, fs_id, body.opt_text("resp_msg"))
        self._auth.audit(request, "friend_deny", actor=user_id, target=fs_id)
        return empty_response()

    async def delete(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        user_id = body.text("user_id")
        await self._auth.authed(request, user_id)
        friend_id = body.text("friend_id")
        await self._friends.delete(user_id, friend_id, body.text("fs_id"))
        self._auth.audit(request, "friend_delete", actor=user_id, target=friend_id)
        return empty_response()

    async def remark(self, request: web.Request) -> web.StreamResponse:
        body = await self._body(request)
        user_id = body.text("user_id")
        await self._auth.authed(request, user_id)
        await self._friends.set_remark(user_id, body.text("friend_id"), body.text("remark"))
        return empty_response()

    async def query(self, request: web.Request) -> web.StreamResponse:
        await self._auth.authed(request)
        user = await self._friends.query(path_param(request, "user_id"))
        return json_response(friend_info_json(user))

    async def pending(self, request: web.Request) -> web.StreamResponse:
        user_id = path_param(request, "id")
        await self._auth.authed(request, user_id)
        requests = await self._friends.pending(user_id)
        return json_response([friendship_with_user_json(fs) for fs in requests])

    async def since(self, request: web.Request) -> web.StreamResponse:
        user_id = path_param(request, "id")
        await self._auth.authed(request, user_id)
        friends, requests = await self._friends.since(user_id, path_int(request, "offline_time"))
        return json_response(
            {
                "friends": [friend_json(f) for f in friends],
                "fs": [friendship_with_user_json(fs) for fs in requests],
            }
        )
