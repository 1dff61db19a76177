"""Server-side conversations (docs/protocol.md, "Conversations"): listing, flags, reads.

The message stores keep each conversation's count and last message as they store it
(``ConversationStore``); this service reads them, changes one user's state (pinned, muted,
hidden, ``read_n``), and tells the user's v2 devices with a ``conversation.updated`` event.
"""

from __future__ import annotations

from collections.abc import Sequence

from sandcat.domain import conversation_id
from sandcat.errors import NotFound
from sandcat.log import get_logger
from sandcat.ports import Clock, Conversation, ConversationStore, Events, InboxStore
from sandcat.protocol.msg import ContentType
from sandcat.util.tasks import run_all

log = get_logger(__name__)

#: The v2 event a change of one user's conversation sends to all their v2 connections.
UPDATED = "conversation.updated"
#: ``sync_time`` lags the clock by this much, so a change stamped just before a listing but
#: committed just after it is listed again by the next incremental sync (at worst twice).
SYNC_OVERLAP_MS = 30_000
#: Characters of a text message shown as a preview.
PREVIEW_CHARS = 100
_LABELS: dict[int, str] = {
    ContentType.IMAGE: "[image]",
    ContentType.VIDEO: "[video]",
    ContentType.AUDIO: "[audio]",
    ContentType.FILE: "[file]",
    ContentType.EMOJI: "[emoji]",
    ContentType.VIDEO_CALL: "[video call]",
    ContentType.AUDIO_CALL: "[audio call]",
}


def preview(content_type: int, content: bytes) -> str:
    """A short text for a message: the start of a text, a label for anything else."""
    label = _LABELS.get(content_type)
    if label is not None:
        return label
    return content[: PREVIEW_CHARS * 4].decode("utf-8", "replace")[:PREVIEW_CHARS]


def conversation_json(conv: Conversation) -> dict[str, object]:
    last = conv.last
    return {
        "id": conv.peer_id,
        "kind": "group" if conv.is_group else "single",
        "seq": conv.n,
        "read_seq": conv.read_n,
        "unread": max(0, conv.n - conv.read_n),
        "last": None
        if last is None
        else {
            "server_id": last.server_id,
            "send_id": last.sender,
            "content_type": last.content_type,
            "preview": preview(last.content_type, last.content),
            "send_time": last.time,
        },
        "pinned": conv.pinned,
        "muted": conv.muted,
        "hidden": conv.hidden,
        "update_time": conv.update_time,
    }


class ConversationService:
    def __init__(
        self, *, store: ConversationStore, inbox: InboxStore, events: Events, clock: Clock
    ) -> None:
        self._store = store
        self._inbox = inbox
        self._events = events
        self._clock = clock

    async def list(self, user_id: str, since_ms: int) -> tuple[list[Conversation], int]:
        """The user's conversations changed after ``since_ms``, and the ``since`` to pass
        next time."""
        sync_time = self._clock.now_ms() - SYNC_OVERLAP_MS
        return await self._store.conversations(user_id, since_ms), max(0, sync_time)

    async def _existing(self, user_id: str, peer_id: str) -> Conversation:
        conv = await self._store.conversation(user_id, peer_id)
        if conv is None:
            raise NotFound(f"no conversation with {peer_id}: not a friend or a group of yours")
        return conv

    async def _changed(self, user_id: str, peer_id: str) -> Conversation:
        """The conversation as it is now, sent to the user's v2 devices."""
        conv = await self._existing(user_id, peer_id)
        await self._events.emit([user_id], UPDATED, conversation_json(conv))
        return conv

    async def update(
        self,
        user_id: str,
        peer_id: str,
        *,
        pinned: bool | None,
        muted: bool | None,
        hidden: bool | None,
    ) -> Conversation:
        conv = await self._existing(user_id, peer_id)
        await self._store.set_flags(
            user_id,
            conversation_id(user_id, peer_id, is_group=conv.is_group),
            pinned=pinned,
            muted=muted,
            hidden=hidden,
            now_ms=self._clock.now_ms(),
        )
        return await self._changed(user_id, peer_id)

    async def read(self, user_id: str, peer_id: str, upto: int | None = None) -> Conversation:
        """Mark the conversation read up to its ``seq`` now (or ``upto``, when lower)."""
        conv = await self._existing(user_id, peer_id)
        key = conversation_id(user_id, peer_id, is_group=conv.is_group)
        await self._store.mark_read(user_id, [key], upto, self._clock.now_ms())
        return await self._changed(user_id, peer_id)

    async def read_seqs(self, user_id: str, seqs: Sequence[int]) -> None:
        """A Read frame: the conversations of those received seqs are read up to now."""
        if not seqs:
            return
        origins = await self._inbox.origins(user_id, seqs)
        peers = {group_id or send_id: bool(group_id) for send_id, group_id in origins}
        if not peers:
            return
        keys = [conversation_id(user_id, peer, is_group=group) for peer, group in peers.items()]
        await self._store.mark_read(user_id, keys, None, self._clock.now_ms())
        # One lookup and one event per conversation, none waiting for another's.
        convs = await run_all(self._store.conversation(user_id, p) for p in peers)
        await run_all(
            self._events.emit([user_id], UPDATED, conversation_json(conv))
            for conv in convs
            if conv is not None
        )
