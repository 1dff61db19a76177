"""Users in PostgreSQL: the same semantics and errors as ``SqliteUserStore``."""

from __future__ import annotations

from typing import Any

import asyncpg

from sandcat.adapters.postgres.errors import pg_errors
from sandcat.adapters.user_sql import EMAIL_TAKEN, PHONE_TAKEN, USER_COLUMNS, user_values
from sandcat.domain import UserChanges, UserRecord
from sandcat.errors import BadRequest


def _user(row: Any) -> UserRecord:
    return UserRecord(*row)


class PostgresUserStore:
    """Implements ``UserStore``."""

    def __init__(self, *, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @pg_errors
    async def insert_user(self, user: UserRecord) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            if user.email and await conn.fetchval(
                "SELECT 1 FROM users WHERE (email IS NOT NULL AND lower(email) = lower($1))",
                user.email,
            ):
                raise BadRequest(EMAIL_TAKEN)
            try:
                await conn.execute(
                    f"INSERT INTO users ({USER_COLUMNS}) VALUES "
                    "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, "
                    "$18)",
                    *user_values(user),
                )
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name == "users_email":  # a concurrent registration won
                    raise BadRequest(EMAIL_TAKEN) from exc
                raise
            await conn.execute(
                "INSERT INTO sequence (user_id) VALUES ($1) ON CONFLICT DO NOTHING", user.id
            )

    @pg_errors
    async def get_user(self, user_id: str) -> UserRecord | None:
        row = await self._pool.fetchrow(
            f"SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND NOT is_delete", user_id
        )
        return _user(row) if row else None

    @pg_errors
    async def find_login(self, login: str) -> UserRecord | None:
        row = await self._pool.fetchrow(
            f"SELECT {USER_COLUMNS} FROM users WHERE NOT is_delete AND "
            "(account = $1 OR (email IS NOT NULL AND lower(email) = lower($1)) OR phone = $1) "
            "ORDER BY account = $1 DESC, "
            "lower(email) IS NOT DISTINCT FROM lower($1) DESC LIMIT 1",
            login,
        )
        return _user(row) if row else None

    @pg_errors
    async def email_taken(self, email: str) -> bool:
        return bool(
            await self._pool.fetchval(
                "SELECT 1 FROM users WHERE (email IS NOT NULL AND lower(email) = lower($1))", email
            )
        )

    @pg_errors
    async def update_user(
        self, user_id: str, changes: UserChanges, now_ms: int
    ) -> UserRecord | None:
        async with self._pool.acquire() as conn, conn.transaction():
            if changes.email and await conn.fetchval(
                "SELECT 1 FROM users WHERE (email IS NOT NULL AND lower(email) = lower($1)) "
                "AND id <> $2",
                changes.email,
                user_id,
            ):
                raise BadRequest(EMAIL_TAKEN)
            if changes.phone:
                # Login matches account, e-mail and phone (find_login): a phone must name
                # no one else. Phone changes take one transaction lock, so two users
                # cannot both pass the check with the same number.
                await conn.execute("SELECT pg_advisory_xact_lock(hashtext('users.phone'))")
                if await conn.fetchval(
                    "SELECT 1 FROM users WHERE id <> $2 AND (id = $1 OR account = $1 "
                    "OR (email IS NOT NULL AND lower(email) = lower($1)) "
                    "OR (phone = $1 AND NOT is_delete))",
                    changes.phone,
                    user_id,
                ):
                    raise BadRequest(PHONE_TAKEN)
            try:
                row = await conn.fetchrow(
                    "UPDATE users SET "
                    "name = COALESCE(NULLIF($1, ''), name), "
                    "avatar = COALESCE(NULLIF($2, ''), avatar), "
                    "gender = COALESCE(NULLIF($3, ''), gender), "
                    "phone = COALESCE(NULLIF($4, ''), phone), "
                    "email = COALESCE(NULLIF($5, ''), email), "
                    "address = COALESCE(NULLIF($6, ''), address), "
                    "region = COALESCE(NULLIF($7, ''), region), "
                    "birthday = COALESCE(NULLIF($8::BIGINT, 0), birthday), "
                    "signature = COALESCE(NULLIF($9, ''), signature), update_time = $10 "
                    f"WHERE id = $11 AND NOT is_delete RETURNING {USER_COLUMNS}",
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
                )
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name == "users_email":
                    raise BadRequest(EMAIL_TAKEN) from exc
                raise
        return _user(row) if row else None

    @pg_errors
    async def set_password(self, user_id: str, password_hash: str, salt: str, now_ms: int) -> None:
        await self._pool.execute(
            "UPDATE users SET password = $1, salt = $2, update_time = $3 WHERE id = $4",
            password_hash,
            salt,
            now_ms,
            user_id,
        )

    @pg_errors
    async def search_user(self, pattern: str, exclude_id: str) -> tuple[UserRecord, str] | None:
        async with self._pool.acquire() as conn:
            for column in ("email", "phone", "account"):
                row = await conn.fetchrow(
                    f"SELECT {USER_COLUMNS} FROM users "
                    f"WHERE {column} = $1 AND id <> $2 AND NOT is_delete LIMIT 1",
                    pattern,
                    exclude_id,
                )
                if row:
                    return _user(row), column
        return None

    @pg_errors
    async def list_users(self, limit: int, offset: int) -> list[UserRecord]:
        rows = await self._pool.fetch(
            f"SELECT {USER_COLUMNS} FROM users WHERE NOT is_delete "
            "ORDER BY create_time, id LIMIT $1 OFFSET $2",
            limit,
            offset,
        )
        return [_user(row) for row in rows]

    @pg_errors
    async def set_disabled(self, user_id: str, disabled: bool, now_ms: int) -> bool:
        status = await self._pool.execute(
            "UPDATE users SET disabled = $1, update_time = $2 WHERE id = $3 AND NOT is_delete",
            disabled,
            now_ms,
            user_id,
        )
        return bool(status.endswith(" 1"))

    @pg_errors
    async def delete_user(self, user_id: str, now_ms: int) -> bool:
        status = await self._pool.execute(
            "UPDATE users SET is_delete = TRUE, update_time = $1 WHERE id = $2 AND NOT is_delete",
            now_ms,
            user_id,
        )
        return bool(status.endswith(" 1"))

    @pg_errors
    async def revoke_tokens(self, user_id: str) -> int:
        value = await self._pool.fetchval(
            "UPDATE users SET token_gen = token_gen + 1 WHERE id = $1 RETURNING token_gen", user_id
        )
        return int(value) if value is not None else 0

    @pg_errors
    async def token_generation(self, user_id: str) -> int:
        # No cache: another api or gateway process may have raised it a moment ago.
        value = await self._pool.fetchval("SELECT token_gen FROM users WHERE id = $1", user_id)
        return int(value) if value is not None else 0

    @pg_errors
    async def session_state(self, user_id: str, device_id: str) -> tuple[int, bool]:
        # One round trip for both halves of a token check (no cache, as above).
        row = await self._pool.fetchrow(
            "SELECT COALESCE((SELECT token_gen FROM users WHERE id = $1), 0), "
            "EXISTS (SELECT 1 FROM devices WHERE id = $2 AND user_id = $1)",
            user_id,
            device_id,
        )
        return (int(row[0]), bool(row[1])) if row is not None else (0, False)
