"""In-process fakes of the ports the services use (``sandcat/ports.py``), for service-level
unit tests (``tests/unit/test_services_*.py``); the clock is ``tests/clock.py``.

Each keeps its state in dicts and follows its port's docstring; the real adapters pass the
same contracts in ``tests/contracts``. The fakes record what the services did with them
(submissions, pushes, mails, ended sessions) for the tests to look at.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Mapping, Sequence

from sandcat.adapters.embedded.social import InProcessMembershipCache
from sandcat.config import LimitsConfig
from sandcat.domain import (
    Ack,
    FriendStatus,
    GroupRole,
    Stored,
    Submission,
    UserChanges,
    UserRecord,
)
from sandcat.ports import Device, FriendRequest, Located, PullCursor, Push, pull_cursor
from sandcat.protocol.msg import Msg
from sandcat.protocol.payloads import Friend, FriendshipWithUser, GroupInfo, GroupMember
from sandcat.services.friends import FriendService
from sandcat.services.groups import GroupService
from sandcat.services.notify import Notifier
from tests.clock import FakeClock

#: Friend request statuses as the stores keep them, and a plain member's group role.
PENDING, ACCEPTED, REJECTED, DELETED = (
    FriendStatus.PENDING,
    FriendStatus.ACCEPTED,
    FriendStatus.REJECTED,
    FriendStatus.DELETED,
)
MEMBER = GroupRole.MEMBER


def user(user_id: str, **fields: object) -> UserRecord:
    """A user with the account and e-mail derived from ``user_id``."""
    record = UserRecord(
        id=user_id,
        name=user_id.title(),
        account=user_id,
        password="",
        salt="",
        avatar="avatar1.png",
        email=f"{user_id}@example.com",
    )
    return dataclasses.replace(record, **fields)  # type: ignore[arg-type]


class FakeUsers:
    """``UserStore``."""

    def __init__(self, *users: UserRecord, devices: FakeDevices | None = None) -> None:
        self.users = {u.id: u for u in users}
        self.generations: dict[str, int] = {}
        #: Whose devices ``session_state`` reads.
        self.devices = devices or FakeDevices()

    def add(self, *user_ids: str) -> None:
        for user_id in user_ids:
            self.users[user_id] = user(user_id)

    async def insert_user(self, user: UserRecord) -> None:
        self.users[user.id] = user

    async def get_user(self, user_id: str) -> UserRecord | None:
        return self.users.get(user_id)

    async def find_login(self, login: str) -> UserRecord | None:
        for u in self.users.values():
            if login in (u.account, u.email, u.phone):
                return u
        return None

    async def email_taken(self, email: str) -> bool:
        return any((u.email or "").lower() == email.lower() for u in self.users.values())

    async def update_user(
        self, user_id: str, changes: UserChanges, now_ms: int
    ) -> UserRecord | None:
        current = self.users.get(user_id)
        if current is None:
            return None
        given = {k: v for k, v in dataclasses.asdict(changes).items() if v not in (None, "")}
        self.users[user_id] = dataclasses.replace(current, **given, update_time=now_ms)
        return self.users[user_id]

    async def set_password(self, user_id: str, password_hash: str, salt: str, now_ms: int) -> None:
        self.users[user_id] = dataclasses.replace(
            self.users[user_id], password=password_hash, salt=salt, update_time=now_ms
        )

    async def search_user(self, pattern: str, exclude_id: str) -> tuple[UserRecord, str] | None:
        for u in self.users.values():
            for field in ("email", "phone", "account"):
                if u.id != exclude_id and getattr(u, field) == pattern:
                    return u, field
        return None

    async def revoke_tokens(self, user_id: str) -> int:
        self.generations[user_id] = self.generations.get(user_id, 0) + 1
        return self.generations[user_id]

    async def token_generation(self, user_id: str) -> int:
        return self.generations.get(user_id, 0)

    async def session_state(self, user_id: str, device_id: str) -> tuple[int, bool]:
        return self.generations.get(user_id, 0), await self.devices.is_active(user_id, device_id)


class FakeCodes:
    """``CodeStore``: codes without expiry; ``failures`` counts wrong attempts."""

    def __init__(self) -> None:
        self.codes: dict[str, str] = {}
        self.failures: dict[str, int] = {}

    async def put_code(self, email: str, code: str, ttl_seconds: int) -> None:
        self.codes[email] = code

    async def get_code(self, email: str) -> str | None:
        return self.codes.get(email)

    async def delete_code(self, email: str) -> None:
        self.codes.pop(email, None)

    async def record_failure(self, email: str, max_attempts: int) -> None:
        self.failures[email] = self.failures.get(email, 0) + 1
        if self.failures[email] >= max_attempts:
            self.codes.pop(email, None)


class FakeMailer:
    """``Mailer``: remembers the last code sent to each address."""

    def __init__(self) -> None:
        self.sent: dict[str, str] = {}

    async def send_code(self, email: str, code: str) -> None:
        self.sent[email] = code


class FakeSessions:
    """``SessionEnder``."""

    def __init__(self) -> None:
        self.ended: list[str] = []

    async def end_sessions(self, user_id: str) -> None:
        self.ended.append(user_id)


class FakeEvents:
    """``Events`` and ``DeviceEnder``: records what was emitted and which devices ended."""

    def __init__(self) -> None:
        self.emitted: list[tuple[str, str, dict[str, object]]] = []
        self.ended_devices: list[tuple[str, str]] = []

    async def emit(self, user_ids: Sequence[str], name: str, data: Mapping[str, object]) -> None:
        self.emitted.extend((user_id, name, dict(data)) for user_id in user_ids)

    async def end_device(self, user_id: str, device_id: str) -> None:
        self.ended_devices.append((user_id, device_id))

    def names(self, user_id: str) -> list[str]:
        return [name for uid, name, _ in self.emitted if uid == user_id]


class FakeDevices:
    """``DeviceStore``: device -> (record, current refresh jti); ``previous`` keeps, per
    device, the jti spent by its last rotation and when."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[Device, str]] = {}
        self.previous: dict[str, tuple[str, int]] = {}

    async def add_device(self, device: Device, refresh_id: str, keep: int) -> list[str]:
        self.rows[device.id] = (device, refresh_id)
        mine = sorted(
            (d for d, _ in self.rows.values() if d.user_id == device.user_id),
            key=lambda d: (d.id == device.id, d.last_seen, d.first_seen),
            reverse=True,
        )
        evicted = [d.id for d in mine[keep:]]
        for device_id in evicted:
            del self.rows[device_id]
            self.previous.pop(device_id, None)
        return evicted

    async def devices(self, user_id: str) -> list[Device]:
        mine = [d for d, _ in self.rows.values() if d.user_id == user_id]
        return sorted(mine, key=lambda d: (d.last_seen, d.first_seen), reverse=True)

    async def is_active(self, user_id: str, device_id: str) -> bool:
        row = self.rows.get(device_id)
        return row is not None and row[0].user_id == user_id

    async def use_refresh(
        self,
        user_id: str,
        device_id: str,
        spent_id: str,
        new_id: str,
        address: str,
        now_ms: int,
        grace_ms: int,
    ) -> str | None:
        row = self.rows.get(device_id)
        if row is None or row[0].user_id != user_id:
            return None
        device, current = row
        previous, rotated_at = self.previous.get(device_id, ("", 0))
        if current == spent_id:
            if new_id != spent_id:
                self.previous[device_id] = (spent_id, now_ms)
            current = new_id
        elif not (grace_ms > 0 and previous == spent_id and rotated_at >= now_ms - grace_ms):
            return None
        self.rows[device_id] = (
            dataclasses.replace(device, address=address, last_seen=now_ms),
            current,
        )
        return current

    async def remove(
        self, user_id: str, device_ids: Sequence[str] | None = None, *, keep: str = ""
    ) -> list[str]:
        mine = [d.id for d, _ in self.rows.values() if d.user_id == user_id]
        chosen = [i for i in mine if i != keep] if device_ids is None else device_ids
        removed = [i for i in chosen if i in mine]
        for device_id in removed:
            del self.rows[device_id]
            self.previous.pop(device_id, None)
        return removed


class FakeLog:
    """The message log: stores each submission at once, allocating seqs per user like the
    real logs (one receive ``seq`` per receiver, one ``send_seq`` for an outbox copy)."""

    def __init__(self) -> None:
        self.submissions: list[Submission] = []
        self.seqs: dict[str, int] = {}
        self.send_seqs: dict[str, int] = {}

    def submit(self, submission: Submission) -> asyncio.Future[Stored]:
        self.submissions.append(submission)
        msg = submission.msg
        send_seq = 0
        if submission.outbox:
            send_seq = self.send_seqs[msg.send_id] = self.send_seqs.get(msg.send_id, 0) + 1
        receiver_seqs = []
        for receiver in submission.receivers:
            self.seqs[receiver] = self.seqs.get(receiver, 0) + 1
            receiver_seqs.append((receiver, self.seqs[receiver]))
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        ack = Ack(msg.server_id, msg.send_time, send_seq)
        future.set_result(Stored(ack, duplicate=False, receiver_seqs=receiver_seqs))
        return future

    def kinds(self) -> list[int]:
        """The message types submitted, in order."""
        return [s.msg.msg_type for s in self.submissions]


class FakeRelay:
    """``PushRouter``: the pushes routed, in order."""

    def __init__(self) -> None:
        self.pushes: list[Push] = []

    async def route(self, pushes: Sequence[Push], where: Located | None = None) -> None:
        self.pushes.extend(pushes)


class FakeInbox:
    """``InboxStore`` and ``Counters``: copies by (owner, box, seq); ``exposure`` per user."""

    def __init__(self) -> None:
        self.copies: dict[tuple[str, int, int], Msg] = {}
        self.read: set[tuple[str, int]] = set()
        self.exposure: dict[str, tuple[int, int]] = {}

    def put(self, owner: str, msg: Msg, *, sent: bool = False) -> None:
        """A received copy at ``msg.seq``, or a sent one at ``msg.send_seq``."""
        if sent:
            self.copies[(owner, 1, msg.send_seq)] = msg.copy(seq=0)
        else:
            self.copies[(owner, 0, msg.seq)] = msg

    async def pull(
        self,
        user_id: str,
        start: int,
        end: int,
        send_start: int,
        send_end: int,
        limit: int,
        after: PullCursor | None = None,
    ) -> list[Msg]:
        picked = [
            msg
            for (owner, box, seq), msg in self.copies.items()
            if owner == user_id
            and (start < seq <= end if box == 0 else send_start < seq <= send_end)
            and (after is None or pull_cursor(msg) > after)
        ]
        picked.sort(key=pull_cursor)
        return picked[:limit] if limit > 0 else picked

    async def delete_received(self, user_id: str, seqs: Sequence[int]) -> int:
        return sum(self.copies.pop((user_id, 0, seq), None) is not None for seq in seqs)

    async def mark_read(self, user_id: str, seqs: Sequence[int]) -> int:
        marked = [seq for seq in seqs if (user_id, 0, seq) in self.copies]
        self.read.update((user_id, seq) for seq in marked)
        return len(marked)

    async def origins(self, user_id: str, seqs: Sequence[int]) -> set[tuple[str, str]]:
        copies = (self.copies.get((user_id, 0, seq)) for seq in seqs)
        return {(msg.send_id, msg.group_id) for msg in copies if msg is not None}

    async def exposed(self, user_id: str) -> tuple[int, int]:
        return self.exposure.get(user_id, (0, 0))


class FakeFriends:
    """``FriendStore`` and ``FriendshipReads``: one request per ordered pair, friendships
    both ways."""

    def __init__(self, users: FakeUsers) -> None:
        self._users = users
        self.requests: dict[str, FriendRequest] = {}
        #: fs_id -> the update time its receiver read it at.
        self.read_until: dict[str, int] = {}
        self._pairs: dict[tuple[str, str], str] = {}
        #: (user, friend) -> (fs_id, remark, status, update_time)
        self.rows: dict[tuple[str, str], tuple[str, str | None, int, int]] = {}

    def befriend(self, user_id: str, *others: str) -> None:
        """Make ``user_id`` and each of ``others`` friends (an accepted request each)."""
        for other in others:
            fs_id = f"{user_id}-{other}"
            self._pairs[(user_id, other)] = fs_id
            self.requests[fs_id] = FriendRequest(
                fs_id, user_id, other, ACCEPTED, None, None, "test", 0, 0
            )
            self.rows[(user_id, other)] = self.rows[(other, user_id)] = (fs_id, None, ACCEPTED, 0)

    def _set(self, request: FriendRequest, **changes: object) -> FriendRequest:
        self.requests[request.id] = dataclasses.replace(request, **changes)  # type: ignore[arg-type]
        return self.requests[request.id]

    async def upsert_request(
        self,
        *,
        new_id: str,
        user_id: str,
        friend_id: str,
        apply_msg: str | None,
        req_remark: str | None,
        source: str,
        now_ms: int,
        renew_rejected_before: int,
    ) -> str | None:
        fs_id = self._pairs.get((user_id, friend_id))
        if fs_id is None:
            self._pairs[(user_id, friend_id)] = new_id
            self.requests[new_id] = FriendRequest(
                new_id, user_id, friend_id, PENDING, apply_msg, req_remark, source, now_ms, now_ms
            )
            return new_id
        request = self.requests[fs_id]
        if request.status == PENDING or (
            request.status == REJECTED and request.update_time >= renew_rejected_before
        ):
            return None
        self._set(
            request,
            status=PENDING,
            apply_msg=apply_msg,
            req_remark=req_remark,
            source=source,
            update_time=now_ms,
        )
        return fs_id

    async def get_request(self, fs_id: str) -> FriendRequest | None:
        return self.requests.get(fs_id)

    async def request_between(self, user_id: str, friend_id: str) -> FriendRequest | None:
        fs_id = self._pairs.get((user_id, friend_id))
        return None if fs_id is None else self.requests[fs_id]

    def _friend(self, owner: str, other: str) -> Friend:
        fs_id, remark, status, update_time = self.rows[(owner, other)]
        profile = self._users.users[other]
        return Friend(
            fs_id=fs_id,
            friend_id=other,
            account=profile.account,
            name=profile.name,
            avatar=profile.avatar,
            gender=profile.gender,
            age=profile.age,
            region=profile.region,
            status=status,
            remark=remark,
            email=profile.email,
            source=self.requests[fs_id].source,
            signature=profile.signature,
            create_time=update_time,
            update_time=update_time,
        )

    async def accept_request(
        self, fs_id: str, resp_msg: str | None, resp_remark: str | None, now_ms: int
    ) -> tuple[Friend, Friend] | None:
        request = self.requests.get(fs_id)
        if request is None or request.status != PENDING:
            return None
        self._set(request, status=ACCEPTED, update_time=now_ms)
        requester, accepter = request.user_id, request.friend_id
        self.rows[(accepter, requester)] = (fs_id, resp_remark, ACCEPTED, now_ms)
        self.rows[(requester, accepter)] = (fs_id, request.req_remark, ACCEPTED, now_ms)
        return self._friend(accepter, requester), self._friend(requester, accepter)

    async def reject_request(self, fs_id: str, resp_msg: str | None, now_ms: int) -> bool:
        request = self.requests.get(fs_id)
        if request is None or request.status != PENDING:
            return False
        self._set(request, status=REJECTED, update_time=now_ms)
        return True

    async def delete_friend(self, user_id: str, friend_id: str, fs_id: str, now_ms: int) -> bool:
        if not await self.are_friends(user_id, friend_id):
            return False
        for owner, other in ((user_id, friend_id), (friend_id, user_id)):
            row_id, remark, _, _ = self.rows[(owner, other)]
            self.rows[(owner, other)] = (row_id, remark, DELETED, now_ms)
        self._set(self.requests[fs_id], status=DELETED, update_time=now_ms)
        return True

    async def set_remark(self, user_id: str, friend_id: str, remark: str, now_ms: int) -> bool:
        if not await self.are_friends(user_id, friend_id):
            return False
        fs_id, _, status, _ = self.rows[(user_id, friend_id)]
        self.rows[(user_id, friend_id)] = (fs_id, remark, status, now_ms)
        return True

    async def are_friends(self, user_id: str, friend_id: str) -> bool:
        row = self.rows.get((user_id, friend_id))
        return row is not None and row[2] == ACCEPTED

    async def friends_among(self, user_id: str, user_ids: Sequence[str]) -> set[str]:
        return {uid for uid in user_ids if await self.are_friends(user_id, uid)}

    async def friends_since(self, user_id: str, since_ms: int) -> list[Friend]:
        return [
            self._friend(owner, other)
            for (owner, other), row in self.rows.items()
            if owner == user_id and row[3] > since_ms
        ]

    async def requests_to(
        self, user_id: str, *, since_ms: int, pending_only: bool, unread_only: bool = False
    ) -> list[FriendshipWithUser]:
        found = []
        for r in self.requests.values():
            if r.friend_id != user_id or r.update_time <= since_ms:
                continue
            if pending_only and r.status != PENDING:
                continue
            if unread_only and self.read_until.get(r.id, -1) >= r.update_time:
                continue
            profile = self._users.users[r.user_id]
            found.append(
                FriendshipWithUser(
                    fs_id=r.id,
                    user_id=r.user_id,
                    name=profile.name,
                    avatar=profile.avatar,
                    gender=profile.gender,
                    age=profile.age,
                    region=profile.region,
                    status=r.status,
                    apply_msg=r.apply_msg,
                    source=r.source,
                    create_time=r.create_time,
                    account=profile.account,
                    remark=r.req_remark,
                    email=None,
                )
            )
        return found

    async def mark_read(self, fs_id: str, user_id: str, read_until: int) -> None:
        self.read_until[fs_id] = max(read_until, self.read_until.get(fs_id, read_until))


class FakeGroups:
    """``GroupStore``: groups and their members' roles in joining order."""

    def __init__(self, users: FakeUsers) -> None:
        self._users = users
        self.groups: dict[str, GroupInfo] = {}
        self.roles: dict[str, dict[str, int]] = {}

    def _member(self, group_id: str, user_id: str) -> GroupMember:
        profile = self._users.users[user_id]
        return GroupMember(
            age=profile.age,
            group_id=group_id,
            user_id=user_id,
            group_name=profile.name,
            avatar=profile.avatar,
            joined_at=0,
            region=profile.region,
            gender=profile.gender,
            remark=None,
            signature=profile.signature,
            role=self.roles[group_id][user_id],
        )

    async def create_group(self, info: GroupInfo, member_ids: Sequence[str]) -> list[GroupMember]:
        self.groups[info.id] = info
        self.roles[info.id] = {info.owner: 0}
        for uid in member_ids:
            if uid in self._users.users and uid != info.owner:
                self.roles[info.id][uid] = MEMBER
        return await self.members(info.id)

    async def get_group(self, group_id: str) -> GroupInfo | None:
        return self.groups.get(group_id)

    async def member_roles(self, group_id: str) -> dict[str, int]:
        return dict(self.roles.get(group_id, {}))

    async def member_role(self, group_id: str, user_id: str) -> int | None:
        return self.roles.get(group_id, {}).get(user_id)

    async def members(
        self, group_id: str, user_ids: Sequence[str] | None = None
    ) -> list[GroupMember]:
        return [
            self._member(group_id, uid)
            for uid in self.roles.get(group_id, {})
            if user_ids is None or uid in user_ids
        ]

    async def add_members(self, group_id: str, user_ids: Sequence[str], now_ms: int) -> list[str]:
        roles = self.roles[group_id]
        added = [uid for uid in user_ids if uid in self._users.users and uid not in roles]
        roles.update(dict.fromkeys(added, MEMBER))
        return added

    async def remove_members(self, group_id: str, user_ids: Sequence[str]) -> list[str]:
        roles = self.roles[group_id]
        return [uid for uid in user_ids if roles.pop(uid, None) is not None]

    async def update_group(
        self,
        group_id: str,
        *,
        name: str,
        avatar: str,
        description: str,
        announcement: str,
        now_ms: int,
    ) -> GroupInfo | None:
        info = self.groups.get(group_id)
        if info is None:
            return None
        self.groups[group_id] = dataclasses.replace(
            info,
            name=name or info.name,
            avatar=avatar or info.avatar,
            description=description or info.description,
            announcement=announcement or info.announcement,
            update_time=now_ms,
        )
        return self.groups[group_id]

    async def delete_group(self, group_id: str) -> None:
        self.groups.pop(group_id, None)
        self.roles.pop(group_id, None)


def friend_service(
    users: FakeUsers,
    clock: FakeClock,
    *,
    store: FakeFriends | None = None,
    events: FakeEvents | None = None,
    log: FakeLog | None = None,
    limits: LimitsConfig | None = None,
) -> FriendService:
    """A ``FriendService`` on fakes: ``store`` (a new ``FakeFriends`` of ``users`` if not
    given) is both its store and its reads."""
    store = store or FakeFriends(users)
    return FriendService(
        friends=store,
        users=users,
        notifier=Notifier(log=log or FakeLog(), clock=clock),
        clock=clock,
        limits=limits or LimitsConfig(),
        reads=store,
        events=events or FakeEvents(),
    )


def group_service(
    users: FakeUsers,
    friends: FakeFriends,
    clock: FakeClock,
    *,
    store: FakeGroups | None = None,
    events: FakeEvents | None = None,
    log: FakeLog | None = None,
    limits: LimitsConfig | None = None,
) -> GroupService:
    """A ``GroupService`` on fakes: ``store`` a new ``FakeGroups`` of ``users`` if not
    given, and an in-process membership cache."""
    return GroupService(
        groups=store or FakeGroups(users),
        friends=friends,
        cache=InProcessMembershipCache(),
        notifier=Notifier(log=log or FakeLog(), clock=clock),
        clock=clock,
        limits=limits or LimitsConfig(),
        events=events or FakeEvents(),
    )
