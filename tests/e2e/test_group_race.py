"""Membership changes racing group messages across processes, on the distributed topology.

The owner removes and invites members, then dismisses the group, through the api process,
while another member streams group messages through a gateway (another process) with many
of them in flight. The rules of docs/message-flow.md ("Membership windows") are checked for
every member, from the frames each one received and from a pull of everything stored:

- a removed member gets notice 5 naming them, and after it nothing of the group;
- a new member gets notice 3 naming them before anything else of the group;
- after notice 6 (dismissal) nobody gets anything of the group; a message is either stored
  (acked, and in every member's inbox) or refused (error ack, stored nowhere), and every
  message sent after the dismissal's answer is refused.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import aiohttp
import pytest

from tests import wire
from tests.client import Api, Socket, User, befriend, create_group, pull, until
from tests.cluster import Cluster, LogCodes

pytestmark = pytest.mark.timeout(120)

NOTICE_INVITE, NOTICE_REMOVE, NOTICE_DISMISS, GROUP_MSG, ACK = 3, 5, 6, 1, 24
ROUNDS = 3  # each round removes one member and invites another, at the same time
WINDOW = 16  # group messages in flight at once
PER_ROUND = 30  # acks between two rounds of changes
AFTER_DISMISS = 20  # messages sent after the dismissal's answer


class Frames:
    """Every frame one socket receives, collected by a task of its own."""

    def __init__(self, sock: Socket) -> None:
        self.sock = sock
        self.frames: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            while True:
                self.frames.append(await self.sock.recv(timeout=60))
                self.changed.set()
        except (ConnectionError, TimeoutError):
            return

    def of_group(self, gid: str) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["group_id"] == gid and f["msg_type"] != ACK]

    async def close(self) -> None:
        await self.sock.close()
        await self.task


def _names(frame: dict[str, Any]) -> list[str]:
    return wire.decode_strings(bytes(frame["content"]))


def _notice(items: list[dict[str, Any]], kind: int, user_id: str) -> int:
    """The index of the notice of ``kind`` naming ``user_id``."""
    found = [i for i, m in enumerate(items) if m["msg_type"] == kind and user_id in _names(m)]
    assert len(found) == 1, (kind, user_id, [m["msg_type"] for m in items])
    return found[0]


async def _connect(session: aiohttp.ClientSession, user: User) -> Frames:
    sock = await Socket.connect(session, user)
    await sock.ready(user)  # registered (presence included) before anything is pushed
    return Frames(sock)


async def test_membership_changes_race_group_messages_across_processes(
    cluster: Cluster, session: aiohttp.ClientSession
) -> None:
    api = Api(session, cluster.api_base, LogCodes(cluster.log))
    tag = secrets.token_hex(3)
    names = ["owner", "sender", "keeper"] + [f"gone{i}" for i in range(ROUNDS)]
    names += [f"new{i}" for i in range(ROUNDS)]
    users = await asyncio.gather(
        *(api.new_user(f"{n}{tag}", f"{n}{tag}@example.com") for n in names)
    )
    owner, sender, keeper = users[:3]
    gone, new = users[3 : 3 + ROUNDS], users[3 + ROUNDS :]
    # Members are the owner's friends (required where groups take friends only).
    await asyncio.gather(*(befriend(api, owner, other) for other in users[1:]))
    frames = dict(
        zip(
            [u.id for u in users],
            await asyncio.gather(*(_connect(session, u) for u in users)),
            strict=True,
        )
    )
    members = [sender.id, keeper.id, *(u.id for u in gone)]
    invitation = await create_group(api, owner, members, name="race")
    gid = invitation["info"]["id"]
    mine = frames[sender.id]

    def acks() -> list[dict[str, Any]]:
        return [f for f in mine.frames if f["msg_type"] == ACK and f["local_id"].startswith("m")]

    async def acked(count: int) -> None:
        while len(acks()) < count:
            mine.changed.clear()
            if len(acks()) >= count:
                return
            await asyncio.wait_for(mine.changed.wait(), 30)

    sent: list[str] = []
    stop = asyncio.Event()

    async def stream() -> None:
        """Group messages, up to WINDOW unacked at a time, until told to stop."""
        while not stop.is_set():
            local_id = f"m{len(sent)}"
            sent.append(local_id)
            await mine.sock.send(
                receiver_id=gid,
                group_id=gid,
                local_id=local_id,
                msg_type=GROUP_MSG,
                content=local_id.encode(),
            )
            await acked(len(sent) - WINDOW)

    acked_before_invite: list[set[str]] = []
    sent_after_remove: list[int] = []

    async def call(method: str, path: str, body: dict[str, Any]) -> None:
        await api.call(method, path, token=owner.token, json={"user_id": owner.id, **body})

    async def remove(user: User) -> None:
        await call("DELETE", "/api/group/member", {"group_id": gid, "mem_id": [user.id]})
        sent_after_remove.append(len(sent))

    async def invite(user: User) -> None:
        acked_before_invite.append({f["local_id"] for f in acks()})
        await call("PUT", "/api/group/invite", {"group_id": gid, "members": [user.id]})

    async def changes() -> int:
        """The rounds of changes, then the dismissal; returns how many messages were sent
        before the dismissal was answered."""
        for round_ in range(ROUNDS):
            await acked(PER_ROUND * (round_ + 1))
            await asyncio.gather(remove(gone[round_]), invite(new[round_]))
        await acked(PER_ROUND * (ROUNDS + 1))
        await call("DELETE", "/api/group", {"group_id": gid, "is_dismiss": True})
        dismissed_at = len(sent)
        await until(lambda: len(sent) >= dismissed_at + AFTER_DISMISS, 30, "the tail sent")
        stop.set()
        return dismissed_at

    streaming = asyncio.create_task(stream())
    dismissed_at = await changes()
    await streaming
    await acked(len(sent))  # every message has its ack (refused or not)

    outcome = {f["local_id"]: f for f in acks()}
    stored = {lid for lid, f in outcome.items() if f["content_type"] != 9}
    refused = {lid for lid, f in outcome.items() if f["content_type"] == 9}
    assert stored | refused == set(sent) and len(outcome) == len(sent)
    assert all(b"no such group" in bytes(outcome[lid]["content"]) for lid in refused)
    assert not refused & set(sent[:1])  # the stream did start before the dismissal
    assert set(sent[dismissed_at:]) <= refused  # the dismissal's answer: nothing accepted
    order = {lid: i for i, lid in enumerate(sent)}

    # Everything stored has been pushed once a member's last notice arrives (pushes leave
    # in seq order); then the pull covers what each member's counter exposes.
    def has_last_notice(user: User) -> bool:
        items = frames[user.id].of_group(gid)
        if user in gone:
            return any(f["msg_type"] == NOTICE_REMOVE and user.id in _names(f) for f in items)
        return any(f["msg_type"] == NOTICE_DISMISS for f in items)

    await until(lambda: all(map(has_last_notice, users[1:])), 30, "every member's last notice")
    settled = Api(session, cluster.api_base, api.codes, tag="settled")  # reads settled seqs

    async def pulled_by(user: User) -> list[dict[str, Any]]:
        _, seqs = await settled.call("GET", f"/api/message/seq/{user.id}", token=user.token)
        items = await pull(api, user, start=0, end=seqs["seq"], send_end=seqs["send_seq"])
        return [m for m in items if m["group_id"] == gid]

    pulled = dict(
        zip([u.id for u in users], await asyncio.gather(*map(pulled_by, users)), strict=True)
    )

    def received(user: User) -> list[tuple[str, list[dict[str, Any]]]]:
        """The member's order twice: the frames as they arrived, the pull by seq (a pull
        returns pages by ``send_time``, stamped at accept time, which a message read again
        after a change it raced may have earlier than the change's notice)."""
        return [
            ("frames", frames[user.id].of_group(gid)),
            ("pull", sorted((m for m in pulled[user.id] if m["seq"]), key=lambda m: m["seq"])),
        ]

    def messages_of(items: list[dict[str, Any]]) -> list[str]:
        return [m["local_id"] for m in items if m["msg_type"] == GROUP_MSG]

    for round_, user in enumerate(gone):
        for source, items in received(user):
            at = _notice(items, NOTICE_REMOVE, user.id)
            assert items[at + 1 :] == [], (source, "a removed member got more", user.id)
            got = messages_of(items)
            assert got, (source, "the removed member got nothing before the removal")
            assert not {lid for lid in got if order[lid] >= sent_after_remove[round_]}, source
    for round_, user in enumerate(new):
        for source, items in received(user):
            at = _notice(items, NOTICE_INVITE, user.id)
            assert at == 0, (source, "a new member got messages sent before joining", user.id)
            assert not set(messages_of(items)) & acked_before_invite[round_], source
            assert items[-1]["msg_type"] == NOTICE_DISMISS, source
    for user in (keeper, sender):
        for source, items in received(user):
            assert items[-1]["msg_type"] == NOTICE_DISMISS, (source, user.id)
            assert [m["msg_type"] for m in items].count(NOTICE_DISMISS) == 1, source
    # The keeper was a member throughout: it holds every stored message once, in send order.
    for source, items in received(keeper):
        assert messages_of(items) == sorted(stored, key=order.__getitem__), source
    # The sender's outbox holds exactly the stored messages; refused ones are nowhere.
    outbox = [m["local_id"] for m in pulled[sender.id] if m["msg_type"] == GROUP_MSG]
    assert sorted(outbox, key=order.__getitem__) == sorted(stored, key=order.__getitem__)
    everywhere = {lid for user in users for lid in messages_of(pulled[user.id])}
    assert not everywhere & refused
    # The race was real: each change landed amid the stream, not between two bursts.
    keeper_view = [m["msg_type"] for m in received(keeper)[1][1]]
    for kind in (NOTICE_REMOVE, NOTICE_INVITE):
        for at in (i for i, t in enumerate(keeper_view) if t == kind):
            assert GROUP_MSG in keeper_view[:at] and GROUP_MSG in keeper_view[at + 1 :]
    await asyncio.gather(*(f.close() for f in frames.values()))
