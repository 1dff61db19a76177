"""MessageService's accept rules over in-process fakes (``tests/fakes.py``): who may send
what to whom, what is stored (with which receivers and idempotency key), what is only
relayed, and what is refused with an error ack."""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from sandcat.config import LimitsConfig
from sandcat.domain import Stored, idempotency_key
from sandcat.errors import NotFound
from sandcat.protocol.msg import Msg, MsgType
from sandcat.services.groups import GroupService
from sandcat.services.messages import MessageRefused, MessageService
from tests.clock import FakeClock
from tests.fakes import (
    FakeFriends,
    FakeInbox,
    FakeLog,
    FakeRelay,
    FakeUsers,
    group_service,
)


class FakeReads:
    """``ConversationReads`` and ``FriendshipReader``: the Read frames' seqs and the friend
    requests marked read, per user."""

    def __init__(self) -> None:
        self.reads: list[tuple[str, list[int]]] = []
        self.friendships: list[tuple[str, str]] = []

    async def read_seqs(self, user_id: str, seqs: Sequence[int]) -> None:
        self.reads.append((user_id, list(seqs)))

    async def mark_read(self, user_id: str, fs_id: str) -> None:
        """``FriendshipReader``: "gone" is an unknown request."""
        if fs_id == "gone":
            raise NotFound("no such friend request")
        self.friendships.append((user_id, fs_id))


@dataclass
class World:
    log: FakeLog
    relay: FakeRelay
    inbox: FakeInbox
    friends: FakeFriends
    groups: GroupService
    limits: LimitsConfig
    clock: FakeClock
    users: FakeUsers
    reads: FakeReads

    def messages(self, *, allow_strangers: bool = False) -> MessageService:
        return MessageService(
            log=self.log,
            inbox=self.inbox,
            users=self.users,
            relay=self.relay,
            clock=self.clock,
            limits=self.limits,
            allow_strangers=allow_strangers,
            friends=self.friends,
            groups=self.groups,
            conversations=self.reads,
            friendships=self.reads,
        )


@pytest.fixture
def world() -> World:
    clock, log, users = FakeClock(), FakeLog(), FakeUsers()
    users.add("alice", "bob", "carol")
    friends = FakeFriends(users)
    limits = LimitsConfig()
    groups = group_service(users, friends, clock, log=log, limits=limits)
    return World(log, FakeRelay(), FakeInbox(), friends, groups, limits, clock, users, FakeReads())


def chat(to: str, kind: MsgType = MsgType.SINGLE_MSG, **fields: object) -> Msg:
    given: dict[str, object] = {"local_id": "l1", "content": b"hi", **fields}
    return Msg(receiver_id=to, msg_type=kind, **given)  # type: ignore[arg-type]


async def stored(accepted: Msg | asyncio.Future[Stored]) -> Stored:
    assert isinstance(accepted, asyncio.Future), accepted
    return await accepted


async def test_the_sender_is_the_connections_user(world: World) -> None:
    service = world.messages(allow_strangers=True)
    with pytest.raises(MessageRefused, match="send_id"):
        await service.accept("alice", chat("bob", send_id="bob"))
    msg = chat("bob")
    await stored(await service.accept("alice", msg))
    assert msg.send_id == "alice"
    assert msg.server_id and msg.send_time == world.clock.now_ms()
    with pytest.raises(MessageRefused, match="larger than"):
        await service.accept("alice", chat("bob", content=b"x" * (world.limits.text_bytes + 1)))


async def test_one_to_one_messages_go_to_friends_only(world: World) -> None:
    service = world.messages()
    with pytest.raises(MessageRefused, match="not your friend"):
        await service.accept("alice", chat("bob"))
    with pytest.raises(MessageRefused, match="no such receiver"):
        await service.accept("alice", chat("nobody"))
    with pytest.raises(MessageRefused, match="receiver_id is empty"):
        await service.accept("alice", chat(""))
    assert world.log.submissions == []
    await stored(await service.accept("alice", chat("alice")))  # notes to oneself
    world.friends.befriend("alice", "bob")
    result = await stored(await service.accept("alice", chat("bob", group_id="g")))
    assert result.receiver_seqs == [("bob", 1)]
    sub = world.log.submissions[-1]
    assert (sub.receivers, sub.store, sub.outbox, sub.history) == (["bob"], True, True, True)
    assert sub.msg.group_id == ""  # a one-to-one message belongs to no group
    assert sub.idem_key == idempotency_key("alice", "bob", "l1")
    # A stored call event is no history and has no idempotency key without a local_id.
    await stored(await service.accept("alice", chat("bob", MsgType.HANGUP, local_id="")))
    sub = world.log.submissions[-1]
    assert (sub.history, sub.idem_key) == (False, None)


async def test_strangers_may_write_when_the_policy_allows(world: World) -> None:
    service = world.messages(allow_strangers=True)
    await stored(await service.accept("alice", chat("bob")))
    with pytest.raises(MessageRefused, match="no such receiver"):
        await service.accept("alice", chat("nobody"))


async def test_group_messages_come_from_members_only(world: World) -> None:
    service = world.messages()
    world.friends.befriend("alice", "bob")
    invitation = await world.groups.create(user_id="alice", name="g", avatar="", member_ids=["bob"])
    assert invitation.info is not None
    group_id = invitation.info.id
    with pytest.raises(MessageRefused, match="not a member"):
        await service.accept("carol", chat(group_id, MsgType.GROUP_MSG))
    msg = chat(group_id, MsgType.GROUP_MSG)  # the group named by receiver_id only
    result = await stored(await service.accept("bob", msg))
    assert result.receiver_seqs == [("alice", 1)]  # the invitation went to bob only
    sub = world.log.submissions[-1]
    assert (sub.msg.group_id, sub.msg.receiver_id, sub.receivers) == (
        group_id,
        group_id,
        ["alice"],
    )
    assert sub.epoch is not None and sub.regroup is not None
    assert sub.idem_key == idempotency_key("bob", group_id, "l1")
    with pytest.raises(MessageRefused, match="no such group"):
        await service.accept("bob", chat("no-such-group", MsgType.GROUP_MSG))


async def test_call_signals_are_relayed_to_friends_and_never_stored(world: World) -> None:
    service = world.messages()
    with pytest.raises(MessageRefused, match="not your friend"):
        await service.accept("alice", chat("bob", MsgType.SINGLE_CALL_OFFER))
    world.friends.befriend("alice", "bob")
    ack = await service.accept("alice", chat("bob", MsgType.SINGLE_CALL_OFFER))
    assert isinstance(ack, Msg) and ack.msg_type == MsgType.MSG_REC_RESP
    assert world.log.submissions == []
    [(user_id, copy, exclude)] = world.relay.pushes
    assert (user_id, copy.msg_type, exclude) == ("bob", MsgType.SINGLE_CALL_OFFER, None)


def read_payload(seqs: list[int], user_id: str) -> bytes:
    """bincode ``{msg_seq: Vec<i64>, user_id: String}``."""
    raw = user_id.encode()
    return struct.pack(f"<Q{len(seqs)}q", len(seqs), *seqs) + struct.pack("<Q", len(raw)) + raw


async def test_a_friendship_received_frame_marks_the_request_read(world: World) -> None:
    service = world.messages()
    kind = MsgType.FRIENDSHIP_RECEIVED
    ack = await service.accept("alice", chat("", kind, content=b"fs1"))
    assert isinstance(ack, Msg) and ack.msg_type == MsgType.MSG_REC_RESP
    assert world.reads.friendships == [("alice", "fs1")]
    for content in (b"gone", b"\xff"):
        with pytest.raises(MessageRefused, match="not marked read"):
            await service.accept("alice", chat("", kind, content=content))


async def test_read_marks_the_readers_own_copies(world: World) -> None:
    service = world.messages()
    world.inbox.put("alice", Msg(send_id="bob", receiver_id="alice", seq=1))
    world.inbox.put("bob", Msg(send_id="alice", receiver_id="bob", seq=1))
    with pytest.raises(MessageRefused, match="malformed"):
        await service.accept("alice", chat("", MsgType.READ, content=b"\x01"))
    world.limits.text_bytes = 100_000  # room for 10,001 seqs (the default refuses by size)
    with pytest.raises(MessageRefused, match="too many"):
        await service.accept(
            "alice", chat("", MsgType.READ, content=read_payload([1] * 10_001, "alice"))
        )
    ack = await service.accept("alice", chat("", MsgType.READ, content=read_payload([1], "bob")))
    assert isinstance(ack, Msg) and ack.msg_type == MsgType.MSG_REC_RESP
    assert world.inbox.read == {("alice", 1)}  # the connection's user, whatever the payload
    assert world.reads.reads == [("alice", [1])]  # and their conversations are read


@pytest.mark.parametrize(
    "kind",
    [MsgType.GROUP_INVITATION, MsgType.FRIEND_APPLY_REQ, MsgType.MSG_REC_RESP, MsgType.SERVICE],
)
async def test_server_side_types_are_refused(world: World, kind: MsgType) -> None:
    with pytest.raises(MessageRefused, match="cannot be sent by a client"):
        await world.messages(allow_strangers=True).accept("alice", chat("bob", kind))
    assert world.log.submissions == [] and world.relay.pushes == []
