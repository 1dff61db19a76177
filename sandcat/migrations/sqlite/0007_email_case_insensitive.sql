-- E-mail addresses are unique whatever their case: BOB@EXAMPLE.COM cannot sit beside
-- bob@example.com. A database that already holds such variants keeps the oldest account's
-- address; the later ones lose theirs (they still log in by account id) before the index
-- can be built.
UPDATE users SET email = NULL
WHERE email IS NOT NULL AND EXISTS (
    SELECT 1 FROM users AS older
    WHERE lower(older.email) = lower(users.email)
      AND (older.create_time, older.id) < (users.create_time, users.id)
);
DROP INDEX users_email;
CREATE UNIQUE INDEX users_email ON users(lower(email)) WHERE email IS NOT NULL;
