"""Friends: requests (apply, agree, deny), deletion, remarks, read marks, sync, and the
friendship gate.

Each change is also told to the actor's own v2 connections (``friend.updated``, docs/
protocol.md, "Devices"), so the user's other devices follow; original clients get only the
``Msg`` notifications they always got.
"""

from __future__ import annotations

from sandcat.config import LimitsConfig
from sandcat.domain import FriendStatus, UserRecord
from sandcat.errors import BadRequest, Forbidden, NotFound, TooManyRequests
from sandcat.ids import nanoid
from sandcat.ports import Clock, Events, FriendRequest, FriendshipReads, FriendStore, UserStore
from sandcat.protocol.msg import MsgType
from sandcat.protocol.payloads import Friend, FriendshipWithUser
from sandcat.protocol.shapes import friend_json, friendship_with_user_json
from sandcat.services.notify import Notifier

#: The v2 event a friend operation sends to the actor's own connections.
FRIEND_UPDATED = "friend.updated"


def check_text(field: str, value: str | None, limit: int) -> None:
    """400 when ``value`` is longer than ``limit`` characters."""
    if value is not None and len(value) > limit:
        raise BadRequest(f"{field} is longer than {limit} characters")


def pending_with(
    user: UserRecord,
    *,
    fs_id: str,
    apply_msg: str | None,
    source: str,
    create_time: int,
    remark: str | None,
) -> FriendshipWithUser:
    """A pending request ``fs_id`` as one side sees it: the other side ``user``'s profile."""
    return FriendshipWithUser(
        fs_id=fs_id,
        user_id=user.id,
        name=user.name,
        avatar=user.avatar,
        gender=user.gender,
        age=user.age,
        region=user.region,
        status=FriendStatus.PENDING,
        apply_msg=apply_msg,
        source=source,
        create_time=create_time,
        account=user.account,
        remark=remark,
        email=None,
    )


class FriendService:
    def __init__(
        self,
        *,
        friends: FriendStore,
        users: UserStore,
        notifier: Notifier,
        clock: Clock,
        limits: LimitsConfig,
        reads: FriendshipReads,
        events: Events,
    ) -> None:
        self._friends = friends
        self._users = users
        self._notifier = notifier
        self._clock = clock
        self._limits = limits
        self._reads = reads
        self._events = events

    async def _tell(self, user_id: str, action: str, **data: object) -> None:
        """The actor's devices follow the change (best effort: the sync routes are the truth)."""
        await self._events.emit([user_id], FRIEND_UPDATED, {"action": action, **data})

    async def _user(self, user_id: str) -> UserRecord:
        user = await self._users.get_user(user_id) if user_id else None
        if user is None:
            raise NotFound("no such user")
        return user

    async def apply(
        self,
        *,
        user_id: str,
        friend_id: str,
        apply_msg: str | None,
        req_remark: str | None,
        source: str,
    ) -> FriendshipWithUser:
        """Ask ``friend_id`` to be friends; returns the request with the target's profile."""
        if friend_id == user_id:
            raise BadRequest("you cannot befriend yourself")
        check_text("apply_msg", apply_msg, self._limits.remark_chars)
        check_text("req_remark", req_remark, self._limits.remark_chars)
        check_text("source", source, self._limits.name_chars)
        target = await self._user(friend_id)
        requester = await self._user(user_id)
        if await self._friends.are_friends(user_id, friend_id):
            raise BadRequest("you are already friends")
        now = self._clock.now_ms()
        cool_down_ms = self._limits.friend_reapply_cooldown_seconds * 1000
        fs_id = await self._friends.upsert_request(
            new_id=nanoid(),
            user_id=user_id,
            friend_id=friend_id,
            apply_msg=apply_msg,
            req_remark=req_remark,
            source=source,
            now_ms=now,
            renew_rejected_before=now - cool_down_ms,
        )
        if fs_id is None:
            return await self._unchanged_request(user_id, target, cool_down_ms, now)
        notice = pending_with(
            requester, fs_id=fs_id, apply_msg=apply_msg, source=source, create_time=now, remark=None
        )
        await self._notifier.friend_event(
            MsgType.FRIEND_APPLY_REQ, sender=user_id, receiver=friend_id, content=notice.encode()
        )
        sent = pending_with(
            target, fs_id=fs_id, apply_msg=None, source=source, create_time=now, remark=req_remark
        )
        await self._tell(user_id, "applied", request=friendship_with_user_json(sent))
        return sent

    async def _unchanged_request(
        self, user_id: str, target: UserRecord, cool_down_ms: int, now: int
    ) -> FriendshipWithUser:
        """A re-apply the store left alone: a pending request is answered as it stands (no
        new row, no second push); a recent denial is refused until its cool-down ends."""
        request = await self._friends.request_between(user_id, target.id)
        if request is not None and request.status == FriendStatus.REJECTED:
            retry_after = (request.update_time + cool_down_ms - now + 999) // 1000
            raise TooManyRequests(
                "this user denied your friend request; you can apply again later", retry_after
            )
        # Answered between the statements:
        if request is None or request.status != FriendStatus.PENDING:
            raise BadRequest("the friend request changed meanwhile; apply again")
        return pending_with(
            target,
            fs_id=request.id,
            apply_msg=None,
            source=request.source,
            create_time=request.create_time,
            remark=request.req_remark,
        )

    async def _pending_for(self, user_id: str, fs_id: str) -> FriendRequest:
        request = await self._friends.get_request(fs_id) if fs_id else None
        if request is None:
            raise NotFound("no such friend request")
        if request.friend_id != user_id:
            raise Forbidden("only the user the request was sent to can answer it")
        if request.status != FriendStatus.PENDING:
            raise BadRequest("the friend request is no longer pending")
        return request

    async def agree(
        self, user_id: str, fs_id: str, resp_msg: str | None, resp_remark: str | None
    ) -> Friend:
        """Accept a request sent to ``user_id``; returns the requester as a ``Friend``."""
        check_text("resp_msg", resp_msg, self._limits.remark_chars)
        check_text("resp_remark", resp_remark, self._limits.remark_chars)
        request = await self._pending_for(user_id, fs_id)
        views = await self._friends.accept_request(
            fs_id, resp_msg, resp_remark, self._clock.now_ms()
        )
        if views is None:
            raise BadRequest("the friend request is no longer pending")
        requester_view, accepter_view = views
        await self._notifier.friend_event(
            MsgType.FRIEND_APPLY_RESP,
            sender=user_id,
            receiver=request.user_id,
            content=accepter_view.encode(),
        )
        await self._tell(user_id, "agreed", fs_id=fs_id, friend=friend_json(requester_view))
        return requester_view

    async def deny(self, user_id: str, fs_id: str, resp_msg: str | None) -> None:
        """Reject a request sent to ``user_id``. Nothing is pushed (the v1 client has no
        message type for it); the requester's request simply stays unanswered."""
        check_text("resp_msg", resp_msg, self._limits.remark_chars)
        await self._pending_for(user_id, fs_id)
        if not await self._friends.reject_request(fs_id, resp_msg, self._clock.now_ms()):
            raise BadRequest("the friend request is no longer pending")
        await self._tell(user_id, "denied", fs_id=fs_id)

    async def delete(self, user_id: str, friend_id: str, fs_id: str) -> None:
        if not friend_id or not fs_id:
            raise BadRequest("friend_id and fs_id must not be empty")
        if not await self._friends.delete_friend(user_id, friend_id, fs_id, self._clock.now_ms()):
            raise NotFound("no such friendship")
        await self._notifier.friend_event(MsgType.FRIEND_DELETE, sender=user_id, receiver=friend_id)
        await self._tell(user_id, "deleted", fs_id=fs_id, friend_id=friend_id)

    async def set_remark(self, user_id: str, friend_id: str, remark: str) -> None:
        if not remark:
            raise BadRequest("remark must not be empty")
        check_text("remark", remark, self._limits.remark_chars)
        if not await self._friends.set_remark(user_id, friend_id, remark, self._clock.now_ms()):
            raise NotFound("no such friend")
        await self._tell(user_id, "remark", friend_id=friend_id, remark=remark)

    async def mark_read(self, user_id: str, fs_id: str) -> None:
        """The user (the request's receiver) read the request as it stands: the friend sync
        (``since``) leaves it out until it changes again (the original's "friendship read
        status"; the pending list still has it)."""
        request = await self._friends.get_request(fs_id) if fs_id else None
        if request is None:
            raise NotFound("no such friend request")
        if request.friend_id != user_id:
            raise Forbidden("only the user the request was sent to can mark it read")
        await self._reads.mark_read(fs_id, user_id, request.update_time)
        await self._tell(user_id, "read", fs_id=fs_id)

    async def since(
        self, user_id: str, offline_time: int
    ) -> tuple[list[Friend], list[FriendshipWithUser]]:
        """Friends and requests to the user that changed after ``offline_time`` (ms); the
        requests the user read as they stand are left out (``mark_read``)."""
        friends = await self._friends.friends_since(user_id, offline_time)
        requests = await self._friends.requests_to(
            user_id, since_ms=offline_time, pending_only=False, unread_only=True
        )
        return friends, requests

    async def pending(self, user_id: str) -> list[FriendshipWithUser]:
        """Requests sent to the user that are still waiting for an answer."""
        return await self._friends.requests_to(user_id, since_ms=-1, pending_only=True)

    async def query(self, user_id: str) -> UserRecord:
        return await self._user(user_id)

    async def are_friends(self, user_id: str, other_id: str) -> bool:
        """``FriendGate``: an accepted friendship from ``user_id`` to ``other_id``."""
        return await self._friends.are_friends(user_id, other_id)
