"""The msg-server's seq release and presence lookup in one Redis round trip.

Once a batch is stored the msg-server releases its seqs (``MARK_STORED_LUA``, see
``sandcat.adapters.redis.seqs``) and then needs the presence of the users whose pushes the new
watermarks allow (``LOCATE_LUA``, see ``sandcat.adapters.redis.presence``). Both scripts go
out in one pipeline without MULTI: one write, one wait, the replies in order. Redis runs the
release before the lookup, so a user who connects after the lookup connected after the
release, and the pull that follows every connect reaches the released seqs.

The scripts are sent by their SHA alone: redis-py's pipeline would ask ``SCRIPT EXISTS``
before every execution, a round trip of its own. A server that does not hold them
(restarted, flushed) answers NOSCRIPT without running anything; they are loaded then and
the pipeline is sent once more.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import NoScriptError

from sandcat.adapters.redis.client import redis_errors
from sandcat.adapters.redis.presence import LOCATE_LUA, add_located, locate_chunks, locate_keys
from sandcat.adapters.redis.seqs import (
    MARK_STORED_LUA,
    StoredSeqs,
    exposed_marks,
    mark_stored_call,
    stored_by_user,
)
from sandcat.ports import Located


class RedisSeqRelease:
    """Implements ``SeqRelease`` (one pipeline: the release, then one lookup per
    ``CHUNK`` users)."""

    def __init__(self, *, client: Redis) -> None:
        self._redis = client
        self._mark_stored = client.register_script(MARK_STORED_LUA)
        self._locate = client.register_script(LOCATE_LUA)

    async def release(
        self, items: Sequence[tuple[str, int, int]]
    ) -> tuple[dict[str, tuple[int, int]], Located]:
        stored = stored_by_user(items)
        if not stored:
            return {}, {}
        chunks = locate_chunks(list(stored))
        with redis_errors("release"):
            replies = await self._send(stored, chunks)
            if any(isinstance(reply, NoScriptError) for reply in replies):
                for script in (self._mark_stored, self._locate):
                    await self._redis.script_load(script.script)
                replies = await self._send(stored, chunks)
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        found: Located = {}
        for chunk, reply in zip(chunks, replies[1:], strict=True):
            add_located(found, chunk, reply)
        return exposed_marks(stored, replies[0]), found

    async def _send(self, stored: StoredSeqs, chunks: list[Sequence[str]]) -> list[Any]:
        """One pipeline: the release, then the lookups; each reply or error in order."""
        keys, args = mark_stored_call(stored)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.evalsha(self._mark_stored.sha, len(keys), *keys, *args)
            for chunk in chunks:
                lookup = locate_keys(chunk)
                pipe.evalsha(self._locate.sha, len(lookup), *lookup)
            replies: list[Any] = await pipe.execute(raise_on_error=False)
        return replies
