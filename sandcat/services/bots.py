"""Bot accounts, their HTTP API and their outgoing webhooks (docs/protocol.md, "Bots").

A bot is a user account with a row in the bot store: people befriend it and add it to
groups like anyone. ``BotAccounts`` is what the operator's ``sandcat bot ...`` commands
run; ``BotService`` answers ``POST /bot/message`` through the same ``MessageService`` path
as a client's message (same checks, seqs, storage, pushes, idempotency by ``local_id``).

``WebhookWorker`` delivers what reaches the bot's inbox: it reads the inbox like a syncing
client, from a durable per-bot cursor it raises only once a message is delivered (a 2xx),
skipped or dead-lettered, so nothing is lost across restarts (at-least-once; receivers
de-duplicate on ``server_id``). The message path itself is unchanged. One worker per bot
across processes: each process's worker holds a lease on the bot in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import random
import re
import secrets
from typing import Any

import orjson

from sandcat.config import BotsConfig, LimitsConfig
from sandcat.domain import UserRecord
from sandcat.errors import BadRequest, NotFound, SandcatError, TooManyRequests, UnAuthorized
from sandcat.ids import nanoid
from sandcat.log import get_logger
from sandcat.ports import (
    BotRecord,
    BotStore,
    BucketRule,
    Clock,
    Counters,
    DeadLetter,
    InboxStore,
    RateLimiter,
    UserAdminStore,
    UserStore,
    WebhookPoster,
)
from sandcat.protocol.msg import ContentType, Msg, MsgType
from sandcat.protocol.payloads import FriendshipWithUser
from sandcat.services.friends import FriendService
from sandcat.services.messages import MessageService, ack_for

log = get_logger(__name__)

SIGNATURE_HEADER = "X-Sandcat-Signature"
TIMESTAMP_HEADER = "X-Sandcat-Timestamp"
DELIVERY_HEADER = "X-Sandcat-Delivery"
ATTEMPT_HEADER = "X-Sandcat-Attempt"
#: A bot's name is also its account (what users search for to befriend it).
BOT_NAME = re.compile(r"[A-Za-z0-9_.-]{2,32}")
#: Inbox copies read per step of a worker.
INBOX_PAGE = 100
#: Delivered to the webhook; every other type only moves the cursor.
CHAT_TYPES = frozenset({MsgType.SINGLE_MSG, MsgType.GROUP_MSG})
#: What ``POST /bot/message`` may carry (no error acks, no call logs).
BOT_CONTENT_TYPES = frozenset(
    {
        ContentType.DEFAULT,
        ContentType.TEXT,
        ContentType.IMAGE,
        ContentType.VIDEO,
        ContentType.AUDIO,
        ContentType.FILE,
        ContentType.EMOJI,
    }
)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``X-Sandcat-Signature``: ``sha256=`` and the hex HMAC-SHA256 of ``timestamp.body``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def bot_row(bot: BotRecord) -> dict[str, Any]:
    return {
        "id": bot.id,
        "name": bot.name,
        "webhook_url": bot.webhook_url,
        "auto_accept": bot.auto_accept,
        "cursor_seq": bot.cursor_seq,
        "create_time": bot.create_time,
    }


def _webhook(url: str) -> str:
    if url and not url.startswith(("http://", "https://")):
        raise BadRequest(f"the webhook {url!r} is not an http:// or https:// URL")
    return url


class BotAccounts:
    """The operator's commands: create, list, rotate-token, set-webhook, delete, dead-letters."""

    def __init__(self, *, bots: BotStore, users: UserAdminStore, clock: Clock) -> None:
        self._bots = bots
        self._users = users
        self._clock = clock

    async def _bot(self, bot_id: str) -> BotRecord:
        bot = await self._bots.get_bot(bot_id)
        if bot is None:
            raise NotFound(f"no bot {bot_id!r}")
        return bot

    async def create(self, name: str, webhook_url: str, auto_accept: bool) -> dict[str, Any]:
        """A new bot: its row, with the API token and the webhook secret shown this once."""
        if not BOT_NAME.fullmatch(name):
            raise BadRequest("a bot name is 2-32 letters, digits, '_', '.' or '-'")
        if await self._users.find_login(name) is not None:
            raise BadRequest(f"the account {name!r} is taken")
        now = self._clock.now_ms()
        token, secret = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        bot = BotRecord(
            id=nanoid(),
            name=name,
            token_hash=hash_token(token),
            secret=secret,
            webhook_url=_webhook(webhook_url),
            auto_accept=auto_accept,
            cursor_seq=0,
            create_time=now,
            update_time=now,
        )
        # An empty password hash verifies nothing: a bot cannot log in as a user.
        await self._users.insert_user(
            UserRecord(
                id=bot.id,
                name=name,
                account=name,
                password="",
                salt="",
                avatar="avatar1.png",
                signature="bot",
                create_time=now,
                update_time=now,
            )
        )
        await self._bots.insert_bot(bot)
        return {**bot_row(bot), "token": token, "secret": secret}

    async def all(self) -> list[dict[str, Any]]:
        return [bot_row(bot) for bot in await self._bots.list_bots()]

    async def rotate_token(self, bot_id: str) -> dict[str, Any]:
        """A new API token; the old one stops working at once."""
        bot = await self._bot(bot_id)
        token = secrets.token_urlsafe(32)
        await self._bots.set_token(bot.id, hash_token(token), self._clock.now_ms())
        return {**bot_row(bot), "token": token}

    async def set_webhook(
        self, bot_id: str, webhook_url: str, auto_accept: bool | None
    ) -> dict[str, Any]:
        bot = await self._bot(bot_id)
        await self._bots.set_webhook(
            bot.id, _webhook(webhook_url), auto_accept, self._clock.now_ms()
        )
        return bot_row(await self._bot(bot.id))

    async def delete(self, bot_id: str) -> dict[str, Any]:
        """Remove the bot and mark its user deleted (its friends and groups see it gone)."""
        bot = await self._bot(bot_id)
        await self._bots.delete_bot(bot.id)
        await self._users.delete_user(bot.id, self._clock.now_ms())
        await self._users.revoke_tokens(bot.id)
        return bot_row(bot)

    async def dead_letters(self, bot_id: str | None, limit: int) -> list[dict[str, Any]]:
        return [
            {
                "id": letter.id,
                "bot_id": letter.bot_id,
                "seq": letter.seq,
                "server_id": letter.server_id,
                "attempts": letter.attempts,
                "last_error": letter.last_error,
                "create_time": letter.create_time,
                "replay_time": letter.replay_time,
                "body": letter.body,
            }
            for letter in await self._bots.dead_letters(bot_id, limit)
        ]

    async def replay(self, bot_id: str, letter_ids: list[int] | None) -> dict[str, Any]:
        """Queue dead letters of the bot (``None``: all of them) for another delivery by its
        webhook worker, which removes each one only after a 2xx. Unknown ids are refused
        before anything is queued."""
        bot = await self._bot(bot_id)
        now = self._clock.now_ms()
        if letter_ids is None:
            queued = await self._bots.queue_replay(bot.id, None, now)
        else:
            if not letter_ids:
                raise BadRequest("name the dead letters to replay, or all of them")
            # Every id of the bot, however many letters it has.
            known = {letter.id for letter in await self._bots.dead_letters(bot.id, 2**31)}
            unknown = sorted(set(letter_ids) - known)
            if unknown:
                raise NotFound(f"no dead letters {unknown} of the bot {bot.id!r}")
            queued = 0
            for letter_id in sorted(set(letter_ids)):
                queued += await self._bots.queue_replay(bot.id, letter_id, now)
        return {**bot_row(bot), "queued": queued}


class BotService:
    """What bots and users ask over HTTP: a bot's identity, its messages, the bot directory."""

    def __init__(
        self,
        *,
        bots: BotStore,
        users: UserStore,
        messages: MessageService,
        clock: Clock,
        limits: LimitsConfig,
        limiter: RateLimiter,
    ) -> None:
        self._bots = bots
        self._users = users
        self._messages = messages
        self._clock = clock
        self._limiter = limiter
        # Each bot's send budget, shared by every API process (a client's is per
        # connection). While Redis is down it is counted per process ("local"): the message
        # path answers for itself whether it can store anything.
        self._send_rule = BucketRule(
            "bot_send", limits.messages_per_second, limits.messages_burst, "local"
        )

    async def authenticate(self, token: str) -> BotRecord:
        bot = await self._bots.bot_by_token(hash_token(token))
        user = None if bot is None else await self._users.get_user(bot.id)
        if bot is None or user is None or user.disabled:
            raise UnAuthorized("not a bot token")
        return bot

    async def send(
        self,
        bot: BotRecord,
        *,
        receiver_id: str,
        group_id: str,
        content: bytes,
        content_type: int,
        local_id: str,
    ) -> dict[str, Any]:
        """Send as the bot, through the client message path; the ack's JSON. A repeated
        ``local_id`` to the same chat answers the first ack (nothing is stored twice)."""
        if bool(receiver_id) == bool(group_id):
            raise BadRequest("give exactly one of receiver_id and group_id")
        if not await self._limiter.take(self._send_rule, bot.id):
            raise TooManyRequests("the bot sends faster than limits.messages_per_second", 1)
        if content_type not in BOT_CONTENT_TYPES:
            raise BadRequest(f"content_type {content_type} cannot be sent by a bot")
        msg = Msg(
            send_id=bot.id,
            receiver_id=receiver_id or group_id,
            group_id=group_id,
            local_id=local_id or nanoid(),
            msg_type=MsgType.GROUP_MSG if group_id else MsgType.SINGLE_MSG,
            content_type=content_type,
            content=content,
            create_time=self._clock.now_ms(),
            nickname=bot.name,
        )
        accepted = await self._messages.accept(bot.id, msg)
        ack = accepted if isinstance(accepted, Msg) else ack_for(msg, await accepted)
        return {
            "local_id": msg.local_id,
            "server_id": ack.server_id,
            "send_time": ack.send_time,
            "send_seq": ack.send_seq,
        }

    async def directory(self) -> list[dict[str, str]]:
        """Every bot's id and name (the web page marks them)."""
        return [{"id": bot.id, "name": bot.name} for bot in await self._bots.list_bots()]


class WebhookWorker:
    """Delivers each bot's inbox to its webhook, one task per bot whose lease it holds."""

    def __init__(
        self,
        *,
        bots: BotStore,
        inbox: InboxStore,
        counters: Counters,
        friends: FriendService,
        clock: Clock,
        config: BotsConfig,
        owner: str,
        poster: WebhookPoster,
    ) -> None:
        self._bots = bots
        self._inbox = inbox
        self._counters = counters
        self._friends = friends
        self._clock = clock
        self._config = config
        self._owner = owner
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._poster = poster

    @property
    def held(self) -> list[str]:
        """The bots this worker delivers for now."""
        return sorted(self._tasks)

    async def supervise(self) -> int:
        """One round (every third of the lease): take or renew every lease free or ours in
        one statement, start a task for each new bot, stop those lost or deleted; returns
        how many run."""
        now = self._clock.now_ms()
        until = now + int(self._config.lease_seconds * 1000)
        held = await self._bots.hold_leases(self._owner, now, until)
        for bot_id in held - set(self._tasks):
            self._tasks[bot_id] = asyncio.create_task(self._run(bot_id), name=f"bot-{bot_id}")
        for bot_id in set(self._tasks) - held:
            await self._drop(bot_id)
        return len(self._tasks)

    async def _drop(self, bot_id: str) -> None:
        task = self._tasks.pop(bot_id, None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def stop(self) -> None:
        """Stop every task and release the leases (another process takes over at once)."""
        for bot_id in list(self._tasks):
            await self._drop(bot_id)
        with contextlib.suppress(SandcatError):
            await self._bots.release_leases(self._owner)

    async def _run(self, bot_id: str) -> None:
        while True:
            try:
                busy = await self._step(bot_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("bot_worker_failed", bot=bot_id)
                busy = False
            if not busy:
                await asyncio.sleep(self._config.poll_seconds)

    async def _step(self, bot_id: str) -> bool:
        """Deliver the dead letters queued for replay, else handle one page of the bot's
        inbox above its cursor; False when there was nothing to do."""
        bot = await self._bots.get_bot(bot_id)
        if bot is None:
            return False
        replays = await self._bots.replays(bot_id, INBOX_PAGE) if bot.webhook_url else []
        for letter in replays:
            await self._replay(bot, letter)
        if replays:
            return True
        exposed, _ = await self._counters.exposed(bot_id)
        if exposed <= bot.cursor_seq:
            return False
        page = await self._inbox.pull(bot_id, bot.cursor_seq, exposed, 0, 0, INBOX_PAGE)
        for msg in page:
            await self._handle(bot, msg)
            await self._bots.advance_cursor(bot_id, msg.seq)
        if len(page) < INBOX_PAGE:
            # Seqs without a copy (deleted, or gaps) up to what is exposed are done too.
            await self._bots.advance_cursor(bot_id, exposed)
        return True

    async def _handle(self, bot: BotRecord, msg: Msg) -> None:
        if msg.msg_type in CHAT_TYPES and bot.webhook_url:
            await self._deliver(bot, msg)
        elif msg.msg_type == MsgType.FRIEND_APPLY_REQ and bot.auto_accept:
            try:
                fs_id = FriendshipWithUser.decode(msg.content).fs_id
                await self._friends.agree(bot.id, fs_id, None, None)
            except SandcatError as exc:  # answered or renewed meanwhile, or undecodable
                log.info("bot_auto_accept_skipped", bot=bot.id, seq=msg.seq, reason=str(exc))

    def _backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(max, base * 2^(attempt-1))]."""
        cfg = self._config
        cap = min(cfg.webhook_backoff_max_seconds, cfg.webhook_backoff_seconds * 2 ** (attempt - 1))
        return random.uniform(0, cap)

    async def _post(self, bot: BotRecord, server_id: str, body: bytes, first: int) -> str | None:
        """Up to ``bots.webhook_attempts`` signed attempts, numbered from ``first``; None
        after a 2xx, else the last error."""
        attempts = self._config.webhook_attempts
        error = ""
        for n in range(1, attempts + 1):
            attempt = first + n - 1
            timestamp = str(int(self._clock.now()))
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(bot.secret, timestamp, body),
                TIMESTAMP_HEADER: timestamp,
                DELIVERY_HEADER: server_id,
                ATTEMPT_HEADER: str(attempt),
            }
            failure = await self._poster.post(
                bot.webhook_url, body, headers, self._config.webhook_timeout_seconds
            )
            if failure is None:
                return None
            error = failure
            log.info("bot_webhook_failed", bot=bot.id, server_id=server_id, attempt=attempt)
            if n < attempts:
                await asyncio.sleep(self._backoff(n))
        return error

    async def _replay(self, bot: BotRecord, letter: DeadLetter) -> None:
        """Deliver a dead letter again (its stored body, signed anew); removed only after a
        2xx, else back in the dead letters with the attempts added."""
        body = letter.body.encode()
        error = await self._post(bot, letter.server_id, body, letter.attempts + 1)
        if error is None:
            await self._bots.remove_dead_letter(letter.id)
            log.info("bot_webhook_replayed", bot=bot.id, server_id=letter.server_id)
            return
        await self._bots.replay_failed(letter.id, self._config.webhook_attempts, error)
        log.warning("bot_webhook_replay_failed", bot=bot.id, server_id=letter.server_id)

    async def _deliver(self, bot: BotRecord, msg: Msg) -> None:
        body = orjson.dumps(webhook_body(bot.id, msg))
        attempts = self._config.webhook_attempts
        error = await self._post(bot, msg.server_id, body, 1)
        if error is None:
            return
        await self._bots.add_dead_letter(
            DeadLetter(
                bot_id=bot.id,
                seq=msg.seq,
                server_id=msg.server_id,
                body=body.decode(),
                attempts=attempts,
                last_error=error,
                create_time=self._clock.now_ms(),
            )
        )
        log.warning("bot_webhook_dead_letter", bot=bot.id, server_id=msg.server_id, error=error)


def webhook_body(bot_id: str, msg: Msg) -> dict[str, Any]:
    """What a webhook receives for one message (docs/protocol.md, "Bots")."""
    textual = msg.content_type in {ContentType.DEFAULT, ContentType.TEXT}
    text = msg.content.decode(errors="replace") if textual else None
    return {
        "bot_id": bot_id,
        "server_id": msg.server_id,
        "seq": msg.seq,
        "chat": "group" if msg.group_id else "single",
        "sender_id": msg.send_id,
        "group_id": msg.group_id,
        "text": text,
        "message": msg.to_json(),
    }
