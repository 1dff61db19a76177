"""Offline sync: the client pulls ``(start, end]`` and ``(send_start, send_end]`` ranges."""

from __future__ import annotations

from collections.abc import Sequence

from sandcat.errors import BadRequest
from sandcat.ports import InboxStore
from sandcat.protocol.msg import Msg


class SyncService:
    def __init__(self, *, inbox: InboxStore, max_messages: int) -> None:
        self._inbox = inbox
        self._max = max_messages

    async def pull(
        self, user_id: str, *, start: int, end: int, send_start: int, send_end: int, limit: int = 0
    ) -> list[Msg]:
        """The whole requested range unless the caller opts into ``limit`` (paging)."""
        if min(start, end, send_start, send_end) < 0:
            raise BadRequest("sequence bounds must not be negative")
        if limit < 0:
            raise BadRequest("limit must not be negative")
        cap = min(x for x in (limit, self._max) if x > 0) if (limit or self._max) else 0
        return await self._inbox.pull(user_id, start, end, send_start, send_end, cap)

    async def current(self, user_id: str) -> tuple[int, int]:
        return await self._inbox.current_seqs(user_id)

    async def delete(self, user_id: str, seqs: Sequence[int]) -> None:
        if len(seqs) > 10_000:
            raise BadRequest("too many seqs in one request")
        await self._inbox.delete_received(user_id, seqs)
