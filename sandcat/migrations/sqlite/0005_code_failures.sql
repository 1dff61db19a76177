-- Wrong guesses at an e-mail code: the `limits.code_attempts`-th voids the code, so a
-- 6-digit code cannot be brute-forced within its 5 minutes.
ALTER TABLE codes ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
