"""GitHub login's calls to GitHub: the code exchange, ``/user``, ``/user/emails``, the avatar.

The endpoints are configuration (``server.oauth2.github``), so the tests point them at a
local provider speaking GitHub's shapes (``tests/oauth_provider.py``). Authlib (which makes
the state, the PKCE pair and the authorize URL in ``sandcat/services/oauth.py``) has async
clients for httpx only: these four calls use the aiohttp the server already runs.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from sandcat.config import GithubOAuthConfig
from sandcat.errors import OAuthProviderError, OAuthRefused
from sandcat.log import get_logger
from sandcat.ports import ProviderAccount, ProviderEmail

log = get_logger(__name__)
USER_AGENT = "Sandcat-Auth"
API_ACCEPT = "application/vnd.github+json"
#: A picture larger than this is left behind (the account gets a default avatar).
AVATAR_BYTES = 1024 * 1024


class GithubClient:
    """Implements ``OAuthProvider``: one short-lived client session per sign-in (they are
    rare), every call bounded by ``timeout_seconds``."""

    def __init__(self, config: GithubOAuthConfig) -> None:
        self._config = config

    def _session(self) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._config.timeout_seconds),
            headers={"User-Agent": USER_AGENT},
        )

    async def sign_in(self, *, code: str, verifier: str, redirect_uri: str) -> ProviderAccount:
        try:
            async with self._session() as session:
                token = await self._exchange(session, code, verifier, redirect_uri)
                user = await self._get(session, self._config.user_info_url, token)
                emails = await self._get(session, self._config.email_url, token)
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.warning("oauth_provider_unreachable", error=repr(exc))
            raise OAuthProviderError("GitHub could not be reached") from exc
        return _account(user, emails)

    async def _exchange(
        self, session: aiohttp.ClientSession, code: str, verifier: str, redirect_uri: str
    ) -> str:
        form = {
            "client_id": self._config.client_id,
            "client_secret": self._config.client_secret,
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "grant_type": "authorization_code",
        }
        async with session.post(
            self._config.token_url, data=form, headers={"Accept": "application/json"}
        ) as response:
            body = await _json(response, "token")
        # GitHub answers a refused code with 200 and an ``error`` field.
        if isinstance(body, dict) and "error" in body:
            log.info("oauth_code_refused", error=str(body.get("error")))
            raise OAuthRefused(f"GitHub refused the code: {body.get('error')}")
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise OAuthProviderError("GitHub's token answer has no access_token")
        return token

    async def _get(self, session: aiohttp.ClientSession, url: str, token: str) -> Any:
        headers = {"Authorization": f"Bearer {token}", "Accept": API_ACCEPT}
        async with session.get(url, headers=headers) as response:
            return await _json(response, url)

    async def fetch_avatar(self, url: str) -> tuple[bytes, str] | None:
        try:
            async with self._session() as session, session.get(url) as response:
                if response.status != 200 or (response.content_length or 0) > AVATAR_BYTES:
                    return None
                data = await response.content.read(AVATAR_BYTES + 1)
                if len(data) > AVATAR_BYTES:
                    return None
                return data, response.content_type
        except (TimeoutError, aiohttp.ClientError) as exc:
            log.info("oauth_avatar_failed", error=repr(exc))
            return None


async def _json(response: aiohttp.ClientResponse, what: str) -> Any:
    """The JSON body of a 2xx answer; 401 and 403 are refusals, anything else a fault."""
    if response.status in {401, 403}:
        raise OAuthRefused(f"GitHub refused the request ({response.status})")
    if response.status // 100 != 2:
        log.warning("oauth_provider_status", call=what, status=response.status)
        raise OAuthProviderError(f"GitHub answered {response.status}")
    try:
        return await response.json(content_type=None)
    except ValueError as exc:
        raise OAuthProviderError("GitHub's answer is not JSON") from exc


def _account(user: Any, emails: Any) -> ProviderAccount:
    if not isinstance(user, dict) or not isinstance(emails, list):
        raise OAuthProviderError("GitHub's user or e-mails answer has the wrong shape")
    subject, login = user.get("id"), user.get("login")
    if (
        not isinstance(subject, int | str)
        or isinstance(subject, bool)
        or not isinstance(login, str)
    ):
        raise OAuthProviderError("GitHub's user has no id or login")
    name, avatar = user.get("name"), user.get("avatar_url")
    return ProviderAccount(
        subject=str(subject),
        login=login,
        name=name if isinstance(name, str) else "",
        avatar_url=avatar if isinstance(avatar, str) else "",
        emails=tuple(
            ProviderEmail(
                address=item["email"],
                primary=item.get("primary") is True,
                verified=item.get("verified") is True,
            )
            for item in emails
            if isinstance(item, dict) and isinstance(item.get("email"), str)
        ),
    )
