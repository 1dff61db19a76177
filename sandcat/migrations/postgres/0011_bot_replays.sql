-- `sandcat bot replay`: a dead letter queued for another delivery has the time (ms) the
-- operator queued it; the bot's webhook worker delivers it and deletes it after a 2xx, or
-- sets it back to 0 (docs/protocol.md, "Bots").
ALTER TABLE bot_dead_letters ADD COLUMN replay_time BIGINT NOT NULL DEFAULT 0;
CREATE INDEX bot_dead_letters_replays ON bot_dead_letters(bot_id, id) WHERE replay_time > 0;
