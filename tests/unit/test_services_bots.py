"""WebhookWorker over in-process fakes: the cursor moves only after a 2xx, a skip or a dead
letter; retries are signed and numbered; two workers on one store never both deliver for
a bot; the backoff stays within its full-jitter bound."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
from collections.abc import Mapping

import orjson
import pytest

from sandcat.config import BotsConfig
from sandcat.ports import BotRecord, DeadLetter
from sandcat.protocol.msg import ContentType, Msg, MsgType
from sandcat.services.bots import WebhookWorker, sign
from tests.client import until
from tests.clock import FakeClock
from tests.fakes import FakeInbox, FakeUsers, friend_service

BOT = BotRecord("bot", "helper", "hash", "s3cret", "http://hook/", False, 0, 0, 0)


class FakeBots:
    """``BotStore`` in memory."""

    def __init__(self, *bots: BotRecord) -> None:
        self.bots = {bot.id: bot for bot in bots}
        self.leases: dict[str, tuple[str, int]] = {}
        self.letters: list[DeadLetter] = []

    async def insert_bot(self, bot: BotRecord) -> None:
        self.bots[bot.id] = bot

    async def get_bot(self, bot_id: str) -> BotRecord | None:
        return self.bots.get(bot_id)

    async def bot_by_token(self, token_hash: str) -> BotRecord | None:
        return next((b for b in self.bots.values() if b.token_hash == token_hash), None)

    async def list_bots(self) -> list[BotRecord]:
        return list(self.bots.values())

    async def delete_bot(self, bot_id: str) -> bool:
        return self.bots.pop(bot_id, None) is not None

    async def set_token(self, bot_id: str, token_hash: str, now_ms: int) -> bool:
        return False

    async def set_webhook(
        self, bot_id: str, webhook_url: str, auto_accept: bool | None, now_ms: int
    ) -> bool:
        return False

    async def advance_cursor(self, bot_id: str, seq: int) -> None:
        bot = self.bots[bot_id]
        self.bots[bot_id] = dataclasses.replace(bot, cursor_seq=max(bot.cursor_seq, seq))

    async def hold_leases(self, owner: str, now_ms: int, until_ms: int) -> set[str]:
        return {bot_id for bot_id in self.bots if await self._hold(bot_id, owner, now_ms, until_ms)}

    async def _hold(self, bot_id: str, owner: str, now_ms: int, until_ms: int) -> bool:
        holder, expiry = self.leases.get(bot_id, ("", 0))
        if bot_id not in self.bots or (holder != owner and expiry > now_ms):
            return False
        self.leases[bot_id] = (owner, until_ms)
        return True

    async def release_leases(self, owner: str) -> None:
        for bot_id, (holder, _) in list(self.leases.items()):
            if holder == owner:
                self.leases[bot_id] = (owner, 0)

    async def add_dead_letter(self, letter: DeadLetter) -> None:
        self.letters.append(dataclasses.replace(letter, id=len(self.letters) + 1))

    async def dead_letters(self, bot_id: str | None, limit: int) -> list[DeadLetter]:
        return self.letters[::-1][:limit]

    def _update(self, letter_id: int, **changes: object) -> int:
        found = [i for i, letter in enumerate(self.letters) if letter.id == letter_id]
        for i in found:
            self.letters[i] = dataclasses.replace(self.letters[i], **changes)  # type: ignore[arg-type]
        return len(found)

    async def queue_replay(self, bot_id: str, letter_id: int | None, now_ms: int) -> int:
        ids = [x.id for x in self.letters if x.bot_id == bot_id and letter_id in {None, x.id}]
        return sum(self._update(i, replay_time=now_ms) for i in ids)

    async def replays(self, bot_id: str, limit: int) -> list[DeadLetter]:
        return [x for x in self.letters if x.bot_id == bot_id and x.replay_time][:limit]

    async def remove_dead_letter(self, letter_id: int) -> None:
        self.letters = [x for x in self.letters if x.id != letter_id]

    async def replay_failed(self, letter_id: int, attempts: int, last_error: str) -> None:
        [letter] = [x for x in self.letters if x.id == letter_id]
        self._update(
            letter_id, replay_time=0, attempts=letter.attempts + attempts, last_error=last_error
        )


class FakePoster:
    """Answers the next ``fail`` POSTs with a 503; records (owner, headers, body); a POST to
    ``stall_url`` waits until ``resume`` is set."""

    def __init__(self, owner: str = "") -> None:
        self.fail = 0
        self.posts: list[tuple[str, Mapping[str, str], bytes]] = []
        self.owner = owner
        self.stall_url = ""
        self.resume = asyncio.Event()

    async def post(
        self, url: str, body: bytes, headers: Mapping[str, str], timeout: float
    ) -> str | None:
        self.posts.append((self.owner, headers, body))
        if url == self.stall_url:
            await self.resume.wait()
        if self.fail:
            self.fail -= 1
            return "HTTP 503"
        return None


def chat(seq: int, text: str = "hi", kind: int = MsgType.SINGLE_MSG) -> Msg:
    return Msg(
        send_id="alice",
        receiver_id="bot",
        server_id=f"s{seq}",
        seq=seq,
        send_time=seq,
        msg_type=kind,
        content_type=ContentType.TEXT,
        content=text.encode(),
    )


def worker(
    bots: FakeBots, inbox: FakeInbox, poster: FakePoster, owner: str = "p1", **config: float
) -> WebhookWorker:
    clock, users = FakeClock(), FakeUsers()
    friends = friend_service(users, clock)
    settings = {"webhook_attempts": 3, "webhook_backoff_seconds": 0.0, "poll_seconds": 0.01}
    return WebhookWorker(
        bots=bots,
        inbox=inbox,
        counters=inbox,
        friends=friends,
        clock=clock,
        config=BotsConfig(**{**settings, **config}),  # type: ignore[arg-type]
        owner=owner,
        poster=poster,
    )


def inbox_of(*msgs: Msg) -> FakeInbox:
    inbox = FakeInbox()
    for msg in msgs:
        inbox.put("bot", msg)
    inbox.exposure["bot"] = (max(m.seq for m in msgs), 0)
    return inbox


async def test_retries_then_delivers_signed_and_moves_the_cursor() -> None:
    bots, poster = FakeBots(BOT), FakePoster()
    poster.fail = 2
    w = worker(bots, inbox_of(chat(1), chat(2, kind=MsgType.FRIEND_DELETE), chat(3)), poster)
    await w.supervise()
    await until(lambda: bots.bots["bot"].cursor_seq == 3, what="the cursor at 3")
    await w.stop()
    assert [orjson.loads(body)["server_id"] for _, _, body in poster.posts] == ["s1"] * 3 + ["s3"]
    assert [h["X-Sandcat-Attempt"] for _, h, _ in poster.posts] == ["1", "2", "3", "1"]
    _, headers, body = poster.posts[0]
    mac = hmac.new(b"s3cret", headers["X-Sandcat-Timestamp"].encode() + b"." + body, "sha256")
    assert headers["X-Sandcat-Signature"] == "sha256=" + mac.hexdigest()
    assert orjson.loads(body)["text"] == "hi" and bots.letters == []
    assert bots.leases["bot"] == ("p1", 0)  # released at stop


async def test_dead_letter_after_the_last_attempt_then_the_next() -> None:
    bots, poster = FakeBots(BOT), FakePoster()
    poster.fail = 3
    w = worker(bots, inbox_of(chat(1), chat(2)), poster)
    await w.supervise()
    await until(lambda: bots.bots["bot"].cursor_seq == 2, what="the cursor at 2")
    await w.stop()
    [letter] = bots.letters
    assert (letter.seq, letter.server_id, letter.attempts, letter.last_error) == (
        1,
        "s1",
        3,
        "HTTP 503",
    )
    assert orjson.loads(letter.body)["server_id"] == "s1"
    assert [orjson.loads(body)["server_id"] for _, _, body in poster.posts][-1] == "s2"


async def test_no_webhook_skips_chat_and_the_cursor_still_moves() -> None:
    bots, poster = FakeBots(dataclasses.replace(BOT, webhook_url="")), FakePoster()
    w = worker(bots, inbox_of(chat(1), chat(2)), poster)
    await w.supervise()
    await until(lambda: bots.bots["bot"].cursor_seq == 2, what="the cursor at 2")
    await w.stop()
    assert poster.posts == []


async def test_two_workers_one_lease() -> None:
    bots = FakeBots(BOT)
    inbox = inbox_of(*(chat(seq) for seq in range(1, 6)))
    first, second = FakePoster("p1"), FakePoster("p2")
    w1, w2 = worker(bots, inbox, first, "p1"), worker(bots, inbox, second, "p2")
    assert (await w1.supervise(), await w2.supervise()) == (1, 0)
    await until(lambda: bots.bots["bot"].cursor_seq == 5, what="the cursor at 5")
    assert (w1.held, w2.held) == (["bot"], [])
    await w1.stop()
    assert await w2.supervise() == 1  # released: the other takes over at once
    await w2.stop()
    assert len(first.posts) == 5 and second.posts == []


async def test_replayed_dead_letter_removed_after_a_2xx_else_kept() -> None:
    bots, poster = FakeBots(BOT), FakePoster()
    poster.fail = 3
    w = worker(bots, inbox_of(chat(1)), poster)
    await w.supervise()
    await until(lambda: bots.letters != [], what="the dead letter")
    [letter] = bots.letters
    # A replay that fails again: kept, no longer queued, the attempts added up.
    poster.fail = 3
    assert await bots.queue_replay("bot", letter.id, 5) == 1
    await until(lambda: len(poster.posts) == 6, what="three more attempts")
    await until(lambda: bots.letters[0].replay_time == 0, what="the replay given up")
    assert (bots.letters[0].attempts, bots.letters[0].last_error) == (6, "HTTP 503")
    # Queued again, delivered: numbered on from the attempts so far, signed anew, removed.
    await bots.queue_replay("bot", None, 6)
    await until(lambda: bots.letters == [], what="the dead letter removed")
    await w.stop()
    assert [h["X-Sandcat-Attempt"] for _, h, _ in poster.posts] == [str(n) for n in range(1, 8)]
    _, headers, body = poster.posts[-1]
    assert body == letter.body.encode() and headers["X-Sandcat-Delivery"] == "s1"
    assert headers["X-Sandcat-Signature"] == sign("s3cret", headers["X-Sandcat-Timestamp"], body)


async def test_a_stalled_webhook_does_not_hold_up_another_bot() -> None:
    """One task per bot: while one bot's POST hangs, the other bot's messages go out."""
    slow = BOT
    fast = dataclasses.replace(BOT, id="fast", webhook_url="http://fast/")
    bots, poster = FakeBots(slow, fast), FakePoster()
    poster.stall_url = slow.webhook_url
    inbox = inbox_of(chat(1), chat(2))
    for seq in (1, 2):
        inbox.put("fast", dataclasses.replace(chat(seq), receiver_id="fast", server_id=f"f{seq}"))
    inbox.exposure["fast"] = (2, 0)
    w = worker(bots, inbox, poster)
    await w.supervise()
    await until(lambda: bots.bots["fast"].cursor_seq == 2, what="the fast bot's messages")
    assert bots.bots["bot"].cursor_seq == 0  # still stalled on its first message
    poster.resume.set()
    await until(lambda: bots.bots["bot"].cursor_seq == 2, what="the slow bot's messages")
    await w.stop()


@pytest.mark.parametrize("attempt", [1, 2, 5, 12])
def test_backoff_within_the_full_jitter_bound(attempt: int) -> None:
    w = worker(FakeBots(), FakeInbox(), FakePoster(), webhook_backoff_seconds=0.5)
    bound = min(60.0, 0.5 * 2 ** (attempt - 1))
    waits = [w._backoff(attempt) for _ in range(200)]
    assert all(0 <= wait <= bound for wait in waits)
    assert max(waits) > bound / 2  # spread over the range, not a constant


def test_signature_is_hmac_sha256_of_timestamp_and_body() -> None:
    expected = hmac.new(b"k", b"17.{}", hashlib.sha256).hexdigest()
    assert sign("k", "17", b"{}") == "sha256=" + expected
