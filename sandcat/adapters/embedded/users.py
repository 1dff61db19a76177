"""Users and e-mail codes in SQLite."""

from __future__ import annotations

import sqlite3

from sandcat.adapters.embedded.devices import SqliteDeviceStore
from sandcat.adapters.embedded.sqlite import SqliteDatabase
from sandcat.adapters.user_sql import EMAIL_TAKEN, PHONE_TAKEN, USER_COLUMNS, user_values
from sandcat.domain import UserChanges, UserRecord
from sandcat.errors import BadRequest
from sandcat.ids import SYSTEM_CLOCK
from sandcat.ports import Clock


def _row_to_user(row: tuple[object, ...]) -> UserRecord:
    values = list(row)
    values[-2] = bool(values[-2])  # is_delete
    values[-1] = bool(values[-1])  # disabled
    return UserRecord(*values)  # type: ignore[arg-type]


class SqliteUserStore:
    """The process that owns the SQLite file is its only writer, so it caches token
    generations: a raise updates the cache in the same step that commits it. A session
    check reads the device owners the process's device store caches, so ``devices`` must be
    the store its devices are removed through (``sandcat.embedded`` passes it)."""

    def __init__(self, db: SqliteDatabase, devices: SqliteDeviceStore | None = None) -> None:
        self._db = db
        self._generations: dict[str, int] = {}
        self._devices = devices or SqliteDeviceStore(db)

    async def insert_user(self, user: UserRecord) -> None:
        def run(conn: sqlite3.Connection) -> None:
            if (
                user.email
                and conn.execute(
                    "SELECT 1 FROM users WHERE (email IS NOT NULL AND lower(email) = lower(?))",
                    (user.email,),
                ).fetchone()
            ):
                raise BadRequest(EMAIL_TAKEN)
            conn.execute(
                f"INSERT INTO users ({USER_COLUMNS}) VALUES "
                "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                user_values(user),
            )
            conn.execute("INSERT OR IGNORE INTO sequence (user_id) VALUES (?)", (user.id,))

        await self._db.write(run)

    async def get_user(self, user_id: str) -> UserRecord | None:
        def run(conn: sqlite3.Connection) -> UserRecord | None:
            row = conn.execute(
                f"SELECT {USER_COLUMNS} FROM users WHERE id = ? AND is_delete = 0", (user_id,)
            ).fetchone()
            return _row_to_user(row) if row else None

        return await self._db.read(run)

    async def find_login(self, login: str) -> UserRecord | None:
        def run(conn: sqlite3.Connection) -> UserRecord | None:
            row = conn.execute(
                f"SELECT {USER_COLUMNS} FROM users WHERE is_delete = 0 AND "
                "(account = ?1 OR (email IS NOT NULL AND lower(email) = lower(?1)) OR phone = ?1) "
                "ORDER BY account = ?1 DESC LIMIT 1",
                (login,),
            ).fetchone()
            return _row_to_user(row) if row else None

        return await self._db.read(run)

    async def email_taken(self, email: str) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "SELECT 1 FROM users WHERE (email IS NOT NULL AND lower(email) = lower(?))",
                    (email,),
                ).fetchone()
                is not None
            )

        return await self._db.read(run)

    async def update_user(
        self, user_id: str, changes: UserChanges, now_ms: int
    ) -> UserRecord | None:
        def run(conn: sqlite3.Connection) -> UserRecord | None:
            if (
                changes.email
                and conn.execute(
                    "SELECT 1 FROM users WHERE (email IS NOT NULL AND lower(email) = lower(?)) "
                    "AND id <> ?",
                    (changes.email, user_id),
                ).fetchone()
            ):
                raise BadRequest(EMAIL_TAKEN)
            # Login matches account, e-mail and phone (find_login): a phone must name no
            # one else. The write lock serialises this check with the UPDATE below.
            if (
                changes.phone
                and conn.execute(
                    "SELECT 1 FROM users WHERE id <> ?2 AND (id = ?1 OR account = ?1 "
                    "OR (email IS NOT NULL AND lower(email) = lower(?1)) "
                    "OR (phone = ?1 AND is_delete = 0))",
                    (changes.phone, user_id),
                ).fetchone()
            ):
                raise BadRequest(PHONE_TAKEN)
            conn.execute(
                "UPDATE users SET "
                "name = COALESCE(NULLIF(?, ''), name), avatar = COALESCE(NULLIF(?, ''), avatar), "
                "gender = COALESCE(NULLIF(?, ''), gender), phone = COALESCE(NULLIF(?, ''), phone), "
                "email = COALESCE(NULLIF(?, ''), email), "
                "address = COALESCE(NULLIF(?, ''), address), "
                "region = COALESCE(NULLIF(?, ''), region), "
                "birthday = COALESCE(NULLIF(?, 0), birthday), "
                "signature = COALESCE(NULLIF(?, ''), signature), update_time = ? "
                "WHERE id = ? AND is_delete = 0",
                (
                    changes.name,
                    changes.avatar,
                    changes.gender,
                    changes.phone,
                    changes.email,
                    changes.address,
                    changes.region,
                    changes.birthday,
                    changes.signature,
                    now_ms,
                    user_id,
                ),
            )
            row = conn.execute(
                f"SELECT {USER_COLUMNS} FROM users WHERE id = ? AND is_delete = 0", (user_id,)
            ).fetchone()
            return _row_to_user(row) if row else None

        return await self._db.write(run)

    async def set_password(self, user_id: str, password_hash: str, salt: str, now_ms: int) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "UPDATE users SET password = ?, salt = ?, update_time = ? WHERE id = ?",
                (password_hash, salt, now_ms, user_id),
            )

        await self._db.write(run)

    async def search_user(self, pattern: str, exclude_id: str) -> tuple[UserRecord, str] | None:
        def run(conn: sqlite3.Connection) -> tuple[UserRecord, str] | None:
            for column in ("email", "phone", "account"):
                row = conn.execute(
                    f"SELECT {USER_COLUMNS} FROM users "
                    f"WHERE {column} = ? AND id <> ? AND is_delete = 0 LIMIT 1",
                    (pattern, exclude_id),
                ).fetchone()
                if row:
                    return _row_to_user(row), column
            return None

        return await self._db.read(run)

    async def list_users(self, limit: int, offset: int) -> list[UserRecord]:
        def run(conn: sqlite3.Connection) -> list[UserRecord]:
            rows = conn.execute(
                f"SELECT {USER_COLUMNS} FROM users WHERE is_delete = 0 "
                "ORDER BY create_time, id LIMIT ? OFFSET ?",
                (limit, offset),
            ).fetchall()
            return [_row_to_user(row) for row in rows]

        return await self._db.read(run)

    async def set_disabled(self, user_id: str, disabled: bool, now_ms: int) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE users SET disabled = ?, update_time = ? WHERE id = ? AND is_delete = 0",
                (int(disabled), now_ms, user_id),
            )
            return cursor.rowcount > 0

        return await self._db.write(run)

    async def delete_user(self, user_id: str, now_ms: int) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE users SET is_delete = 1, update_time = ? WHERE id = ? AND is_delete = 0",
                (now_ms, user_id),
            )
            return cursor.rowcount > 0

        return await self._db.write(run)

    async def revoke_tokens(self, user_id: str) -> int:
        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "UPDATE users SET token_gen = token_gen + 1 WHERE id = ? RETURNING token_gen",
                (user_id,),
            ).fetchone()
            return int(row[0]) if row else 0

        generation = await self._db.write(run)
        self._generations[user_id] = generation
        return generation

    async def token_generation(self, user_id: str) -> int:
        cached = self._generations.get(user_id)
        if cached is not None:
            return cached

        def run(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT token_gen FROM users WHERE id = ?", (user_id,)).fetchone()
            return int(row[0]) if row else 0

        # A raise committed while this read was in flight has already set the cache: keep it.
        return self._generations.setdefault(user_id, await self._db.read(run))

    async def session_state(self, user_id: str, device_id: str) -> tuple[int, bool]:
        # Both answers come from this process's caches once warm: no query at all.
        return (
            await self.token_generation(user_id),
            await self._devices.is_active(user_id, device_id),
        )


class SqliteCodeStore:
    """Codes live in SQLite so a restart within the TTL does not lose them."""

    def __init__(self, db: SqliteDatabase, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._db = db
        self._clock = clock

    async def put_code(self, email: str, code: str, ttl_seconds: int) -> None:
        expires = int(self._clock.now()) + ttl_seconds

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO codes (email, code, expires_at) VALUES (?, ?, ?) "
                "ON CONFLICT(email) DO UPDATE SET code = excluded.code, "
                "expires_at = excluded.expires_at, failures = 0",
                (email, code, expires),
            )

        await self._db.write(run)

    async def get_code(self, email: str) -> str | None:
        now = int(self._clock.now())

        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT code FROM codes WHERE email = ? AND expires_at > ?", (email, now)
            ).fetchone()
            return str(row[0]) if row else None

        return await self._db.read(run)

    async def delete_code(self, email: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM codes WHERE email = ?", (email,))

        await self._db.write(run)

    async def record_failure(self, email: str, max_attempts: int) -> None:
        def run(conn: sqlite3.Connection) -> None:
            row = conn.execute(
                "UPDATE codes SET failures = failures + 1 WHERE email = ? RETURNING failures",
                (email,),
            ).fetchone()
            if row is not None and row[0] >= max_attempts:
                conn.execute("DELETE FROM codes WHERE email = ?", (email,))

        await self._db.write(run)
