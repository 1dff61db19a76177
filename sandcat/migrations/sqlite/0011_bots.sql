-- Bot accounts (docs/protocol.md, "Bots"): a bot is a user (its row in `users`) with a row
-- here. Only a SHA-256 of the API token is kept; the webhook secret signs deliveries, so it
-- is kept as it is. `cursor_seq` is the highest receive seq of the bot's inbox that the
-- webhook worker has finished with (delivered with a 2xx, skipped, or dead-lettered); the
-- lease names the one process whose worker delivers for the bot.
CREATE TABLE bots (
    id            TEXT PRIMARY KEY REFERENCES users(id),
    name          TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    secret        TEXT NOT NULL,
    webhook_url   TEXT NOT NULL DEFAULT '',
    auto_accept   INTEGER NOT NULL DEFAULT 0,
    cursor_seq    INTEGER NOT NULL DEFAULT 0,
    lease_owner   TEXT NOT NULL DEFAULT '',
    lease_until   INTEGER NOT NULL DEFAULT 0,
    create_time   INTEGER NOT NULL,
    update_time   INTEGER NOT NULL
);

-- Deliveries given up after the last attempt (`sandcat bot dead-letters`).
CREATE TABLE bot_dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    bot_id      TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    server_id   TEXT NOT NULL,
    body        TEXT NOT NULL,
    attempts    INTEGER NOT NULL,
    last_error  TEXT NOT NULL,
    create_time INTEGER NOT NULL
);
CREATE INDEX bot_dead_letters_bot ON bot_dead_letters(bot_id, id);
