"""Users: e-mail codes, registration, login, tokens, profile, password change, search."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass

from sandcat.config import AuthConfig, LimitsConfig
from sandcat.domain import UserChanges, UserRecord
from sandcat.errors import (
    AccountOrPassword,
    BadRequest,
    CodeIsExpired,
    CodeIsInvalid,
    Forbidden,
    NotFound,
    UnAuthorized,
)
from sandcat.ids import nanoid
from sandcat.log import get_logger
from sandcat.ports import (
    Clock,
    CodeStore,
    Mailer,
    RateLimiter,
    SessionEnder,
    UserStore,
    WindowRule,
)
from sandcat.services.auth import ACCESS, REFRESH, Claims, PasswordService, TokenService
from sandcat.services.devices import DeviceInfo, DeviceService
from sandcat.services.ratelimit import Limit, hit_all, refund_all

log = get_logger(__name__)
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,190}\.[^@\s]{1,63}$")
#: Digits with an optional leading ``+``; E.164 numbers have at most 15 digits, 20 leaves
#: room for an extension.
_PHONE = re.compile(r"^\+?[0-9]{3,20}$")


@dataclass(frozen=True, slots=True)
class LoginResult:
    user: UserRecord
    token: str
    refresh_token: str


def check_email(email: str) -> str:
    email = email.strip()
    if not _EMAIL.match(email):
        raise BadRequest("invalid e-mail address")
    return email


class UserService:
    def __init__(
        self,
        *,
        users: UserStore,
        codes: CodeStore,
        mailer: Mailer,
        passwords: PasswordService,
        tokens: TokenService,
        clock: Clock,
        auth: AuthConfig,
        limits: LimitsConfig,
        sessions: SessionEnder,
        devices: DeviceService,
        limiter: RateLimiter,
    ) -> None:
        self._users = users
        self._sessions = sessions
        self._devices = devices
        self._codes = codes
        self._mailer = mailer
        self._passwords = passwords
        self._tokens = tokens
        self._clock = clock
        self._code_ttl = auth.code_ttl_seconds
        self._limits = limits
        self._limiter = limiter
        # Codes are stored in the same Redis as the counts (distributed mode): while it is
        # down none could be checked, so no mail is sent either ("refuse"). Logins fall
        # back to this process's counts ("local"): an outage must not lock everybody out.
        self._code_per_email = Limit(
            limiter,
            WindowRule("code_email", limits.code_sends_per_5_minutes_per_email, 300, "refuse"),
            "code requests for this e-mail",
        )
        self._code_per_ip = Limit(
            limiter,
            WindowRule("code_ip", limits.code_sends_per_minute_per_ip, 60, "refuse"),
            "code requests",
        )
        # Failed logins are counted per (account, address) with a tight budget, so a third
        # party cannot lock the owner out from elsewhere, and per account across every
        # address with a much larger one, which a distributed guesser still meets.
        self._failures_per_account_ip = Limit(
            limiter,
            WindowRule(
                "login_failures_account_ip",
                limits.login_failures_per_minute_per_account_and_ip,
                60,
                "local",
            ),
            "failed logins for this account from this address",
        )
        self._failures_per_account = Limit(
            limiter,
            WindowRule("login_failures_account", limits.login_per_minute_per_account, 60, "local"),
            "failed logins for this account",
        )
        self._login_per_ip = Limit(
            limiter,
            WindowRule("login_ip", limits.login_per_minute_per_ip, 60, "local"),
            "login attempts",
        )

    async def send_code(self, email: str, ip: str) -> None:
        email = check_email(email)
        await hit_all(
            self._limiter, [(self._code_per_ip, ip), (self._code_per_email, email.lower())]
        )
        code = f"{secrets.randbelow(900000) + 100000}"
        await self._mailer.send_code(email, code)
        await self._codes.put_code(email, code, self._code_ttl)

    async def _consume_code(self, email: str, code: str) -> None:
        stored = await self._codes.get_code(email)
        if stored is None:
            raise CodeIsExpired("the code has expired or was never sent")
        if not secrets.compare_digest(stored, code.strip()):
            await self._codes.record_failure(email, self._limits.code_attempts)
            raise CodeIsInvalid("the code is wrong")
        await self._codes.delete_code(email)

    def _check_name(self, name: str) -> str:
        name = name.strip()
        if not name:
            raise BadRequest("name must not be empty")
        if len(name) > self._limits.name_chars:
            raise BadRequest(f"name is longer than {self._limits.name_chars} characters")
        return name

    def _check_field(self, field: str, value: str | None) -> None:
        """400 when a free-text profile field is over ``limits.profile_field_chars``."""
        if value is not None and len(value) > self._limits.profile_field_chars:
            raise BadRequest(
                f"{field} is longer than {self._limits.profile_field_chars} characters"
            )

    async def register(
        self, *, name: str, email: str, password: str, code: str, avatar: str
    ) -> UserRecord:
        email = check_email(email)
        name = self._check_name(name)
        self._check_field("avatar", avatar)
        if not password:
            raise BadRequest("password must not be empty")
        if await self._users.email_taken(email):
            raise BadRequest("this e-mail address is already registered")
        await self._consume_code(email, code)
        password_hash = await self._passwords.hash(password)
        now = self._clock.now_ms()
        user_id = nanoid()
        user = UserRecord(
            id=user_id,
            name=name,
            account=user_id,
            password=password_hash,
            salt=PasswordService.salt_of(password_hash),
            avatar=avatar or "avatar1.png",
            email=email,
            create_time=now,
            update_time=now,
        )
        await self._users.insert_user(user)
        log.info("user_registered", user_id=user_id)
        return user

    async def login(
        self, account: str, password: str, ip: str, device: DeviceInfo | None = None
    ) -> LoginResult:
        """Check the password and record the device the login comes from (its tokens)."""
        if not account or not password:
            raise BadRequest("account and password must not be empty")
        # Each attempt is counted as a failure before the (slow) verification and refunded
        # when the password is right, so attempts in flight are bounded too. Unknown
        # accounts are counted the same way: the answers do not tell them apart. The three
        # budgets are one limiter call, all or nothing: a refused attempt counts in none.
        key = account.lower()
        failures = [
            (self._failures_per_account_ip, f"{key}\n{ip}"),
            (self._failures_per_account, key),
        ]
        await hit_all(self._limiter, [(self._login_per_ip, ip), *failures])
        user = await self._users.find_login(account)
        if user is None:
            # Same cost and same answer as a wrong password: no account enumeration.
            await self._passwords.burn(password)
            raise AccountOrPassword("wrong account or password")
        if not user.password or not await self._passwords.verify(user.password, password):
            raise AccountOrPassword("wrong account or password")
        await refund_all(self._limiter, failures)
        # A disabled account is told only to whoever knows the password.
        return await self.sign_in(user, device or DeviceInfo(address=ip))

    async def sign_in(self, user: UserRecord, device: DeviceInfo | None = None) -> LoginResult:
        """The tokens of a user who proved who they are (a password, or GitHub login) on a
        new device (``DeviceService.start``); 403 for a disabled account."""
        if user.disabled:
            raise Forbidden("this account is disabled")
        generation = await self._users.token_generation(user.id)
        token, refresh_token = await self._devices.start(
            user.id, generation, device or DeviceInfo()
        )
        return LoginResult(user=user, token=token, refresh_token=refresh_token)

    async def _check_generation(self, claims: Claims) -> None:
        """Revocation compares generations, never clocks: a token issued before a logout
        carries a lower generation than the user's row, however close in time the two were."""
        if claims.generation < await self._users.token_generation(claims.user_id):
            raise UnAuthorized("the session has ended; log in again")

    async def refresh(self, refresh_token: str, is_refresh: bool, ip: str = "") -> str:
        """A refresh token -> a new access token, or (``is_refresh``) the device's next
        refresh token, the presented one being spent (``DeviceService.refresh``)."""
        claims = self._tokens.verify(refresh_token, REFRESH)
        await self._check_generation(claims)
        return await self._devices.refresh(claims, is_refresh, ip)

    async def logout(self, user_id: str) -> None:
        """End every session of the user: every token issued so far is refused."""
        await self._users.revoke_tokens(user_id)
        await self._devices.forget_all(user_id)
        await self._sessions.end_sessions(user_id)
        log.info("user_logged_out", user_id=user_id)

    async def get(self, user_id: str) -> UserRecord:
        user = await self._users.get_user(user_id)
        if user is None:
            raise NotFound("no such user")
        return user

    async def update(self, user_id: str, changes: UserChanges) -> UserRecord:
        """``PUT /user``: the profile. The e-mail is the account's login and its password
        reset channel, so it is not changed here (the web client sends it back unchanged,
        which is accepted): a new address goes through ``change_email`` with a code."""
        if changes.name is not None and changes.name.strip():
            changes.name = self._check_name(changes.name)
        for field in ("avatar", "gender", "address", "region", "signature"):
            self._check_field(field, getattr(changes, field))
        if changes.phone is not None and changes.phone.strip():
            changes.phone = changes.phone.strip()
            if not _PHONE.match(changes.phone):
                raise BadRequest("phone must be 3 to 20 digits, with an optional leading +")
        if changes.email and changes.email.strip():
            current = await self.get(user_id)
            if (current.email or "").lower() != changes.email.strip().lower():
                raise BadRequest(
                    "the e-mail address changes only with a code sent to the new address: "
                    "POST /user/mail/send, then PUT /user/email"
                )
        changes.email = None
        user = await self._users.update_user(user_id, changes, self._clock.now_ms())
        if user is None:
            raise NotFound("no such user")
        return user

    async def change_email(self, *, user_id: str, email: str, code: str) -> UserRecord:
        """Move the account to ``email``, proven by the code sent there; the address must
        not be another account's, whatever its case."""
        email = check_email(email)
        if await self._users.email_taken(email):
            current = await self.get(user_id)
            if (current.email or "").lower() != email.lower():
                raise BadRequest("this e-mail address is already registered")
        await self._consume_code(email, code)
        user = await self._users.update_user(
            user_id, UserChanges(email=email), self._clock.now_ms()
        )
        if user is None:
            raise NotFound("no such user")
        log.info("user_email_changed", user_id=user_id)
        return user

    async def change_password(self, *, user_id: str, email: str, password: str, code: str) -> None:
        user = await self._users.get_user(user_id)
        if user is None or not user.email or user.email.lower() != email.strip().lower():
            raise BadRequest("the e-mail address is not the user's")
        if not password:
            raise BadRequest("password must not be empty")
        await self._consume_code(user.email, code)
        password_hash = await self._passwords.hash(password)
        await self._users.set_password(
            user_id, password_hash, PasswordService.salt_of(password_hash), self._clock.now_ms()
        )
        # A new password ends every session the old one opened.
        await self._users.revoke_tokens(user_id)
        await self._devices.forget_all(user_id)
        await self._sessions.end_sessions(user_id)
        log.info("user_password_changed", user_id=user_id)

    async def search(self, user_id: str, pattern: str) -> tuple[UserRecord, str] | None:
        pattern = pattern.strip()
        if not 1 <= len(pattern) <= self._limits.search_pattern_chars:
            raise BadRequest(f"pattern must be 1 to {self._limits.search_pattern_chars} characters")
        return await self._users.search_user(pattern, user_id)

    async def authenticate(self, token: str) -> str:
        """The user id of a valid, unrevoked access token."""
        return (await self.session(token)).user_id

    async def session(self, token: str) -> Claims:
        """The claims of a valid access token whose generation and device are not revoked."""
        if not token:
            raise UnAuthorized("a token is required")
        claims = self._tokens.verify(token, ACCESS)
        await self.check_session(claims)
        return claims

    async def check_session(self, claims: Claims) -> None:
        """Refuse the claims of a session that ended (logout, password change) or of a
        device that was logged out; the gateway asks again once a socket is registered."""
        if not claims.device_id:
            await self._check_generation(claims)
            return
        # One round trip for both checks: they run on every request and WebSocket connect.
        generation, active = await self._users.session_state(claims.user_id, claims.device_id)
        if claims.generation < generation:
            raise UnAuthorized("the session has ended; log in again")
        if not active:
            raise UnAuthorized("this device was logged out; log in again")
