"""Groups: create, invite, update, remove, leave, dismiss, reads, and the group-message gate.

Ordering is what makes membership windows exact (docs/message-flow.md, "Membership
windows"). Every change of a group runs under that group's lock and the cache's change lock
(``MembershipCache.changing``: shared by every process in distributed mode) until its
notification is durable: it writes the database, invalidates the cached member set and
submits its notification, which carries the members from then on. A group message takes its
recipients and their epoch from the cache (or, on a miss, loads them under the group's lock)
and is submitted in the same event-loop step. Embedded, the message log is FIFO, so every
message sits wholly before a change's notification (old members) or wholly after it (new
members). Distributed, the seq allocation that puts each message and notice in every
member's order also checks the message's epoch and installs the notice's members, in one
atomic call. Either way a removed member receives notice 5 and then nothing, a departed
member nothing after leaving, a new member nothing sent before joining.

Each change is also told to the actor's own v2 connections (``group.updated``, after the
locks are released), so the user's other devices follow; original clients get only the
``Msg`` notifications they always got.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator

from sandcat import _native
from sandcat.config import LimitsConfig
from sandcat.domain import GroupRole
from sandcat.errors import BadRequest, Forbidden, NotFound
from sandcat.ids import nanoid
from sandcat.ports import Clock, Events, FriendStore, GroupStore, MembershipCache
from sandcat.protocol.msg import MsgType
from sandcat.protocol.payloads import GroupInfo, GroupInvitation, GroupMember
from sandcat.protocol.shapes import group_info_json
from sandcat.services.friends import check_text
from sandcat.services.messages import MessageRefused
from sandcat.services.notify import Notifier

#: A miss whose load a change overtook loads again, at most this many times (backing off
#: 10, 20, 40 ... ms: the change's notice installs the new set when it is allocated).
LOAD_ATTEMPTS = 8


#: Members carried in a GroupInvitation notification (the HTTP response carries them all).
INVITATION_MEMBERS = 100
#: The v2 event a group operation sends to the actor's own connections.
GROUP_UPDATED = "group.updated"


class GroupService:
    def __init__(
        self,
        *,
        groups: GroupStore,
        friends: FriendStore,
        cache: MembershipCache,
        notifier: Notifier,
        clock: Clock,
        limits: LimitsConfig,
        events: Events,
    ) -> None:
        self._events = events
        self._groups = groups
        self._friends = friends
        self._cache = cache
        self._notifier = notifier
        self._clock = clock
        self._limits = limits
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    async def _tell(self, user_id: str, action: str, group_id: str, **data: object) -> None:
        """The actor's devices follow the change (best effort: the group routes are the truth)."""
        await self._events.emit(
            [user_id], GROUP_UPDATED, {"action": action, "group_id": group_id, **data}
        )

    def _lock(self, group_id: str) -> asyncio.Lock:
        lock = self._locks.get(group_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[group_id] = lock
        return lock

    @contextlib.asynccontextmanager
    async def _changing(self, group_id: str) -> AsyncIterator[None]:
        """A change of the group: this process's lock, then the cache's change lock."""
        async with self._lock(group_id), self._cache.changing(group_id):
            yield

    def _user_ids(self, values: list[str]) -> list[str]:
        """Listed user ids without blanks and repeats, at most ``limits.group_members``."""
        ids = list(dict.fromkeys(v for v in (s.strip() for s in values) if v))
        if len(ids) > self._limits.group_members:
            raise BadRequest(f"at most {self._limits.group_members} user ids per request")
        return ids

    async def _check_consent(self, user_id: str, ids: list[str]) -> None:
        """Only the actor's accepted friends may be put into a group (a group message is
        stored for every member: a stranger never agreed to that), unless
        ``limits.group_invite_strangers``."""
        others = [uid for uid in ids if uid != user_id]
        if self._limits.group_invite_strangers or not others:
            return
        friends = await self._friends.friends_among(user_id, others)
        strangers = [uid for uid in others if uid not in friends]
        if strangers:
            shown = ", ".join(strangers[:5]) + (" ..." if len(strangers) > 5 else "")
            raise BadRequest(f"only your friends can be added to a group; not friends: {shown}")

    def _check_info(self, name: str, description: str, announcement: str) -> None:
        check_text("group name", name, self._limits.name_chars)
        for field, text in (("description", description), ("announcement", announcement)):
            if len(text.encode()) > self._limits.text_bytes:
                raise BadRequest(f"{field} is larger than {self._limits.text_bytes} bytes")

    async def _roles(self, user_id: str, group_id: str) -> dict[str, int]:
        """Every member's role (call under the group's lock); the caller must be a member."""
        roles = await self._groups.member_roles(group_id)
        if not roles:
            raise NotFound("no such group")
        if user_id not in roles:
            raise Forbidden("you are not a member of this group")
        return roles

    async def create(
        self, *, user_id: str, name: str, avatar: str, member_ids: list[str]
    ) -> GroupInvitation:
        """Create a group owned by ``user_id`` with those of ``member_ids`` that are users."""
        name = name.strip()
        self._check_info(name, "", "")
        ids = self._user_ids([user_id, *member_ids])
        await self._check_consent(user_id, ids)
        now = self._clock.now_ms()
        info = GroupInfo(
            id=nanoid(),
            owner=user_id,
            name=name,
            avatar=avatar,
            description="",
            announcement="",
            create_time=now,
            update_time=now,
        )
        members = await self._groups.create_group(info, ids)
        invitation = GroupInvitation(info=info, members=members)
        # Every member stores its own copy of the notification: carrying all members to all
        # of them is quadratic (10,000 members: ~10 GB). Beyond INVITATION_MEMBERS the
        # notification carries the first ones; clients load the rest with
        # GET /group/member/{user_id}/{group_id}, as the web client does after an invitation.
        pushed = GroupInvitation(info=info, members=members[:INVITATION_MEMBERS])
        await self._notifier.group_event(
            MsgType.GROUP_INVITATION,
            actor=user_id,
            group_id=info.id,
            receivers=[m.user_id for m in members if m.user_id != user_id],
            content=pushed.encode(),
            members=frozenset(m.user_id for m in members),
        )
        await self._tell(user_id, "created", info.id, group=group_info_json(info))
        return invitation

    async def invite(self, user_id: str, group_id: str, member_ids: list[str]) -> None:
        """Any member may add users; every member (old and new) gets type 3."""
        ids = self._user_ids(member_ids)
        async with self._changing(group_id):
            roles = await self._roles(user_id, group_id)
            new = [uid for uid in ids if uid not in roles]
            if not new:
                raise BadRequest("every listed user is already a member")
            if len(roles) + len(new) > self._limits.group_members:
                raise BadRequest(f"a group has at most {self._limits.group_members} members")
            await self._check_consent(user_id, new)
            added = await self._groups.add_members(group_id, new, self._clock.now_ms())
            if not added:
                raise BadRequest("none of the listed users exists")
            await self._cache.invalidate(group_id)
            await self._notifier.group_event(
                MsgType.GROUP_INVITE_NEW,
                actor=user_id,
                group_id=group_id,
                receivers=[uid for uid in [*roles, *added] if uid != user_id],
                content=_native.encode_strings(added),
                members=frozenset([*roles, *added]),
            )
        await self._tell(user_id, "invited", group_id, members=added)

    async def update(
        self,
        user_id: str,
        group_id: str,
        *,
        name: str,
        avatar: str,
        description: str,
        announcement: str,
    ) -> GroupInfo:
        """Owner or admin only; empty fields keep their value; members get type 9."""
        name = name.strip()
        self._check_info(name, description, announcement)
        async with self._changing(group_id):
            roles = await self._roles(user_id, group_id)
            if roles[user_id] not in {GroupRole.OWNER, GroupRole.ADMIN}:
                raise Forbidden("only the owner or an admin can update the group")
            info = await self._groups.update_group(
                group_id,
                name=name,
                avatar=avatar,
                description=description,
                announcement=announcement,
                now_ms=self._clock.now_ms(),
            )
            if info is None:
                raise NotFound("no such group")
            await self._notifier.group_event(
                MsgType.GROUP_UPDATE,
                actor=user_id,
                group_id=group_id,
                receivers=[uid for uid in roles if uid != user_id],
                content=info.encode(),
            )
        await self._tell(user_id, "updated", group_id, group=group_info_json(info))
        return info

    async def remove(self, user_id: str, group_id: str, member_ids: list[str]) -> None:
        """Owner or admin only (admins cannot remove admins, nobody removes the owner);
        the remaining members and the removed ones get type 5."""
        ids = self._user_ids(member_ids)
        async with self._changing(group_id):
            roles = await self._roles(user_id, group_id)
            role = roles[user_id]
            if role not in {GroupRole.OWNER, GroupRole.ADMIN}:
                raise Forbidden("only the owner or an admin can remove members")
            if user_id in ids:
                raise BadRequest("to leave a group use DELETE /group")
            targets = [uid for uid in ids if uid in roles]
            if any(roles[uid] == GroupRole.OWNER for uid in targets):
                raise Forbidden("the owner cannot be removed")
            if role != GroupRole.OWNER and any(roles[uid] == GroupRole.ADMIN for uid in targets):
                raise Forbidden("only the owner can remove an admin")
            if not targets:
                raise BadRequest("none of the listed users is a member")
            removed = await self._groups.remove_members(group_id, targets)
            await self._cache.invalidate(group_id)
            await self._notifier.group_event(
                MsgType.GROUP_REMOVE_MEMBER,
                actor=user_id,
                group_id=group_id,
                receivers=[uid for uid in roles if uid != user_id],
                content=_native.encode_strings(removed),
                members=frozenset(roles).difference(removed),
            )
        await self._tell(user_id, "removed", group_id, members=removed)

    async def leave(self, user_id: str, group_id: str) -> None:
        """A member leaves; the others get type 4. The owner dismisses instead."""
        async with self._changing(group_id):
            roles = await self._roles(user_id, group_id)
            if roles[user_id] == GroupRole.OWNER:
                raise BadRequest("the owner cannot leave the group; dismiss it instead")
            await self._groups.remove_members(group_id, [user_id])
            await self._cache.invalidate(group_id)
            await self._notifier.group_event(
                MsgType.GROUP_MEMBER_EXIT,
                actor=user_id,
                group_id=group_id,
                receivers=[uid for uid in roles if uid != user_id],
                members=frozenset(roles).difference([user_id]),
            )
        await self._tell(user_id, "left", group_id)

    async def dismiss(self, user_id: str, group_id: str) -> None:
        """The owner deletes the group; every other member gets type 6."""
        async with self._changing(group_id):
            roles = await self._roles(user_id, group_id)
            if roles[user_id] != GroupRole.OWNER:
                raise Forbidden("only the owner can dismiss the group")
            await self._groups.delete_group(group_id)
            await self._cache.invalidate(group_id)
            await self._notifier.group_event(
                MsgType.GROUP_DISMISS,
                actor=user_id,
                group_id=group_id,
                receivers=[uid for uid in roles if uid != user_id],
                members=frozenset(),
            )
        await self._tell(user_id, "dismissed", group_id)

    async def info(self, user_id: str, group_id: str) -> GroupInfo:
        """The group, for a member."""
        info = await self._groups.get_group(group_id)
        if info is None:
            raise NotFound("no such group")
        if await self._groups.member_role(group_id, user_id) is None:
            raise Forbidden("you are not a member of this group")
        return info

    async def with_members(
        self, user_id: str, group_id: str
    ) -> tuple[GroupInfo, list[GroupMember]]:
        info = await self.info(user_id, group_id)
        return info, await self._groups.members(group_id)

    async def members(
        self, user_id: str, group_id: str, member_ids: list[str]
    ) -> list[GroupMember]:
        """The listed members' profiles, for a member."""
        ids = self._user_ids(member_ids)
        await self.info(user_id, group_id)
        return await self._groups.members(group_id, ids)

    async def _member_set(self, group_id: str, *, locked: bool) -> tuple[frozenset[str], int]:
        """The members and their epoch: cached, or loaded (under the group's lock when
        ``locked``). A load a change overtook (or one made while a change is under way
        elsewhere) is not cached and not used: it loads again once the change's notice has
        installed the new set (unlocked, from inside the accept pipeline: it refuses at
        once rather than hold the pipeline)."""
        for attempt in range(LOAD_ATTEMPTS if locked else 1):
            if attempt:
                await asyncio.sleep(0.01 * 2 ** (attempt - 1))
            cached = await self._cache.get(group_id)
            if cached is not None:
                return cached
            async with self._lock(group_id) if locked else contextlib.nullcontext():
                cached = await self._cache.get(group_id)
                if cached is not None:
                    return cached
                members = frozenset(await self._groups.member_roles(group_id))
                if not members:
                    return members, 0
                epoch = await self._cache.put(group_id, members)
                if epoch is not None:
                    return members, epoch
        raise MessageRefused("the group's members are changing; send the message again")

    async def recipients(
        self, group_id: str, sender_id: str, *, again: bool = False
    ) -> tuple[list[str], int]:
        """``GroupGate``: every member but the sender, and the membership epoch they were
        read at; only members may post. ``again`` (a message whose epoch went stale, read
        from inside the accept pipeline): a miss loads without the group's lock, which a
        change in this process may hold until its notice, queued behind that pipeline, is
        allocated; the guarded ``put`` keeps such a load safe."""
        members, epoch = await self._member_set(group_id, locked=not again)
        if not members:
            raise MessageRefused("no such group")
        if sender_id not in members:
            raise MessageRefused("you are not a member of this group")
        return [uid for uid in members if uid != sender_id], epoch
