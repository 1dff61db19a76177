"""``/user/devices`` routes (each login is a device: list, remote logout, log out everywhere
else) and ``PUT /friend/{fs_id}/read`` (friendship read status)."""

from __future__ import annotations

from aiohttp import web

from sandcat.api.common import Handler, bearer_token, empty_response, json_response, path_param
from sandcat.api.users import UserRoutes
from sandcat.services.devices import DeviceService, device_json
from sandcat.services.friends import FriendService
from sandcat.services.users import UserService


class DeviceRoutes:
    def __init__(
        self,
        *,
        users: UserService,
        devices: DeviceService,
        friends: FriendService,
        auth: UserRoutes,
    ) -> None:
        self._users = users
        self._devices = devices
        self._friends = friends
        self._auth = auth

    def routes(self) -> list[tuple[str, str, Handler]]:
        # Registered before ``GET /user/{id}``, which would read `devices` as a user id.
        return [
            ("GET", "/user/devices", self.list),
            ("POST", "/user/devices/logout-others", self.logout_others),
            ("DELETE", "/user/devices/{device_id}", self.logout_device),
            ("PUT", "/friend/{fs_id}/read", self.friendship_read),
        ]

    async def list(self, request: web.Request) -> web.StreamResponse:
        """The user's devices, most recently seen first; ``current``: the caller's own."""
        claims = await self._users.session(bearer_token(request))
        devices = await self._devices.of_user(claims.user_id)
        return json_response([device_json(device, claims.device_id) for device in devices])

    async def logout_device(self, request: web.Request) -> web.StreamResponse:
        """Remote logout: the device's tokens are refused and its sockets closed (4002)."""
        user_id = await self._auth.authed(request)
        device_id = path_param(request, "device_id")
        await self._devices.remove_one(user_id, device_id)
        self._auth.audit(request, "device_logout", actor=user_id, target=device_id)
        return empty_response()

    async def logout_others(self, request: web.Request) -> web.StreamResponse:
        """Log out every device of the user but the caller's own; answers the removed ids."""
        claims = await self._users.session(bearer_token(request))
        removed = await self._devices.remove_others(claims.user_id, claims.device_id)
        self._auth.audit(
            request, "devices_logout_others", actor=claims.user_id, target=claims.user_id
        )
        return json_response({"removed": removed})

    async def friendship_read(self, request: web.Request) -> web.StreamResponse:
        """The receiver read the friend request: the friend sync stops re-delivering it."""
        user_id = await self._auth.authed(request)
        await self._friends.mark_read(user_id, path_param(request, "fs_id"))
        return empty_response()
