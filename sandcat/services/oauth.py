"""Sign-in with GitHub: the authorisation-code flow with ``state`` and PKCE (S256).

``start`` keeps a random ``state`` with the PKCE verifier (and, for a browser, a key of its
own that the API sets as a cookie) for ``state_ttl_seconds`` and answers GitHub's authorize
URL; ``finish`` takes the state once, exchanges the code with the verifier, reads the
account and its e-mails, and signs in the linked user, the user whose e-mail is the
account's primary verified one (linking it), or a new user. ``docs/protocol.md``, "GitHub
login", has the routes and errors.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass

from authlib.common.security import generate_token
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from sandcat.config import GithubOAuthConfig, LimitsConfig
from sandcat.domain import UserRecord
from sandcat.errors import BadRequest, Forbidden, NotFound, OAuthState
from sandcat.ids import nanoid
from sandcat.log import get_logger
from sandcat.ports import (
    Clock,
    OAuthLinks,
    OAuthProvider,
    OAuthStates,
    ProviderAccount,
    RateLimiter,
    UserStore,
    WindowRule,
)
from sandcat.services.devices import DeviceInfo
from sandcat.services.files import FileService
from sandcat.services.ratelimit import Limit
from sandcat.services.users import LoginResult, UserService

log = get_logger(__name__)
PROVIDER = "github"
#: RFC 7636 allows 43 to 128 characters; 64 letters and digits carry about 380 bits.
VERIFIER_CHARS = 64
STATE_CHARS = 32
#: New accounts are named after the GitHub login; another user's account (or phone) with
#: that name gets ``login-2``, ``login-3``... and after these, a random suffix.
NAME_TRIES = 20
_ACCOUNT_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
_AVATAR_EXT = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp"}


@dataclass(frozen=True, slots=True)
class Started:
    """Where to send the user, and (a sign-in begun in a browser) the key the browser must
    bring back to the callback, as a cookie."""

    url: str
    browser_key: str


@dataclass(frozen=True, slots=True)
class SignedIn:
    login: LoginResult
    #: A new account was made for this GitHub account.
    created: bool
    #: The sign-in was begun in a browser (the built-in page) and came back with its
    #: cookie: only then may the answer go to the page.
    browser: bool
    #: What the page gave at the start, handed back with the answer: the page takes only
    #: the answer to the sign-in it began (a link made by someone else has no such nonce).
    nonce: str = ""


class OAuthService:
    def __init__(
        self,
        *,
        config: GithubOAuthConfig,
        states: OAuthStates,
        links: OAuthLinks,
        provider: OAuthProvider,
        users: UserStore,
        accounts: UserService,
        files: FileService,
        clock: Clock,
        limits: LimitsConfig,
        limiter: RateLimiter,
    ) -> None:
        self._config = config
        self._states = states
        self._links = links
        self._provider = provider
        self._users = users
        self._accounts = accounts
        self._files = files
        self._clock = clock
        self._limits = limits
        # Each start stores a state until it expires: bounded per address like logins.
        # The states are kept where the counts are (Redis in distributed mode): while it
        # is down no sign-in could start anyway.
        self._starts_per_ip = Limit(
            limiter,
            WindowRule("oauth_start_ip", limits.login_per_minute_per_ip, 60, "refuse"),
            "GitHub sign-ins",
        )

    @property
    def enabled(self) -> bool:
        return self._config.enabled

    def redirect_uri(self, own_callback: str) -> str:
        """The configured ``redirect_url``, else the API's own callback."""
        return self._config.redirect_url or own_callback

    def _check_enabled(self) -> None:
        if not self.enabled:
            raise NotFound("GitHub login is not configured on this server")

    async def start(self, *, redirect_uri: str, browser: bool, ip: str, nonce: str = "") -> Started:
        self._check_enabled()
        if nonce and (not browser or not _NONCE.fullmatch(nonce)):
            raise BadRequest("nonce: 16 to 64 letters, digits, '-' or '_', with web=true only")
        await self._starts_per_ip.hit(ip)
        state = generate_token(STATE_CHARS)
        verifier = generate_token(VERIFIER_CHARS)
        browser_key = generate_token(STATE_CHARS) if browser else ""
        pending = {
            "verifier": verifier,
            "redirect_uri": redirect_uri,
            "browser": browser_key,
            "nonce": nonce,
        }
        await self._states.put_state(state, json.dumps(pending), self._config.state_ttl_seconds)
        url = prepare_grant_uri(
            self._config.auth_url,
            self._config.client_id,
            "code",
            redirect_uri=redirect_uri,
            scope=self._config.scope,
            state=state,
            code_challenge=create_s256_code_challenge(verifier),  # type: ignore[no-untyped-call]
            code_challenge_method="S256",
        )
        return Started(url=url, browser_key=browser_key)

    async def finish(
        self, *, code: str, state: str, browser_key: str, device: DeviceInfo
    ) -> SignedIn:
        """400 ``OAuthState`` for a state that is unknown, expired, used or (begun in a
        browser) brought back by another browser; the provider's refusals are
        ``OAuthRefused`` (401) and ``OAuthProvider`` (502); a disabled user is 403."""
        self._check_enabled()
        if not code or not state:
            raise BadRequest("code and state are required")
        raw = await self._states.take_state(state)
        if raw is None:
            raise OAuthState("the sign-in is unknown, expired or already finished")
        pending = json.loads(raw)
        expected = str(pending["browser"])
        if expected and not secrets.compare_digest(expected, browser_key):
            raise OAuthState("the sign-in was begun in another browser")
        account = await self._provider.sign_in(
            code=code, verifier=str(pending["verifier"]), redirect_uri=str(pending["redirect_uri"])
        )
        user, created = await self._user_for(account)
        result = await self._accounts.sign_in(user, device)
        log.info("oauth_login", provider=PROVIDER, user_id=user.id, created=created)
        return SignedIn(
            login=result,
            created=created,
            browser=bool(expected),
            nonce=str(pending.get("nonce", "")),
        )

    async def _user_for(self, account: ProviderAccount) -> tuple[UserRecord, bool]:
        linked = await self._links.linked_user(PROVIDER, account.subject)
        if linked is not None:
            return await self._existing(linked), False
        email = next((e.address for e in account.emails if e.primary and e.verified), None)
        if email is not None:
            owner = await self._owner_of(email)
            if owner is not None:
                return await self._link(account, owner), False
        user = await self._create(account, email)
        return await self._link(account, user), True

    async def _existing(self, user_id: str) -> UserRecord:
        user = await self._users.get_user(user_id)
        if user is None:
            raise Forbidden("the account linked to this GitHub account was deleted")
        return user

    async def _owner_of(self, email: str) -> UserRecord | None:
        """The user whose e-mail is ``email``, whatever its case (as logins match)."""
        user = await self._users.find_login(email)
        if user is None or (user.email or "").lower() != email.lower():
            return None
        return user

    async def _link(self, account: ProviderAccount, user: UserRecord) -> UserRecord:
        """Link and return the linked user (another callback's, if one linked it first)."""
        now = self._clock.now_ms()
        linked = await self._links.link(PROVIDER, account.subject, user.id, now)
        if linked != user.id:
            return await self._existing(linked)
        log.info("oauth_linked", provider=PROVIDER, user_id=user.id)
        return user

    async def _create(self, account: ProviderAccount, email: str | None) -> UserRecord:
        if email is not None and await self._users.email_taken(email):
            email = None  # a deleted account's address: the new account goes without
        now = self._clock.now_ms()
        name = (account.name.strip() or account.login)[: self._limits.name_chars]
        user = UserRecord(
            id=nanoid(),
            name=name or "GitHub user",
            account=await self._free_account(account.login),
            password="",
            salt="",
            avatar=await self._avatar(account.avatar_url),
            email=email,
            create_time=now,
            update_time=now,
        )
        await self._users.insert_user(user)
        log.info("user_registered", user_id=user.id, provider=PROVIDER)
        return user

    async def _free_account(self, login: str) -> str:
        base = _ACCOUNT_CHARS.sub("", login)[: self._limits.name_chars - 8] or "github"
        for n in range(1, NAME_TRIES + 1):
            candidate = base if n == 1 else f"{base}-{n}"
            if await self._users.find_login(candidate) is None:
                return candidate
        return f"{base}-{nanoid()[:8]}"

    async def _avatar(self, url: str) -> str:
        """GitHub's picture, copied into the avatar bucket; a default one without it."""
        picture = await self._provider.fetch_avatar(url) if url else None
        if picture is None or picture[1] not in _AVATAR_EXT:
            return "avatar1.png"
        data, content_type = picture
        name = f"github.{_AVATAR_EXT[content_type]}"
        return await self._files.upload(self._files.avatar_bucket, name, data, content_type)
