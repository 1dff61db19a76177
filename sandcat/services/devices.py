"""Devices: each login is a device with its own refresh-token family (docs/protocol.md,
"Devices").

Every token of a device carries its id (``did``). A refresh token is spent by its use with
``is_refresh`` true (rotation: the answer is the family's next one); presenting a spent
refresh token of a live family again removes the device (theft detection: the thief and
the owner both hold it, and neither can tell the server which of them is which), except
the one spent last, within ``auth.refresh_reuse_grace_seconds`` of its rotation: two tabs
sharing a token renew with it at once, or a client retries a renewal whose answer it lost,
and it is answered with the family's current token (re-issued, fresh expiry) without
rotating again, so every holder ends up with a valid one. A removed
device's access and refresh tokens are refused on the next request, on every process (the
row is read, never a clock), and its open WebSockets are closed with 4002 on every gateway.
Tokens issued before devices were recorded carry no ``did`` and keep the generation check
alone (``sandcat.services.users``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sandcat.config import LimitsConfig
from sandcat.errors import NotFound, UnAuthorized
from sandcat.ids import nanoid
from sandcat.log import get_logger
from sandcat.ports import Clock, Device, DeviceEnder, DeviceStore, Events
from sandcat.services.auth import ACCESS, REFRESH, Claims, TokenService

log = get_logger(__name__)

#: v2 events to the user's own connections when the device list changes.
DEVICE_ADDED = "device.added"
DEVICE_REMOVED = "device.removed"
#: Stored lengths of what a client says about itself.
_USER_AGENT_CHARS = 256


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What a login says about the device it comes from."""

    platform: str = ""
    client: str = ""
    user_agent: str = ""
    address: str = ""


def device_json(device: Device, current: str = "") -> dict[str, object]:
    return {
        "id": device.id,
        "platform": device.platform,
        "client": device.client,
        "user_agent": device.user_agent,
        "address": device.address,
        "first_seen": device.first_seen,
        "last_seen": device.last_seen,
        "current": device.id == current,
    }


class DeviceService:
    def __init__(
        self,
        *,
        devices: DeviceStore,
        tokens: TokenService,
        ender: DeviceEnder,
        events: Events,
        clock: Clock,
        limits: LimitsConfig,
        reuse_grace_seconds: float,
    ) -> None:
        self._devices = devices
        self._tokens = tokens
        self._ender = ender
        self._events = events
        self._clock = clock
        self._limits = limits
        self._grace_ms = round(reuse_grace_seconds * 1000)

    async def start(self, user_id: str, generation: int, info: DeviceInfo) -> tuple[str, str]:
        """A login: record a new device; returns its (access token, refresh token)."""
        device_id = nanoid()
        refresh, refresh_id = self._tokens.issue_with_id(user_id, REFRESH, generation, device_id)
        now = self._clock.now_ms()
        chars = self._limits.name_chars
        device = Device(
            id=device_id,
            user_id=user_id,
            platform=info.platform[:chars],
            client=info.client[:chars],
            user_agent=info.user_agent[:_USER_AGENT_CHARS],
            address=info.address,
            first_seen=now,
            last_seen=now,
        )
        evicted = await self._devices.add_device(device, refresh_id, self._limits.devices_per_user)
        await self._ended(user_id, evicted)
        await self._events.emit([user_id], DEVICE_ADDED, device_json(device))
        return self._tokens.issue(user_id, ACCESS, generation, device_id), refresh

    async def refresh(self, claims: Claims, is_refresh: bool, address: str) -> str:
        """A refresh token (generation already checked) -> the family's next refresh token
        (``is_refresh``, the presented one is spent) or an access token."""
        user_id, device_id = claims.user_id, claims.device_id
        if not device_id:
            return self._tokens.issue(user_id, REFRESH if is_refresh else ACCESS, claims.generation)
        if is_refresh:
            token, next_id = self._tokens.issue_with_id(
                user_id, REFRESH, claims.generation, device_id
            )
        else:
            token = self._tokens.issue(user_id, ACCESS, claims.generation, device_id)
            next_id = claims.token_id
        now = self._clock.now_ms()
        current = await self._devices.use_refresh(
            user_id, device_id, claims.token_id, next_id, address, now, self._grace_ms
        )
        if current is None:
            if await self.remove(user_id, [device_id]):
                log.warning("refresh_token_reused", user_id=user_id, device_id=device_id)
                raise UnAuthorized("this refresh token was already used: the device is logged out")
            raise UnAuthorized("this device was logged out; log in again")
        if current not in (claims.token_id, next_id):
            # The previous token replayed within the grace: nothing rotated.
            log.info("refresh_token_replayed_within_grace", user_id=user_id, device_id=device_id)
            if is_refresh:
                return self._tokens.issue_with_id(
                    user_id, REFRESH, claims.generation, device_id, token_id=current
                )[0]
        return token

    async def of_user(self, user_id: str) -> list[Device]:
        return await self._devices.devices(user_id)

    async def remove(self, user_id: str, device_ids: list[str]) -> list[str]:
        """Log those devices out (remote logout); returns those that were the user's."""
        removed = await self._devices.remove(user_id, device_ids)
        await self._ended(user_id, removed)
        return removed

    async def remove_one(self, user_id: str, device_id: str) -> None:
        if not await self.remove(user_id, [device_id]):
            raise NotFound("no such device")

    async def remove_others(self, user_id: str, keep: str) -> list[str]:
        """Log out every device of the user but ``keep`` (the caller's own)."""
        removed = await self._devices.remove(user_id, keep=keep)
        await self._ended(user_id, removed)
        return removed

    async def forget_all(self, user_id: str) -> None:
        """Logout or a password change: every device goes (their sockets are closed by the
        caller, all at once)."""
        await self._devices.remove(user_id)

    async def _ended(self, user_id: str, device_ids: list[str]) -> None:
        if not device_ids:
            return
        for device_id in device_ids:
            await self._ender.end_device(user_id, device_id)
        await self._events.emit([user_id], DEVICE_REMOVED, {"ids": device_ids})
        log.info("devices_logged_out", user_id=user_id, device_ids=device_ids)
