"""ConversationService over fakes: which stored key a peer maps to, what a Read frame's seqs
mark read, the events a change sends, the preview and the sync time."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from sandcat.errors import NotFound
from sandcat.ports import Conversation, LastMessage
from sandcat.protocol.msg import ContentType, Msg
from sandcat.services.conversations import (
    SYNC_OVERLAP_MS,
    UPDATED,
    ConversationService,
    conversation_json,
    preview,
)
from tests.clock import FakeClock
from tests.fakes import FakeEvents, FakeInbox


class FakeStore:
    """``ConversationStore``: fixed conversations of "me"; records the writes."""

    def __init__(self, peers: dict[str, bool]) -> None:
        self.peers = peers  # peer -> is_group
        self.flags: list[tuple[str, str, bool | None, bool | None, bool | None]] = []
        self.reads: list[tuple[str, list[str], int | None]] = []

    def _conv(self, peer: str) -> Conversation:
        last = LastMessage("s1", peer, 1, b"hi", 5)
        return Conversation(peer, self.peers[peer], 3, 1, last, False, False, False, 5)

    async def conversations(self, user_id: str, since_ms: int) -> list[Conversation]:
        return [self._conv(peer) for peer in self.peers]

    async def conversation(self, user_id: str, peer_id: str) -> Conversation | None:
        return self._conv(peer_id) if peer_id in self.peers else None

    async def set_flags(
        self,
        user_id: str,
        conversation_id: str,
        *,
        pinned: bool | None,
        muted: bool | None,
        hidden: bool | None,
        now_ms: int,
    ) -> None:
        self.flags.append((user_id, conversation_id, pinned, muted, hidden))

    async def mark_read(
        self, user_id: str, conversation_ids: Sequence[str], upto: int | None, now_ms: int
    ) -> None:
        self.reads.append((user_id, sorted(conversation_ids), upto))


@pytest.fixture
def parts() -> tuple[ConversationService, FakeStore, FakeInbox, FakeEvents]:
    store, inbox, events = FakeStore({"bob": False, "grp": True}), FakeInbox(), FakeEvents()
    clock = FakeClock()
    service = ConversationService(store=store, inbox=inbox, events=events, clock=clock)
    return service, store, inbox, events


async def test_flags_use_the_pair_key_and_tell_the_users_devices(
    parts: tuple[ConversationService, FakeStore, FakeInbox, FakeEvents],
) -> None:
    service, store, _, events = parts
    await service.update("me", "bob", pinned=True, muted=None, hidden=None)
    await service.update("me", "grp", pinned=None, muted=True, hidden=None)
    assert store.flags == [("me", "bob:me", True, None, None), ("me", "grp", None, True, None)]
    assert events.names("me") == [UPDATED, UPDATED]
    assert events.emitted[0][2]["id"] == "bob" and events.emitted[0][2]["unread"] == 2
    with pytest.raises(NotFound):
        await service.update("me", "stranger", pinned=True, muted=None, hidden=None)
    with pytest.raises(NotFound):
        await service.read("me", "stranger")
    assert len(events.emitted) == 2


async def test_a_read_frame_marks_the_conversations_of_its_seqs(
    parts: tuple[ConversationService, FakeStore, FakeInbox, FakeEvents],
) -> None:
    service, store, inbox, events = parts
    inbox.put("me", Msg(send_id="bob", receiver_id="me", seq=1))
    inbox.put("me", Msg(send_id="bob", receiver_id="me", seq=2))
    inbox.put("me", Msg(send_id="carol", receiver_id="grp", group_id="grp", seq=3))
    await service.read_seqs("me", [])
    await service.read_seqs("me", [99])
    assert store.reads == [] and events.emitted == []
    await service.read_seqs("me", [1, 2, 3])
    assert store.reads == [("me", ["bob:me", "grp"], None)]
    assert sorted(str(data["id"]) for _, _, data in events.emitted) == ["bob", "grp"]
    await service.read("me", "bob", 2)
    assert store.reads[-1] == ("me", ["bob:me"], 2)


async def test_listing_lags_its_sync_time_behind_the_clock(
    parts: tuple[ConversationService, FakeStore, FakeInbox, FakeEvents],
) -> None:
    service, *_ = parts
    convs, sync_time = await service.list("me", 0)
    assert [c.peer_id for c in convs] == ["bob", "grp"]
    assert sync_time == FakeClock().now_ms() - SYNC_OVERLAP_MS
    assert conversation_json(convs[1])["kind"] == "group"


def test_preview_is_the_start_of_a_text_or_a_label() -> None:
    assert preview(ContentType.TEXT, "é".encode() * 150) == "é" * 100
    assert preview(ContentType.TEXT, b"\xff ok") == "\ufffd ok"
    assert preview(ContentType.IMAGE, b"key||a.png||10||png") == "[image]"
    assert preview(ContentType.FILE, b"key||a.pdf||10||pdf") == "[file]"
