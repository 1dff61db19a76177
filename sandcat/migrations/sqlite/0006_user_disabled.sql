-- An operator can disable an account (`sandcat users disable`): a disabled user cannot log
-- in, and the command also revokes every token the user holds, so no socket opens either.
ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
