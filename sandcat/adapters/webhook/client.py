"""Bots' webhook POSTs (aiohttp client): one session per process, opened on first use."""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp


class AiohttpWebhookPoster:
    """Implements ``WebhookPoster``."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> str | None:
        if self._session is None:
            # No pool-wide cap (aiohttp's default is 100 connections): each bot has at most
            # one POST in flight, so a pool shared with receivers that stall would make other
            # bots' deliveries wait for a free connection, and time out.
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        try:
            # A redirect is not followed but answered as a failed attempt: the URL is the
            # operator's choice, the receiver's 3xx must not send the POST elsewhere (an
            # internal address, docs/security.md).
            async with self._session.post(
                url,
                data=body,
                headers=dict(headers),
                timeout=aiohttp.ClientTimeout(total=timeout),
                allow_redirects=False,
            ) as response:
                return None if 200 <= response.status < 300 else f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return repr(exc)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
