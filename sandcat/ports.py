"""Ports: what services need from the outside world (``typing.Protocol``).

Adapters in ``sandcat/adapters/*`` implement them; services never import a driver.
"""

from __future__ import annotations

import asyncio
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

from sandcat.domain import (
    Ack,
    GroupStamp,
    Stored,
    Submission,
    UserChanges,
    UserRecord,
    UserSeqs,
)
from sandcat.protocol.msg import Msg
from sandcat.protocol.payloads import Friend, FriendshipWithUser, GroupInfo, GroupMember


class Clock(Protocol):
    """Every reading of time that decides behaviour goes through one (tests pass a fake)."""

    def now_ms(self) -> int:
        """Wall-clock milliseconds: timestamps that are stored or sent."""

    def now(self) -> float:
        """Wall-clock seconds."""

    def monotonic(self) -> float:
        """Seconds that never go back: durations (rate limits, holds), never stored."""


class UserStore(Protocol):
    async def insert_user(self, user: UserRecord) -> None:
        """Insert a user with zeroed sequences; raises ``BadRequest`` on a taken e-mail."""

    async def get_user(self, user_id: str) -> UserRecord | None: ...

    async def find_login(self, login: str) -> UserRecord | None:
        """The user whose account, e-mail or phone equals ``login``."""

    async def email_taken(self, email: str) -> bool: ...

    async def update_user(
        self, user_id: str, changes: UserChanges, now_ms: int
    ) -> UserRecord | None: ...

    async def set_password(
        self, user_id: str, password_hash: str, salt: str, now_ms: int
    ) -> None: ...

    async def search_user(self, pattern: str, exclude_id: str) -> tuple[UserRecord, str] | None:
        """Exact match on e-mail, phone or account; returns the user and the matched field."""

    async def revoke_tokens(self, user_id: str) -> int:
        """Raise the user's token generation (refusing every token issued so far) and return
        the new one; the raise is visible to every process at once."""

    async def token_generation(self, user_id: str) -> int:
        """The generation new tokens of ``user_id`` carry; 0 for an unknown user."""

    async def session_state(self, user_id: str, device_id: str) -> tuple[int, bool]:
        """What a token check of the device's tokens reads, in one round trip: the user's
        token generation (0 for an unknown user) and whether ``device_id`` is a device of
        the user that was not logged out."""


class UserAdminStore(UserStore, Protocol):
    """What the operator's commands (``sandcat users ...``) need beyond ``UserStore``."""

    async def list_users(self, limit: int, offset: int) -> list[UserRecord]:
        """Users not deleted, oldest first."""

    async def set_disabled(self, user_id: str, disabled: bool, now_ms: int) -> bool:
        """Mark the user (not deleted) disabled or enabled; False if there is no such user."""

    async def delete_user(self, user_id: str, now_ms: int) -> bool:
        """Mark the user deleted (the row stays, its e-mail stays taken); False if absent."""


class SessionEnder(Protocol):
    async def end_sessions(self, user_id: str) -> None:
        """Close the user's open WebSocket connections with 4002, wherever they are (their
        tokens are already refused: this only stops sockets opened before)."""


class Events(Protocol):
    async def emit(self, user_ids: Sequence[str], name: str, data: Mapping[str, object]) -> None:
        """Best effort: the v2 event ``name`` with ``data`` to every v2 connection of these
        users, on every gateway (docs/protocol.md, "Protocol v2"). Never raises: a client
        that missed an event catches up through the HTTP routes."""


class CodeStore(Protocol):
    """Registration / password-change codes: one per e-mail, its own TTL, single use."""

    async def put_code(self, email: str, code: str, ttl_seconds: int) -> None: ...

    async def get_code(self, email: str) -> str | None: ...

    async def delete_code(self, email: str) -> None: ...

    async def record_failure(self, email: str, max_attempts: int) -> None:
        """Count a wrong guess at the e-mail's code; the ``max_attempts``-th voids the code
        (atomically: concurrent guesses cannot exceed the bound)."""


class MessageLog(Protocol):
    """Makes accepted messages durable, assigning seqs (embedded: ``SqliteMessageLog``;
    distributed: ``QueuedMessageLog``)."""

    def submit(self, submission: Submission) -> asyncio.Future[Stored]:
        """Queue in call order; the future resolves once the submission is durable."""


class MessageQueue(Protocol):
    """The broker behind ``QueuedMessageLog`` (Kafka)."""

    async def publish(self, key: str, value: bytes) -> Awaitable[None]:
        """Enqueue one record; the result resolves on the broker's ack. Calls that return
        in order put a key's records in that order."""


class FriendGate(Protocol):
    """Whether a one-to-one message (or a search) may pass (``FriendService``)."""

    async def are_friends(self, user_id: str, other_id: str) -> bool: ...


class GroupGate(Protocol):
    """Who receives a group message (``GroupService``)."""

    async def recipients(
        self, group_id: str, sender_id: str, *, again: bool = False
    ) -> tuple[list[str], int]:
        """Every member but the sender and the membership epoch they were read at; raises
        ``MessageRefused`` if the sender may not post. ``again``: read once more for a
        message the allocation found stale (must not wait for a change of this process)."""


#: Where a pull page ends: ``(send_time, seq in its box, box)`` of its last copy (box 0 =
#: received, 1 = sent), the order every pull returns copies in.
PullCursor = tuple[int, int, int]


def pull_cursor(msg: Msg) -> PullCursor:
    """The cursor of a pulled copy: a sent copy has ``seq`` 0 and its ``send_seq``."""
    return (msg.send_time, msg.seq, 0) if msg.seq else (msg.send_time, msg.send_seq, 1)


class InboxStore(Protocol):
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
        """Receive copies with ``start < seq <= end`` and sent copies with
        ``send_start < send_seq <= send_end`` (their ``seq`` zeroed), ordered by
        ``pull_cursor``, at most ``limit`` (0: all) of those after ``after``."""

    async def delete_received(self, user_id: str, seqs: Sequence[int]) -> int: ...

    async def mark_read(self, user_id: str, seqs: Sequence[int]) -> int: ...

    async def origins(self, user_id: str, seqs: Sequence[int]) -> set[tuple[str, str]]:
        """``(send_id, group_id)`` of the user's received copies at those seqs (which
        conversations a Read frame is about)."""


class Counters(Protocol):
    async def exposed(self, user_id: str) -> tuple[int, int]:
        """The exposed (receive seq, send seq) of a user: nothing at or below them is
        allocated but unstored; (0, 0) when unknown."""


class Delivery(Protocol):
    """Best-effort push to the users connected to this process (sync is the source of
    truth): the gateway's ``Registry``."""

    def deliver(self, user_id: str, msg: Msg, *, exclude_platform: int | None = None) -> None: ...

    def deliver_frame(self, user_id: str, frame: bytes, exclude_platform: int | None) -> int:
        """Queue an already encoded frame on the user's connections; returns how many."""

    def online_elsewhere(self, user_id: str, platform: int) -> bool:
        """Whether the user has a connection here on another platform than ``platform``."""


class Push(NamedTuple):
    """One copy of a message for one user's connections."""

    user_id: str
    msg: Msg
    #: The platform not to send it to (the sender's own device), if any.
    exclude_platform: int | None = None


#: user -> {platform: gateway id}: where ``Presence.locate`` finds each connected user.
Located = dict[str, dict[int, str]]


class PushRouter(Protocol):
    """Pushes wherever the recipients are connected (``RemotePushRouter``: presence and the
    push bus, in-process in embedded mode)."""

    async def route(self, pushes: Sequence[Push], where: Located | None = None) -> None:
        """Send each copy to the connections of its user, wherever they are (best effort).
        ``where``: the users' presence when the caller looked it up already (``SeqRelease``),
        covering every user of ``pushes``; None: the router looks it up."""


#: Bytes read from storage per step of a download: its memory per request.
OBJECT_CHUNK_BYTES = 256 * 1024


@dataclass(frozen=True, slots=True)
class ObjectStream:
    """An object being read: its size, and its bytes in chunks of at most
    ``OBJECT_CHUNK_BYTES`` (the iterator releases the source when it ends or is closed)."""

    size: int
    chunks: AsyncGenerator[bytes, None]


class FileStore(Protocol):
    async def put_object(self, bucket: str, key: str, data: bytes, content_type: str) -> None: ...

    async def open_object(self, bucket: str, key: str) -> ObjectStream | None:
        """The object as a stream, or None when there is none (or the key is invalid)."""

    async def has_object(self, bucket: str, key: str) -> bool: ...


class Mailer(Protocol):
    async def send_code(self, email: str, code: str) -> None: ...


#: Something to run at shutdown.
Closer = Callable[[], Awaitable[None]]


# --- Sign-in with an OAuth provider (GitHub) ------------------------------------------


class OAuthStates(Protocol):
    """Sign-ins in progress, keyed by their ``state``: a value each, its own TTL, single use
    (embedded: SQLite; distributed: Redis)."""

    async def put_state(self, state: str, value: str, ttl_seconds: int) -> None: ...

    async def take_state(self, state: str) -> str | None:
        """The value of an unexpired ``state``, removed in the same step: of two takes of
        one state, at most one gets it."""


class OAuthLinks(Protocol):
    """Which user an account at a provider signs in as (``oauth_links``)."""

    async def linked_user(self, provider: str, subject: str) -> str | None: ...

    async def link(self, provider: str, subject: str, user_id: str, now_ms: int) -> str:
        """Link the provider's account ``subject`` to ``user_id`` unless it is linked
        already; returns the user it is linked to (the earlier one, after a race)."""


@dataclass(frozen=True, slots=True)
class ProviderEmail:
    address: str
    primary: bool
    verified: bool


@dataclass(frozen=True, slots=True)
class ProviderAccount:
    """The signed-in account at the provider (GitHub's ``/user`` and ``/user/emails``)."""

    subject: str
    login: str
    name: str
    avatar_url: str
    emails: tuple[ProviderEmail, ...]


class OAuthProvider(Protocol):
    """The provider's token endpoint and API (``sandcat/adapters/github``)."""

    async def sign_in(self, *, code: str, verifier: str, redirect_uri: str) -> ProviderAccount:
        """Exchange ``code`` (with the PKCE verifier) for a token and read the account.
        Raises ``OAuthRefused`` when the provider refuses the code, ``OAuthProviderError``
        when it cannot be reached or answers what it should not."""

    async def fetch_avatar(self, url: str) -> tuple[bytes, str] | None:
        """The picture at ``url`` and its image type; None if it cannot be had."""


# --- Friends and groups ---------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class FriendRequest:
    """A row of ``friendships``: ``user_id`` asked ``friend_id`` (``status``: a
    ``FriendStatus`` value)."""

    id: str
    user_id: str
    friend_id: str
    status: int
    apply_msg: str | None
    req_remark: str | None
    source: str
    create_time: int
    update_time: int


class FriendStore(Protocol):
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
        """Create the request, or renew (back to Pending) one that was answered: accepted,
        deleted, or rejected before ``renew_rejected_before`` (ms). Returns its id (``new_id``
        if new), or ``None`` when the pair's request is pending or was rejected since then
        (the row is left as it is)."""

    async def get_request(self, fs_id: str) -> FriendRequest | None: ...

    async def request_between(self, user_id: str, friend_id: str) -> FriendRequest | None:
        """The request ``user_id`` sent to ``friend_id`` (one row per ordered pair)."""

    async def accept_request(
        self, fs_id: str, resp_msg: str | None, resp_remark: str | None, now_ms: int
    ) -> tuple[Friend, Friend] | None:
        """Pending -> Accepted plus both ``friends`` rows, in one transaction. Returns
        (the requester as the accepter sees them, the accepter as the requester sees them),
        or ``None`` if the request was no longer pending."""

    async def reject_request(self, fs_id: str, resp_msg: str | None, now_ms: int) -> bool:
        """Pending -> Rejected; ``False`` if it was no longer pending."""

    async def delete_friend(self, user_id: str, friend_id: str, fs_id: str, now_ms: int) -> bool:
        """Mark both directions (and the request) Deleted; ``False`` if they were not friends."""

    async def set_remark(self, user_id: str, friend_id: str, remark: str, now_ms: int) -> bool: ...

    async def are_friends(self, user_id: str, friend_id: str) -> bool: ...

    async def friends_among(self, user_id: str, user_ids: Sequence[str]) -> set[str]:
        """Those of ``user_ids`` that are ``user_id``'s accepted friends (one statement)."""

    async def friends_since(self, user_id: str, since_ms: int) -> list[Friend]:
        """The user's ``friends`` rows (any status) changed after ``since_ms``."""

    async def requests_to(
        self, user_id: str, *, since_ms: int, pending_only: bool, unread_only: bool = False
    ) -> list[FriendshipWithUser]:
        """Requests sent to the user changed after ``since_ms``, with the requester's profile;
        ``unread_only``: not those the user read as they stand (``FriendshipReads``)."""


class GroupStore(Protocol):
    async def create_group(self, info: GroupInfo, member_ids: Sequence[str]) -> list[GroupMember]:
        """Insert the group and those of ``member_ids`` that are users (the owner as Owner),
        each with the group's conversation read up to now (``ConversationStore``)."""

    async def get_group(self, group_id: str) -> GroupInfo | None: ...

    async def member_roles(self, group_id: str) -> dict[str, int]:
        """Every member's role; empty when the group does not exist."""

    async def member_role(self, group_id: str, user_id: str) -> int | None: ...

    async def members(
        self, group_id: str, user_ids: Sequence[str] | None = None
    ) -> list[GroupMember]:
        """Members with their profiles (all, or only ``user_ids``), in joining order."""

    async def add_members(self, group_id: str, user_ids: Sequence[str], now_ms: int) -> list[str]:
        """Add those of ``user_ids`` that are users and not yet members, with the group's
        conversation read up to now (nothing sent before is unread); returns them."""

    async def remove_members(self, group_id: str, user_ids: Sequence[str]) -> list[str]:
        """Remove those of ``user_ids`` that are members; returns them."""

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
        """Set the non-empty fields (an empty string keeps the old value)."""

    async def delete_group(self, group_id: str) -> None:
        """Delete the group and every membership."""


class MembershipCache(Protocol):
    """Member ids per group and their membership epoch, so a group message does not read
    the database each time.

    A cache shared by several processes (Redis) takes part in ordering changes against
    group messages: a change's notice installs the new set and moves the epoch in the
    call that allocates its seqs (``Submission.members``), a group message is allocated
    only at the epoch its receivers were read at (``Submission.epoch``). See
    docs/message-flow.md, "Membership windows".
    """

    async def get(self, group_id: str) -> tuple[frozenset[str], int] | None:
        """The cached members and their epoch; None when not cached (load, then ``put``)."""

    async def put(self, group_id: str, members: frozenset[str]) -> int | None:
        """Cache a set loaded after a miss; returns its epoch, or None when it was not
        cached because a change overtook the load or is under way (load again)."""

    async def invalidate(self, group_id: str) -> None:
        """A change of the group is written (called under ``changing``): forget the set,
        unless the change's notice installs the new one."""

    def changing(self, group_id: str) -> AbstractAsyncContextManager[None]:
        """Held by a membership change from its permission check until its notice is
        durable: excludes the group's other changes in every process sharing the cache."""


# --- Devices --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Device:
    """One login of a user (a row of ``devices``): its own refresh-token family."""

    id: str
    user_id: str
    platform: str
    client: str
    user_agent: str
    address: str
    first_seen: int
    last_seen: int


class DeviceStore(Protocol):
    """Devices and their refresh-token families; a removal is seen by every process at once."""

    async def add_device(self, device: Device, refresh_id: str, keep: int) -> list[str]:
        """Record a login whose refresh token has the jti ``refresh_id``; the user's least
        recently seen devices beyond ``keep`` (never the new one) are removed and their ids
        returned."""

    async def devices(self, user_id: str) -> list[Device]:
        """The user's devices, most recently seen first."""

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
        """Use the refresh jti ``spent_id`` of the user's device; returns the device's current
        jti after the use, or None (nothing changed) when the use is refused.

        ``spent_id`` the current jti: it becomes ``new_id`` (the same one when nothing
        rotates; a rotation keeps the spent jti as the previous one, with the time). Else
        ``spent_id`` the previous jti, spent at most ``grace_ms`` ago (``grace_ms`` > 0):
        the current jti is returned unchanged (a replay within the reuse grace). Either way
        the address and time are noted. Atomic: of two uses of one current jti, one rotates.
        """

    async def remove(
        self, user_id: str, device_ids: Sequence[str] | None = None, *, keep: str = ""
    ) -> list[str]:
        """Remove those of ``device_ids`` that are the user's (None: every device of the user
        but ``keep``); returns the removed ids."""


class DeviceEnder(Protocol):
    async def end_device(self, user_id: str, device_id: str) -> None:
        """Close the device's open WebSocket connections with 4002, wherever they are."""


class FriendshipReader(Protocol):
    """``FriendService.mark_read``: a type-27 (FriendshipReceived) frame marks a request read."""

    async def mark_read(self, user_id: str, fs_id: str) -> None:
        """Raises ``NotFound`` for an unknown request, ``Forbidden`` unless the user is the
        one it was sent to."""


class FriendshipReads(Protocol):
    async def mark_read(self, fs_id: str, user_id: str, read_until: int) -> None:
        """The request ``fs_id`` to ``user_id`` was read as it stood at ``read_until`` (its
        update time): the friend sync leaves it out until it changes again."""


#: What a shared limiter does while its store is down: count in this process alone (the
#: budget per process, as before it was shared) or refuse the request (``DbError``).
OnOutage = Literal["local", "refuse"]


@dataclass(frozen=True, slots=True)
class WindowRule:
    """At most ``limit`` events per ``window`` seconds per key (``limit`` <= 0: no limit);
    ``name`` keeps its keys apart from every other rule's."""

    name: str
    limit: int
    window: float
    on_outage: OnOutage


@dataclass(frozen=True, slots=True)
class BucketRule:
    """A token bucket per key: ``rate`` tokens a second up to ``burst`` (``rate`` <= 0: no
    limit)."""

    name: str
    rate: float
    burst: int
    on_outage: OnOutage


class RateLimiter(Protocol):
    """The counts behind the login, code and bot budgets (embedded: this process's memory;
    distributed: Redis, one budget for every process)."""

    async def hit(self, rule: WindowRule, key: str) -> int:
        """Count one event of ``key``: 0 when it is within ``rule``, else the whole seconds
        until it would be (and nothing is counted)."""

    async def hit_many(self, checks: Sequence[tuple[WindowRule, str]]) -> list[int]:
        """``hit`` for every ``(rule, key)`` of one request in ONE atomic call, all or
        nothing: each verdict (in order) is 0 or the seconds until that check would pass,
        and when any is not 0 none of the events is counted (a refused request consumes no
        budget). While the store is down, a ``"refuse"`` rule among them refuses them all."""

    async def refund(self, rule: WindowRule, key: str) -> None:
        """Take back the latest counted event of ``key`` (an attempt that did not count)."""

    async def refund_many(self, checks: Sequence[tuple[WindowRule, str]]) -> None:
        """``refund`` for every ``(rule, key)``, in one call."""

    async def take(self, rule: BucketRule, key: str) -> bool:
        """Take a token from ``key``'s bucket; False when there was none."""


# --- Distributed mode -------------------------------------------------------------------


class SeqAllocator(Protocol):
    """Per-user receive ``seq`` and send ``send_seq`` counters with an exposure watermark.

    Every allocated seq is *pending* until ``mark_stored`` says it is in the inbox; the
    *exposed* value of a counter is the highest seq below which nothing is pending.
    Pushes, ack copies and ``GET /message/seq`` never go above it (docs/distributed.md).
    """

    async def allocate(self, sender: str | None, receivers: Sequence[str]) -> tuple[int, list[int]]:
        """In one atomic call: the sender's next ``send_seq`` (0 when ``sender`` is None)
        and each receiver's next ``seq``, in order. No seq above the durably persisted
        segment mark is ever returned."""

    async def allocate_many(
        self,
        requests: Sequence[tuple[str | None, Sequence[str]]],
        groups: Sequence[GroupStamp | None] = (),
    ) -> list[tuple[int, list[int]]]:
        """``allocate`` for every ``(sender, receivers)`` request of a batch, in ONE atomic
        call, as if the requests were allocated one after the other in their order: a
        counter's seqs go to the earlier request first. ``groups`` (by request index) checks
        and moves group epochs in the same order; a check that fails raises
        ``StaleMembership`` and allocates nothing."""

    async def mark_stored(self, items: Sequence[UserSeqs]) -> dict[str, tuple[int, int]]:
        """Seqs now durable (or never to be: a gap); returns the new exposed
        ``(seq, send_seq)`` of every touched user."""

    async def exposed(self, user_id: str) -> tuple[int, int]: ...


class SegmentStore(Protocol):
    """Durable segment marks behind the counters (PostgreSQL ``sequence`` table)."""

    async def raise_mark(self, user_id: str, kind: str, step: int) -> int:
        """Raise the ``rec`` or ``send`` mark of a user by ``step``; returns the new mark."""

    async def marks(self, user_id: str) -> tuple[int, int]:
        """The current (rec, send) marks; (0, 0) for an unknown user."""


class InboxWriter(Protocol):
    async def insert_copies(self, copies: Sequence[tuple[str, int, Msg]]) -> None:
        """Store ``(owner_id, box, msg)`` copies (box 0 received with ``msg.seq``, box 1 sent
        with ``msg.send_seq``) idempotently: re-inserting the same (owner, box, seq) is a no-op."""


class HistoryStore(Protocol):
    async def append(self, messages: Sequence[Msg]) -> None:
        """Append chat messages once each (idempotent on (send_id, server_id, send_time))."""


class IdempotencyStore(Protocol):
    """``(send_id, local_id)`` -> the original ack, for 24 h."""

    async def get_ack(self, send_id: str, local_id: str) -> Ack | None: ...

    async def put_ack(self, send_id: str, local_id: str, ack: Ack) -> None: ...

    async def get_acks(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], Ack]:
        """The live acks of those ``keys`` that have one, in one round trip."""

    async def put_acks(self, items: Sequence[tuple[str, str, Ack]]) -> None:
        """Store ``(send_id, local_id, ack)`` items in one round trip (a key given twice
        keeps its last ack)."""


class SeqRelease(Protocol):
    """The msg-server's seq release and its users' presence lookup in one round trip."""

    async def release(
        self, items: Sequence[UserSeqs]
    ) -> tuple[dict[str, tuple[int, int]], Located]:
        """``SeqAllocator.mark_stored(items)``, then ``Presence.locate`` of every user of
        ``items``, in that order: a user who connects after the lookup connected after the
        release, so the pull that follows the connect reaches the released seqs."""


class KeyClaims(Protocol):
    """The msg-server's claim of idempotency keys before it stores their records."""

    async def claim(self, items: Sequence[tuple[str, str, Ack]]) -> dict[tuple[str, str], str]:
        """Put the idempotency keys not already held; return each key's ``server_id``."""


class Presence(Protocol):
    """Which gateway holds each connected user's platforms (one connection per platform).

    Entries expire unless the holding gateway refreshes them (heartbeats), and entries of a
    gateway that left the registry are never returned.
    """

    async def connect(self, user_id: str, platform: int, gateway_id: str) -> str | None:
        """Record the connection; returns the gateway that held that platform before, if any
        other (it should close its now superseded connection)."""

    async def disconnect(self, user_id: str, platform: int, gateway_id: str) -> None:
        """Forget the connection, unless another gateway holds that platform by now."""

    async def refresh(self, gateway_id: str, connections: Iterable[tuple[str, int]]) -> None:
        """Heartbeat: keep (re-create if expired) the gateway's ``(user_id, platform)``
        entries, never taking over a platform another gateway holds. ``connections`` walks
        the gateway's registry lazily: read it whole before the first ``await``, or not at
        all when nothing expires (one process)."""

    async def locate(self, user_ids: Sequence[str]) -> dict[str, dict[int, str]]:
        """``user -> {platform: gateway_id}`` over live gateways; offline users are left out."""


class GatewayRegistry(Protocol):
    """Live gateway instances and their public WebSocket addresses (TTL heartbeats)."""

    async def register(self, gateway_id: str, ws_addr: str) -> None:
        """Announce the gateway or renew its lease (call it every third of the TTL)."""

    async def unregister(self, gateway_id: str) -> None: ...

    async def live(self) -> dict[str, str]:
        """``gateway_id -> ws_addr`` of every gateway whose lease has not expired."""

    async def next_ws_addr(self) -> str | None:
        """The live gateways' addresses in turn (shared round robin); None when none is live."""


class PushBus(Protocol):
    """One batch of encoded pushes per gateway, delivered to that gateway only, in order."""

    async def publish(self, batches: Mapping[str, bytes]) -> None:
        """Send ``gateway_id -> batch``, all in one round trip."""

    def subscribe(self, gateway_id: str) -> AsyncIterator[bytes]:
        """The gateway's own batches, oldest first, for as long as it iterates."""


# --- Bots -------------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class BotRecord:
    """A bot account (its user row is ``id``): docs/protocol.md, "Bots"."""

    id: str
    name: str
    #: SHA-256 (hex) of the API token; the token itself is shown once and never stored.
    token_hash: str
    #: Signs webhook deliveries (HMAC-SHA256).
    secret: str
    webhook_url: str
    #: Friend requests to the bot are accepted by its webhook worker.
    auto_accept: bool
    #: The highest receive seq the webhook worker is done with.
    cursor_seq: int
    create_time: int
    update_time: int


@dataclass(slots=True, frozen=True)
class DeadLetter:
    """A webhook delivery given up after its last attempt."""

    bot_id: str
    seq: int
    server_id: str
    body: str
    attempts: int
    last_error: str
    create_time: int
    #: The store's id (``sandcat bot replay`` names it); 0 before it is stored.
    id: int = 0
    #: When the operator queued it for another delivery (ms); 0 while it is not queued.
    replay_time: int = 0


class BotStore(Protocol):
    async def insert_bot(self, bot: BotRecord) -> None: ...

    async def get_bot(self, bot_id: str) -> BotRecord | None: ...

    async def bot_by_token(self, token_hash: str) -> BotRecord | None: ...

    async def list_bots(self) -> list[BotRecord]:
        """Every bot, oldest first."""

    async def delete_bot(self, bot_id: str) -> bool: ...

    async def set_token(self, bot_id: str, token_hash: str, now_ms: int) -> bool: ...

    async def set_webhook(
        self, bot_id: str, webhook_url: str, auto_accept: bool | None, now_ms: int
    ) -> bool:
        """Set the URL (empty: no deliveries) and, unless None, the auto-accept option."""

    async def advance_cursor(self, bot_id: str, seq: int) -> None:
        """Raise the bot's cursor to ``seq`` (never lowers it)."""

    async def hold_leases(self, owner: str, now_ms: int, until_ms: int) -> set[str]:
        """Take or renew, for ``owner`` until ``until_ms``, the delivery lease of every bot
        whose lease is ``owner``'s or has run out, in one statement; returns those bots'
        ids (one webhook worker per bot across processes)."""

    async def release_leases(self, owner: str) -> None:
        """Give up every lease ``owner`` holds (another process takes them at once)."""

    async def add_dead_letter(self, letter: DeadLetter) -> None: ...

    async def dead_letters(self, bot_id: str | None, limit: int) -> list[DeadLetter]:
        """The newest ``limit`` dead letters (of one bot, or all), newest first."""

    async def queue_replay(self, bot_id: str, letter_id: int | None, now_ms: int) -> int:
        """Queue the bot's dead letter ``letter_id`` (None: all of the bot's) for another
        delivery; returns how many were found."""

    async def replays(self, bot_id: str, limit: int) -> list[DeadLetter]:
        """The bot's dead letters queued for another delivery, oldest first."""

    async def remove_dead_letter(self, letter_id: int) -> None:
        """Delivered at last (a 2xx)."""

    async def replay_failed(self, letter_id: int, attempts: int, last_error: str) -> None:
        """Another delivery given up: no longer queued, ``attempts`` more, the last error."""


# --- Conversations ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LastMessage:
    """The newest chat message of a conversation."""

    server_id: str
    sender: str
    content_type: int
    content: bytes
    time: int


@dataclass(frozen=True, slots=True)
class Conversation:
    """One user's conversation with a friend or a group (docs/protocol.md, "Conversations"):
    ``n`` chat messages so far, ``read_n`` of them read by the user."""

    peer_id: str
    is_group: bool
    n: int
    read_n: int
    last: LastMessage | None
    pinned: bool
    muted: bool
    hidden: bool
    update_time: int


class ConversationReads(Protocol):
    async def read_seqs(self, user_id: str, seqs: Sequence[int]) -> None:
        """A Read frame: mark the conversations of those received seqs read
        (``ConversationService``)."""


class ConversationStore(Protocol):
    """The conversations the message stores keep up to date, and each user's state in them
    (embedded: ``SqliteMessageLog`` writes them in its transaction; distributed: the
    history append of the msg-server)."""

    async def conversations(self, user_id: str, since_ms: int) -> list[Conversation]:
        """One per accepted friend and per group of the user, changed after ``since_ms``
        (its last message, the user's state, the friendship or membership); pinned first,
        then newest first."""

    async def conversation(self, user_id: str, peer_id: str) -> Conversation | None:
        """The user's conversation with a friend or a group; None if ``peer_id`` is
        neither."""

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
        """Set the flags that are not None. ``hidden`` holds until the conversation's next
        message: hiding keeps its count at that moment."""

    async def mark_read(
        self, user_id: str, conversation_ids: Sequence[str], upto: int | None, now_ms: int
    ) -> None:
        """Raise the user's ``read_n`` in those conversations to their ``n`` (or to
        ``upto`` when lower); never lowers it."""


class WebhookPoster(Protocol):
    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> str | None:
        """POST ``body``; None on a 2xx, else what went wrong (``HTTP 503``, an error)."""
