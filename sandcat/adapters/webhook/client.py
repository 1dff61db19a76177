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
            self._session = aiohttp.ClientSession()
        try:
            async with self._session.post(
                url, data=body, headers=dict(headers), timeout=aiohttp.ClientTimeout(total=timeout)
            ) as response:
                return None if 200 <= response.status < 300 else f"HTTP {response.status}"
        except (aiohttp.ClientError, TimeoutError) as exc:
            return repr(exc)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
