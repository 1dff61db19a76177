-- Revocation by generation instead of by time: every token carries the user's token_gen at
-- issue; logout and password change raise it, and a token whose generation is lower is
-- refused. No clock is compared, so a login and a logout in the same millisecond (or on
-- processes whose clocks disagree) cannot leave a token valid.
ALTER TABLE users ADD COLUMN token_gen BIGINT NOT NULL DEFAULT 0;
-- A user who had logged out keeps every earlier token refused: tokens from before this
-- migration carry no generation (read as 0), so such a user starts at generation 1.
UPDATE users SET token_gen = 1 WHERE tokens_valid_after > 0;
ALTER TABLE users DROP COLUMN tokens_valid_after;
