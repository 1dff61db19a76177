"""UserService, SyncService and Notifier over in-process fakes (``tests/fakes.py``): codes,
registration, login answers, revocation, the e-mail and password rules; pulls clamped to
what is exposed, in pages; what a notice submits."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from sandcat.adapters.embedded.ratelimit import InProcessRateLimiter
from sandcat.config import AuthConfig, LimitsConfig, ServerConfig
from sandcat.domain import UserChanges
from sandcat.errors import (
    AccountOrPassword,
    BadRequest,
    CodeIsExpired,
    CodeIsInvalid,
    Forbidden,
    UnAuthorized,
)
from sandcat.protocol.msg import Msg, MsgType
from sandcat.services.auth import PasswordService, TokenService
from sandcat.services.devices import DeviceService
from sandcat.services.notify import Notifier
from sandcat.services.sync import PULL_PAGE, SyncService
from sandcat.services.users import UserService
from tests.clock import FakeClock
from tests.fakes import (
    FakeCodes,
    FakeEvents,
    FakeInbox,
    FakeLog,
    FakeMailer,
    FakeSessions,
    FakeUsers,
)

#: argon2 at its cheapest: these tests are about the rules, not the hash.
FAST_AUTH = AuthConfig(argon2_time_cost=1, argon2_memory_cost=8, argon2_parallelism=1)


@dataclass
class Accounts:
    users: FakeUsers
    mailer: FakeMailer
    codes: FakeCodes
    sessions: FakeSessions
    service: UserService

    async def register(self, email: str, password: str = "pw") -> str:
        await self.service.send_code(email, "10.0.0.1")
        user = await self.service.register(
            name="Ann", email=email, password=password, code=self.mailer.sent[email], avatar=""
        )
        return user.id


@pytest.fixture
def accounts() -> Accounts:
    users, mailer, codes, sessions = FakeUsers(), FakeMailer(), FakeCodes(), FakeSessions()
    tokens, clock, limits, events = (
        TokenService(ServerConfig(), "s" * 32),
        FakeClock(),
        LimitsConfig(),
        FakeEvents(),
    )
    service = UserService(
        users=users,
        codes=codes,
        mailer=mailer,
        passwords=PasswordService(FAST_AUTH),
        tokens=tokens,
        clock=clock,
        auth=FAST_AUTH,
        limits=limits,
        sessions=sessions,
        devices=DeviceService(
            devices=users.devices,
            tokens=tokens,
            ender=events,
            events=events,
            clock=clock,
            limits=limits,
            reuse_grace_seconds=FAST_AUTH.refresh_reuse_grace_seconds,
        ),
        limiter=InProcessRateLimiter(clock=clock),
    )
    return Accounts(users, mailer, codes, sessions, service)


async def test_registration_takes_the_code_sent_to_the_address(accounts: Accounts) -> None:
    with pytest.raises(BadRequest, match="e-mail"):
        await accounts.service.send_code("not-an-address", "10.0.0.1")
    with pytest.raises(CodeIsExpired):
        await accounts.service.register(
            name="Ann", email="ann@example.com", password="pw", code="123456", avatar=""
        )
    await accounts.service.send_code("ann@example.com", "10.0.0.1")
    code = accounts.mailer.sent["ann@example.com"]
    wrong = "000000" if code != "000000" else "111111"
    with pytest.raises(CodeIsInvalid):
        await accounts.service.register(
            name="Ann", email="ann@example.com", password="pw", code=wrong, avatar=""
        )
    with pytest.raises(BadRequest, match="name"):
        await accounts.service.register(
            name=" ", email="ann@example.com", password="pw", code=code, avatar=""
        )
    user = await accounts.service.register(
        name=" Ann ", email="ann@example.com", password="pw", code=code, avatar=""
    )
    assert (user.name, user.account, user.avatar) == ("Ann", user.id, "avatar1.png")
    assert "ann@example.com" not in accounts.codes.codes  # a code is used once
    await accounts.service.send_code("ANN@example.com", "10.0.0.2")
    with pytest.raises(BadRequest, match="already registered"):
        await accounts.service.register(
            name="Ann",
            email="ANN@example.com",
            password="pw",
            code=accounts.mailer.sent["ANN@example.com"],
            avatar="",
        )


async def test_login_answers_alike_for_unknown_accounts_and_wrong_passwords(
    accounts: Accounts,
) -> None:
    user_id = await accounts.register("ann@example.com", "right")
    with pytest.raises(AccountOrPassword) as unknown:
        await accounts.service.login("bob@example.com", "right", "10.0.0.1")
    with pytest.raises(AccountOrPassword) as wrong:
        await accounts.service.login("ann@example.com", "wrong", "10.0.0.1")
    assert str(unknown.value) == str(wrong.value)
    with pytest.raises(BadRequest):
        await accounts.service.login("ann@example.com", "", "10.0.0.1")
    login = await accounts.service.login("ann@example.com", "right", "10.0.0.1")
    assert login.user.id == user_id
    assert await accounts.service.authenticate(login.token) == user_id
    with pytest.raises(UnAuthorized):  # a refresh token is not an access token
        await accounts.service.authenticate(login.refresh_token)
    # A disabled account is told so only to whoever knows its password.
    accounts.users.users[user_id] = dataclasses.replace(
        accounts.users.users[user_id], disabled=True
    )
    with pytest.raises(AccountOrPassword):
        await accounts.service.login("ann@example.com", "wrong", "10.0.0.1")
    with pytest.raises(Forbidden):
        await accounts.service.login("ann@example.com", "right", "10.0.0.1")


async def test_logout_and_a_new_password_end_every_session(accounts: Accounts) -> None:
    user_id = await accounts.register("ann@example.com", "old")
    first = await accounts.service.login("ann@example.com", "old", "10.0.0.1")
    await accounts.service.logout(user_id)
    assert accounts.sessions.ended == [user_id]
    with pytest.raises(UnAuthorized):
        await accounts.service.authenticate(first.token)
    with pytest.raises(UnAuthorized):
        await accounts.service.refresh(first.refresh_token, is_refresh=True)
    second = await accounts.service.login("ann@example.com", "old", "10.0.0.1")
    await accounts.service.send_code("ann@example.com", "10.0.0.1")
    with pytest.raises(BadRequest, match="not the user's"):
        await accounts.service.change_password(
            user_id=user_id, email="bob@example.com", password="new", code="x"
        )
    await accounts.service.change_password(
        user_id=user_id,
        email="ann@example.com",
        password="new",
        code=accounts.mailer.sent["ann@example.com"],
    )
    assert accounts.sessions.ended == [user_id, user_id]
    with pytest.raises(UnAuthorized):
        await accounts.service.authenticate(second.token)
    with pytest.raises(AccountOrPassword):
        await accounts.service.login("ann@example.com", "old", "10.0.0.1")
    await accounts.service.login("ann@example.com", "new", "10.0.0.1")


async def test_the_address_changes_only_with_a_code_sent_to_it(accounts: Accounts) -> None:
    user_id = await accounts.register("ann@example.com")
    other = await accounts.register("bob@example.com")
    with pytest.raises(BadRequest, match="only with a code"):
        await accounts.service.update(user_id, UserChanges(email="new@example.com"))
    updated = await accounts.service.update(
        user_id, UserChanges(email="ANN@example.com", phone=" +123456 ", region="here")
    )
    assert (updated.email, updated.phone, updated.region) == ("ann@example.com", "+123456", "here")
    with pytest.raises(BadRequest, match="phone"):
        await accounts.service.update(user_id, UserChanges(phone="12-34"))
    await accounts.service.send_code("bob@example.com", "10.0.0.1")
    with pytest.raises(BadRequest, match="already registered"):
        await accounts.service.change_email(
            user_id=user_id, email="bob@example.com", code=accounts.mailer.sent["bob@example.com"]
        )
    await accounts.service.send_code("new@example.com", "10.0.0.1")
    moved = await accounts.service.change_email(
        user_id=user_id, email="new@example.com", code=accounts.mailer.sent["new@example.com"]
    )
    assert moved.email == "new@example.com"
    assert accounts.users.users[other].email == "bob@example.com"


def copy(seq: int, t: int) -> Msg:
    return Msg(send_id="bob", receiver_id="ann", seq=seq, send_seq=seq, send_time=t)


async def test_a_pull_is_clamped_to_what_is_exposed_and_read_in_pages() -> None:
    inbox = FakeInbox()
    total = PULL_PAGE + 10
    for seq in range(1, total + 1):
        inbox.put("ann", copy(seq, 1000 + seq))
    inbox.put("ann", Msg(send_id="ann", receiver_id="bob", send_seq=1, send_time=5000), sent=True)
    inbox.exposure["ann"] = (total - 5, 1)  # the last five are allocated but not yet stored
    sync = SyncService(inbox=inbox, counters=inbox, max_messages=0)
    with pytest.raises(BadRequest):
        await sync.pull("ann", start=-1, end=10, send_start=0, send_end=0)
    with pytest.raises(BadRequest):
        await sync.pull("ann", start=0, end=10, send_start=0, send_end=0, limit=-1)
    pages = [p async for p in await sync.pull("ann", start=0, end=10**6, send_start=0, send_end=9)]
    assert [len(p) for p in pages] == [PULL_PAGE, total - 5 - PULL_PAGE + 1]
    pulled = [m for page in pages for m in page]
    assert [m.seq for m in pulled] == [*range(1, total - 4), 0]  # the sent copy is last
    limited = [p async for p in await sync.pull("ann", start=3, end=9, send_start=0, send_end=0)]
    assert [m.seq for page in limited for m in page] == [4, 5, 6, 7, 8, 9]
    capped = SyncService(inbox=inbox, counters=inbox, max_messages=3)
    pages = [p async for p in await capped.pull("ann", start=0, end=99, send_start=0, send_end=9)]
    assert [m.seq for page in pages for m in page] == [1, 2, 3]
    assert await sync.current("ann") == (total - 5, 1)
    with pytest.raises(BadRequest):
        await sync.delete("ann", list(range(10_001)))
    await sync.delete("ann", [1, 2])
    assert ("ann", 0, 1) not in inbox.copies and ("ann", 1, 1) in inbox.copies


async def test_notices_are_stored_messages_no_device_of_the_actor_is_pushed() -> None:
    log, clock = FakeLog(), FakeClock()
    notifier = Notifier(log=log, clock=clock)
    friend = await notifier.friend_event(
        MsgType.FRIEND_APPLY_REQ, sender="ann", receiver="bob", content=b"x"
    )
    group = await notifier.group_event(
        MsgType.GROUP_INVITE_NEW,
        actor="ann",
        group_id="g1",
        receivers=["bob", "carol"],
        members=frozenset({"ann", "bob", "carol"}),
    )
    first, second = log.submissions
    assert (first.msg.receiver_id, first.receivers, first.msg.group_id) == ("bob", ["bob"], "")
    assert (first.outbox, first.push_self, first.store) == (False, False, True)
    assert friend.ack.send_seq == 0  # no outbox copy of a friend notice
    assert (second.msg.receiver_id, second.msg.group_id) == ("g1", "g1")
    assert (second.outbox, second.push_self) == (True, False)
    assert second.members == frozenset({"ann", "bob", "carol"})
    assert group.ack.send_seq == 1 and group.receiver_seqs == [("bob", 2), ("carol", 1)]
    assert first.msg.send_time == clock.now_ms() and first.msg.local_id != second.msg.local_id
