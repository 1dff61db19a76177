"""Offline sync: the client pulls ``(start, end]`` and ``(send_start, send_end]`` ranges."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from sandcat.errors import BadRequest
from sandcat.ports import Counters, InboxStore, pull_cursor
from sandcat.protocol.msg import Msg

#: Copies read from the inbox per step of a pull: its memory per request, whatever the range.
PULL_PAGE = 256


class SyncService:
    def __init__(
        self,
        *,
        inbox: InboxStore,
        counters: Counters,
        max_messages: int,
        pull_wait_seconds: float = 0.0,
    ) -> None:
        """``pull_wait_seconds``: how long a pull waits for allocated seqs in its range to be
        stored (0 in embedded mode, where a seq is exposed by the commit that stores it)."""
        self._inbox = inbox
        self._counters = counters
        self._max = max_messages
        self._wait = pull_wait_seconds

    async def pull(
        self, user_id: str, *, start: int, end: int, send_start: int, send_end: int, limit: int = 0
    ) -> AsyncIterator[list[Msg]]:
        """The whole requested range unless the caller opts into ``limit`` (paging), oldest
        first, read and handed out in pages of ``PULL_PAGE`` copies (an async iterator of
        pages: the caller streams them, so a pull's memory does not grow with its range).

        A range above the exposed seqs waits (bounded) for them to be stored, and is then
        clamped to what is exposed, so the client never skips a seq it cannot get yet.
        """
        if min(start, end, send_start, send_end) < 0:
            raise BadRequest("sequence bounds must not be negative")
        if limit < 0:
            raise BadRequest("limit must not be negative")
        seq, send_seq = await self._counters.exposed(user_id)
        deadline = asyncio.get_running_loop().time() + self._wait
        while (end > seq or send_end > send_seq) and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
            seq, send_seq = await self._counters.exposed(user_id)
        cap = min(x for x in (limit, self._max) if x > 0) if (limit or self._max) else 0
        return self._pages(
            user_id, (start, min(end, seq), send_start, min(send_end, send_seq)), cap
        )

    async def _pages(
        self, user_id: str, ranges: tuple[int, int, int, int], cap: int
    ) -> AsyncIterator[list[Msg]]:
        after = None
        left = cap or -1  # -1: no cap
        while left:
            size = PULL_PAGE if left < 0 else min(PULL_PAGE, left)
            page = await self._inbox.pull(user_id, *ranges, size, after)
            if page:
                yield page
            if len(page) < size:
                return
            left -= len(page) if left > 0 else 0
            after = pull_cursor(page[-1])

    async def current(self, user_id: str) -> tuple[int, int]:
        return await self._counters.exposed(user_id)

    async def delete(self, user_id: str, seqs: Sequence[int]) -> None:
        if len(seqs) > 10_000:
            raise BadRequest("too many seqs in one request")
        await self._inbox.delete_received(user_id, seqs)
