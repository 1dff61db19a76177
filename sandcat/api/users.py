"""``/user/*`` routes: codes, registration, login, tokens, profile, password, search."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sandcat.api.audit import audit
from sandcat.api.common import (
    Body,
    Handler,
    bearer_token,
    client_ip,
    empty_response,
    json_response,
    path_param,
    read_json,
)
from sandcat.config import Config
from sandcat.domain import UserChanges
from sandcat.errors import InternalServer, PathParsing, SandcatError, UnAuthorized
from sandcat.ports import FriendGate, GatewayRegistry
from sandcat.protocol.shapes import user_json, user_with_match_type_json
from sandcat.services.auth import decode_b64_password
from sandcat.services.devices import DeviceInfo
from sandcat.services.users import LoginResult, UserService


class UserRoutes:
    def __init__(
        self,
        *,
        users: UserService,
        config: Config,
        ws_addr: WsAddress,
        friends: FriendGate,
    ) -> None:
        self._users = users
        self._limit = config.limits.http_body_bytes
        self._trust = config.server.trust_forwarded_for
        self._ws_addr = ws_addr
        self._friends = friends

    def routes(self) -> list[tuple[str, str, Handler]]:
        return [
            ("POST", "/user/mail/send", self.send_mail),
            ("POST", "/user", self.register),
            ("POST", "/user/login", self.login),
            ("GET", "/user/refresh_token/{token}/{is_refresh}", self.refresh),
            ("PUT", "/user/pwd", self.change_password),
            ("PUT", "/user/email", self.change_email),
            ("PUT", "/user", self.update),
            ("DELETE", "/user/logout/{uuid}", self.logout),
            ("GET", "/user/{user_id}/search/{pattern}", self.search),
            ("GET", "/user/{id}", self.get),
        ]

    async def authed(self, request: web.Request, user_id: str | None = None) -> str:
        """The token's user; when ``user_id`` is given it must be that user (else 401)."""
        token_user = await self._users.authenticate(bearer_token(request))
        if user_id is not None and token_user != user_id:
            raise UnAuthorized("the token does not belong to this user")
        return token_user

    def audit(
        self, request: web.Request, event: str, *, actor: str, target: str, **fields: Any
    ) -> None:
        """One ``sandcat.audit`` line with the client address (``X-Forwarded-For`` if trusted)."""
        audit(request, self._trust, event, actor=actor, target=target, **fields)

    async def send_mail(self, request: web.Request) -> web.StreamResponse:
        body = Body(await read_json(request, self._limit))
        await self._users.send_code(body.text("email"), client_ip(request, self._trust))
        return empty_response()

    async def register(self, request: web.Request) -> web.StreamResponse:
        body = Body(await read_json(request, self._limit))
        user = await self._users.register(
            name=body.text("name"),
            email=body.text("email"),
            password=body.text("password"),
            code=body.text("code"),
            avatar=body.text("avatar"),
        )
        return json_response(user_json(user))

    async def login(self, request: web.Request) -> web.StreamResponse:
        body = Body(await read_json(request, self._limit))
        account = body.text("account")
        password = decode_b64_password(body.text("password"))
        ip = client_ip(request, self._trust)
        device = device_info(
            request, ip, platform=body.opt_text("platform"), client=body.opt_text("client")
        )
        try:
            result = await self._users.login(account, password, ip, device)
        except SandcatError as exc:
            self.audit(request, "login_failed", actor="-", target=account, reason=exc.kind)
            raise
        self.audit(request, "login", actor=result.user.id, target=result.user.id)
        return json_response(await login_json(result, self._ws_addr))

    async def refresh(self, request: web.Request) -> web.StreamResponse:
        flag = path_param(request, "is_refresh")
        if flag not in {"true", "false"}:
            raise PathParsing("is_refresh must be true or false")
        token = await self._users.refresh(
            path_param(request, "token"), flag == "true", client_ip(request, self._trust)
        )
        return web.Response(text=token, content_type="text/plain")

    async def change_password(self, request: web.Request) -> web.StreamResponse:
        body = Body(await read_json(request, self._limit))
        user_id = body.text("user_id")
        await self._users.change_password(
            user_id=user_id,
            email=body.text("email"),
            password=decode_b64_password(body.text("pwd")),
            code=body.text("code"),
        )
        self.audit(request, "password_changed", actor=user_id, target=user_id)
        return empty_response()

    async def change_email(self, request: web.Request) -> web.StreamResponse:
        """``{user_id, email, code}``: the code that ``POST /user/mail/send`` sent to the new
        address; answers the updated profile."""
        body = Body(await read_json(request, self._limit))
        user_id = body.text("user_id")
        await self.authed(request, user_id)
        user = await self._users.change_email(
            user_id=user_id, email=body.text("email"), code=body.text("code")
        )
        return json_response(user_json(user))

    async def update(self, request: web.Request) -> web.StreamResponse:
        body = Body(await read_json(request, self._limit))
        user_id = body.text("id")
        await self.authed(request, user_id)
        changes = UserChanges(
            name=body.text("name"),
            avatar=body.text("avatar"),
            gender=body.text("gender"),
            phone=body.opt_text("phone"),
            email=body.opt_text("email"),
            address=body.opt_text("address"),
            region=body.opt_text("region"),
            birthday=body.opt_integer("birthday"),
            signature=body.opt_text("signature"),
        )
        return json_response(user_json(await self._users.update(user_id, changes)))

    async def logout(self, request: web.Request) -> web.StreamResponse:
        user_id = path_param(request, "uuid")
        await self.authed(request, user_id)
        await self._users.logout(user_id)
        self.audit(request, "logout", actor=user_id, target=user_id)
        return empty_response()

    async def search(self, request: web.Request) -> web.StreamResponse:
        user_id = path_param(request, "user_id")
        await self.authed(request, user_id)
        found = await self._users.search(user_id, path_param(request, "pattern"))
        if found is None:
            return json_response(None)
        user, match_type = found
        is_friend = await self._friends.are_friends(user_id, user.id)
        return json_response(user_with_match_type_json(user, match_type, is_friend))

    async def get(self, request: web.Request) -> web.StreamResponse:
        reader = await self.authed(request)
        user_id = path_param(request, "id")
        return json_response(user_json(await self._users.get(user_id), own=reader == user_id))


def device_info(
    request: web.Request, ip: str, *, platform: str | None = None, client: str | None = None
) -> DeviceInfo:
    """The device a login comes from: what the client says (``platform``, ``client``:
    optional login fields), its ``User-Agent`` and its address."""
    return DeviceInfo(
        platform=platform or "",
        client=client or "",
        user_agent=request.headers.get("User-Agent", ""),
        address=ip,
    )


async def login_json(result: LoginResult, ws_addr: WsAddress) -> dict[str, object]:
    """The answer to a login (by password, or GitHub's callback): the user, the tokens and
    the WebSocket address."""
    return {
        "user": user_json(result.user),
        "token": result.token,
        "refresh_token": result.refresh_token,
        "ws_addr": await ws_addr(),
    }


class WsAddress:
    """Login's ``ws_addr``: the configured address of this process's WebSocket endpoint, or
    (distributed mode) the live gateways' addresses in turn from the registry."""

    def __init__(self, addr: str, *, gateways: GatewayRegistry | None = None) -> None:
        self._addr = addr
        self._gateways = gateways

    def set(self, addr: str) -> None:
        self._addr = addr

    async def __call__(self) -> str:
        if self._gateways is not None:
            addr = await self._gateways.next_ws_addr()
            if addr is None:
                raise InternalServer("no WebSocket gateway is available")
            return addr
        return self._addr
