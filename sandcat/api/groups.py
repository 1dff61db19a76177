"""``/group`` routes: create, update, dismiss, members, invite, remove."""

from __future__ import annotations

from aiohttp import web

from sandcat.api.audit import id_list
from sandcat.api.common import Body, Handler, empty_response, json_response, path_param, read_json
from sandcat.api.users import UserRoutes
from sandcat.errors import BadRequest, UnAuthorized
from sandcat.protocol.shapes import group_info_json, group_invitation_json, group_member_json
from sandcat.services.groups import GroupService


def _group_id(body: Body, name: str = "group_id") -> str:
    group_id = body.text(name)
    if not group_id:
        raise BadRequest(f"{name} must not be empty")
    return group_id


class GroupRoutes:
    def __init__(self, *, groups: GroupService, auth: UserRoutes, body_limit: int) -> None:
        self._groups = groups
        self._auth = auth
        self._limit = body_limit

    def routes(self) -> list[tuple[str, str, Handler]]:
        # Fixed segments first: `/group/member` and `/group/invite` are not user ids.
        return [
            ("POST", "/group/member", self.members),
            ("DELETE", "/group/member", self.remove),
            ("GET", "/group/member/{user_id}/{group_id}", self.with_members),
            ("PUT", "/group/invite", self.invite),
            ("POST", "/group/{user_id}", self.create),
            ("PUT", "/group/{user_id}", self.update),
            ("DELETE", "/group", self.delete),
            ("GET", "/group/{user_id}/{group_id}", self.info),
        ]

    async def _body(self, request: web.Request) -> Body:
        return Body(await read_json(request, self._limit))

    async def _body_user(self, request: web.Request) -> tuple[Body, str]:
        body = await self._body(request)
        user_id = body.text("user_id")
        await self._auth.authed(request, user_id)
        return body, user_id

    async def create(self, request: web.Request) -> web.StreamResponse:
        user_id = path_param(request, "user_id")
        await self._auth.authed(request, user_id)
        body = await self._body(request)
        if body.text("owner") != user_id:
            raise UnAuthorized("the owner must be the token's user")
        invitation = await self._groups.create(
            user_id=user_id,
            name=body.text("group_name"),
            avatar=body.text("avatar"),
            member_ids=body.texts("members_id"),
        )
        group = invitation.info.id if invitation.info is not None else "-"
        self._auth.audit(
            request, "group_create", actor=user_id, target=group, members=len(invitation.members)
        )
        return json_response(group_invitation_json(invitation))

    async def invite(self, request: web.Request) -> web.StreamResponse:
        body, user_id = await self._body_user(request)
        group_id, members = _group_id(body), body.texts("members")
        await self._groups.invite(user_id, group_id, members)
        self._auth.audit(
            request, "group_invite", actor=user_id, target=group_id, members=id_list(members)
        )
        return empty_response()

    async def update(self, request: web.Request) -> web.StreamResponse:
        user_id = path_param(request, "user_id")
        await self._auth.authed(request, user_id)
        body = await self._body(request)
        info = await self._groups.update(
            user_id,
            _group_id(body, "id"),
            name=body.text("name"),
            avatar=body.text("avatar"),
            description=body.text("description"),
            announcement=body.text("announcement"),
        )
        return json_response(group_info_json(info))

    async def delete(self, request: web.Request) -> web.StreamResponse:
        body, user_id = await self._body_user(request)
        group_id = _group_id(body)
        if body.flag("is_dismiss"):
            await self._groups.dismiss(user_id, group_id)
            self._auth.audit(request, "group_dismiss", actor=user_id, target=group_id)
        else:
            await self._groups.leave(user_id, group_id)
            self._auth.audit(request, "group_leave", actor=user_id, target=group_id)
        return empty_response()

    async def info(self, request: web.Request) -> web.StreamResponse:
        user_id = path_param(request, "user_id")
        await self._auth.authed(request, user_id)
        info = await self._groups.info(user_id, path_param(request, "group_id"))
        return json_response(group_info_json(info))

    async def with_members(self, request: web.Request) -> web.StreamResponse:
        user_id = path_param(request, "user_id")
        await self._auth.authed(request, user_id)
        info, members = await self._groups.with_members(user_id, path_param(request, "group_id"))
        return json_response(
            {"group": group_info_json(info), "members": [group_member_json(m) for m in members]}
        )

    async def members(self, request: web.Request) -> web.StreamResponse:
        body, user_id = await self._body_user(request)
        members = await self._groups.members(user_id, _group_id(body), body.texts("mem_ids"))
        return json_response([group_member_json(m) for m in members])

    async def remove(self, request: web.Request) -> web.StreamResponse:
        body, user_id = await self._body_user(request)
        group_id, members = _group_id(body), body.texts("mem_id")
        await self._groups.remove(user_id, group_id, members)
        self._auth.audit(
            request, "group_remove", actor=user_id, target=group_id, members=id_list(members)
        )
        return empty_response()
