"""SQL shared by the SQLite and PostgreSQL bot stores (the same schema: 0011/0008_bots.sql,
0014/0011_bot_replays.sql).

Placeholders are written ``$N``; the SQLite store turns them into ``?N``.
"""

from __future__ import annotations

from collections.abc import Sequence

from sandcat.ports import BotRecord, DeadLetter

BOT_COLUMNS = (
    "id, name, token_hash, secret, webhook_url, auto_accept, cursor_seq, create_time, update_time"
)
INSERT_BOT = f"INSERT INTO bots ({BOT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
SELECT_BOT = f"SELECT {BOT_COLUMNS} FROM bots WHERE id = $1"
SELECT_BY_TOKEN = f"SELECT {BOT_COLUMNS} FROM bots WHERE token_hash = $1"
LIST_BOTS = f"SELECT {BOT_COLUMNS} FROM bots ORDER BY create_time, id"
DELETE_BOT = "DELETE FROM bots WHERE id = $1"
SET_TOKEN = "UPDATE bots SET token_hash = $2, update_time = $3 WHERE id = $1"
SET_WEBHOOK = (
    "UPDATE bots SET webhook_url = $2, auto_accept = COALESCE($3, auto_accept), "
    "update_time = $4 WHERE id = $1"
)
ADVANCE_CURSOR = "UPDATE bots SET cursor_seq = $2 WHERE id = $1 AND cursor_seq < $2"
HOLD_LEASES = (
    "UPDATE bots SET lease_owner = $1, lease_until = $3 "
    "WHERE lease_owner = $1 OR lease_until <= $2 RETURNING id"
)
RELEASE_LEASES = "UPDATE bots SET lease_until = 0 WHERE lease_owner = $1"
LETTER_COLUMNS = "bot_id, seq, server_id, body, attempts, last_error, create_time"
INSERT_LETTER = (
    f"INSERT INTO bot_dead_letters ({LETTER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
)
#: What a dead letter reads back: the inserted columns, then its id and replay time.
READ_COLUMNS = f"{LETTER_COLUMNS}, id, replay_time"
LETTERS = f"SELECT {READ_COLUMNS} FROM bot_dead_letters ORDER BY id DESC LIMIT $1"
BOT_LETTERS = (
    f"SELECT {READ_COLUMNS} FROM bot_dead_letters WHERE bot_id = $2 ORDER BY id DESC LIMIT $1"
)
QUEUE_REPLAY = "UPDATE bot_dead_letters SET replay_time = $2 WHERE bot_id = $1 AND id = $3"
QUEUE_ALL_REPLAYS = "UPDATE bot_dead_letters SET replay_time = $2 WHERE bot_id = $1"
REPLAYS = (
    f"SELECT {READ_COLUMNS} FROM bot_dead_letters WHERE bot_id = $1 AND replay_time > 0 "
    "ORDER BY id LIMIT $2"
)
REMOVE_LETTER = "DELETE FROM bot_dead_letters WHERE id = $1"
REPLAY_FAILED = (
    "UPDATE bot_dead_letters SET replay_time = 0, attempts = attempts + $2, last_error = $3 "
    "WHERE id = $1"
)


def bot_values(bot: BotRecord) -> tuple[object, ...]:
    return (
        bot.id,
        bot.name,
        bot.token_hash,
        bot.secret,
        bot.webhook_url,
        bot.auto_accept,
        bot.cursor_seq,
        bot.create_time,
        bot.update_time,
    )


def bot_from_row(row: Sequence[object]) -> BotRecord:
    id_, name, token_hash, secret, url, auto, cursor, created, updated = row
    return BotRecord(
        id=str(id_),
        name=str(name),
        token_hash=str(token_hash),
        secret=str(secret),
        webhook_url=str(url),
        auto_accept=bool(auto),
        cursor_seq=int(cursor),  # type: ignore[call-overload]
        create_time=int(created),  # type: ignore[call-overload]
        update_time=int(updated),  # type: ignore[call-overload]
    )


def letter_values(letter: DeadLetter) -> tuple[object, ...]:
    return (
        letter.bot_id,
        letter.seq,
        letter.server_id,
        letter.body,
        letter.attempts,
        letter.last_error,
        letter.create_time,
    )


def letter_from_row(row: Sequence[object]) -> DeadLetter:
    bot_id, seq, server_id, body, attempts, error, created, id_, replay = row
    return DeadLetter(
        bot_id=str(bot_id),
        seq=int(seq),  # type: ignore[call-overload]
        server_id=str(server_id),
        body=str(body),
        attempts=int(attempts),  # type: ignore[call-overload]
        last_error=str(error),
        create_time=int(created),  # type: ignore[call-overload]
        id=int(id_),  # type: ignore[call-overload]
        replay_time=int(replay),  # type: ignore[call-overload]
    )
