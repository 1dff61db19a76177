"""Friends, friend requests and groups in PostgreSQL: the twins of the embedded social store.

Lists of ids travel as one ``text[]`` parameter (``unnest``/``ANY``), so a batch of any size
is one statement. Member order breaks ties on ``user_id`` in byte order (``COLLATE "C"``),
as SQLite does.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from sandcat.adapters.conversation_sql import join_read_sql
from sandcat.adapters.postgres.errors import pg_errors
from sandcat.adapters.social_sql import (
    ACCEPTED,
    DELETED,
    FRIEND_SELECT,
    FRIENDSHIP_SELECT,
    GROUP_COLUMNS,
    MEMBER,
    MEMBER_SELECT,
    OWNER,
    PENDING,
    REJECTED,
    REQUEST_SELECT,
    UNREAD_ONLY,
    upsert_request_sql,
)
from sandcat.ports import FriendRequest
from sandcat.protocol.payloads import Friend, FriendshipWithUser, GroupInfo, GroupMember

_MEMBER_SELECT = MEMBER_SELECT + "$1 "
_MEMBER_ORDER = 'ORDER BY m.joined_at, m.role, m.user_id COLLATE "C"'
_UPSERT_REQUEST = upsert_request_sql("$")


class PostgresFriendStore:
    """Implements ``FriendStore``."""

    def __init__(self, *, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @pg_errors
    async def upsert_request(
        self,
        *,
        new_id: str,
        user_id: str,
        friend_id: str,
        apply_msg: str | None,
        req_remark: str | None,
        source: str,
        now_ms: int,
        renew_rejected_before: int,
    ) -> str | None:
        fs_id = await self._pool.fetchval(
            _UPSERT_REQUEST,
            new_id,
            user_id,
            friend_id,
            apply_msg,
            req_remark,
            source,
            now_ms,
            renew_rejected_before,
        )
        return str(fs_id) if fs_id is not None else None

    @pg_errors
    async def get_request(self, fs_id: str) -> FriendRequest | None:
        row = await self._pool.fetchrow(
            FRIENDSHIP_SELECT + "id = $1",
            fs_id,
        )
        return FriendRequest(*row) if row else None

    @pg_errors
    async def request_between(self, user_id: str, friend_id: str) -> FriendRequest | None:
        row = await self._pool.fetchrow(
            FRIENDSHIP_SELECT + "user_id = $1 AND friend_id = $2",
            user_id,
            friend_id,
        )
        return FriendRequest(*row) if row else None

    @pg_errors
    async def accept_request(
        self, fs_id: str, resp_msg: str | None, resp_remark: str | None, now_ms: int
    ) -> tuple[Friend, Friend] | None:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                f"UPDATE friendships SET status = {ACCEPTED}, resp_msg = $1, resp_remark = $2, "
                f"update_time = $3 WHERE id = $4 AND status = {PENDING} "
                "RETURNING user_id, friend_id, req_remark, source",
                resp_msg,
                resp_remark,
                now_ms,
                fs_id,
            )
            if row is None:
                return None
            requester, accepter, req_remark, source = row
            await conn.executemany(
                "INSERT INTO friends (user_id, friend_id, fs_id, status, remark, source, "
                f"create_time, update_time) VALUES ($1, $2, $3, {ACCEPTED}, $4, $5, $6, $6) "
                "ON CONFLICT (user_id, friend_id) DO UPDATE SET fs_id = excluded.fs_id, "
                f"status = {ACCEPTED}, remark = excluded.remark, source = excluded.source, "
                "update_time = excluded.update_time",
                [
                    (requester, accepter, fs_id, req_remark, source, now_ms),
                    (accepter, requester, fs_id, resp_remark, source, now_ms),
                ],
            )
            select = FRIEND_SELECT + "WHERE f.user_id = $1 AND f.friend_id = $2"
            return (
                Friend(*await conn.fetchrow(select, accepter, requester)),
                Friend(*await conn.fetchrow(select, requester, accepter)),
            )

    @pg_errors
    async def reject_request(self, fs_id: str, resp_msg: str | None, now_ms: int) -> bool:
        result = await self._pool.execute(
            f"UPDATE friendships SET status = {REJECTED}, resp_msg = $1, update_time = $2 "
            f"WHERE id = $3 AND status = {PENDING}",
            resp_msg,
            now_ms,
            fs_id,
        )
        return _count(result) > 0

    @pg_errors
    async def delete_friend(self, user_id: str, friend_id: str, fs_id: str, now_ms: int) -> bool:
        async with self._pool.acquire() as conn, conn.transaction():
            result = await conn.execute(
                f"UPDATE friends SET status = {DELETED}, update_time = $1 "
                f"WHERE fs_id = $2 AND status = {ACCEPTED} AND "
                "((user_id = $3 AND friend_id = $4) OR (user_id = $4 AND friend_id = $3))",
                now_ms,
                fs_id,
                user_id,
                friend_id,
            )
            if _count(result) == 0:
                return False
            await conn.execute(
                f"UPDATE friendships SET status = {DELETED}, update_time = $1 WHERE id = $2",
                now_ms,
                fs_id,
            )
            return True

    @pg_errors
    async def set_remark(self, user_id: str, friend_id: str, remark: str, now_ms: int) -> bool:
        result = await self._pool.execute(
            "UPDATE friends SET remark = $1, update_time = $2 "
            f"WHERE user_id = $3 AND friend_id = $4 AND status = {ACCEPTED}",
            remark,
            now_ms,
            user_id,
            friend_id,
        )
        return _count(result) > 0

    @pg_errors
    async def are_friends(self, user_id: str, friend_id: str) -> bool:
        found = await self._pool.fetchval(
            f"SELECT 1 FROM friends WHERE user_id = $1 AND friend_id = $2 AND status = {ACCEPTED}",
            user_id,
            friend_id,
        )
        return found is not None

    @pg_errors
    async def friends_among(self, user_id: str, user_ids: Sequence[str]) -> set[str]:
        rows = await self._pool.fetch(
            f"SELECT friend_id FROM friends WHERE user_id = $1 AND status = {ACCEPTED} "
            "AND friend_id = ANY($2::VARCHAR[])",
            user_id,
            list(user_ids),
        )
        return {str(row[0]) for row in rows}

    @pg_errors
    async def friends_since(self, user_id: str, since_ms: int) -> list[Friend]:
        rows = await self._pool.fetch(
            FRIEND_SELECT + "WHERE f.user_id = $1 AND f.update_time > $2 AND NOT u.is_delete "
            "ORDER BY f.update_time",
            user_id,
            since_ms,
        )
        return [Friend(*row) for row in rows]

    @pg_errors
    async def requests_to(
        self, user_id: str, *, since_ms: int, pending_only: bool, unread_only: bool = False
    ) -> list[FriendshipWithUser]:
        sql = REQUEST_SELECT + "WHERE f.friend_id = $1 AND f.update_time > $2 AND NOT u.is_delete "
        if pending_only:
            sql += f"AND f.status = {PENDING} "
        if unread_only:
            sql += UNREAD_ONLY
        sql += "ORDER BY f.update_time"
        rows = await self._pool.fetch(sql, user_id, since_ms)
        return [FriendshipWithUser(*row) for row in rows]


#: The new members' reads, in the statement that adds them (CTE ``added``): at the group's
#: creation (its time is ``$3``) and when members are added (``$2``).
_CREATE_READ = join_read_sql("added", group="$1", now="$3", greatest="GREATEST")
_ADD_READ = join_read_sql("added", group="$1", now="$2", greatest="GREATEST")


class PostgresGroupStore:
    """Implements ``GroupStore``."""

    def __init__(self, *, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @pg_errors
    async def create_group(self, info: GroupInfo, member_ids: Sequence[str]) -> list[GroupMember]:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute(
                f"INSERT INTO groups ({GROUP_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                info.id,
                info.owner,
                info.name,
                info.avatar,
                info.description,
                info.announcement,
                info.create_time,
                info.update_time,
            )
            await conn.execute(
                "WITH added AS (INSERT INTO group_members "
                "(group_id, user_id, group_name, role, joined_at) "
                f"SELECT $1, u.id, u.name, CASE WHEN u.id = $2 THEN {OWNER} ELSE {MEMBER} END, "
                "$3 FROM users u WHERE NOT u.is_delete AND u.id = ANY($4::VARCHAR[]) "
                f"RETURNING user_id), reads AS ({_CREATE_READ}) SELECT 1",
                info.id,
                info.owner,
                info.create_time,
                list(member_ids),
            )
            rows = await conn.fetch(_MEMBER_SELECT + _MEMBER_ORDER, info.id)
        return [GroupMember(*row) for row in rows]

    @pg_errors
    async def get_group(self, group_id: str) -> GroupInfo | None:
        row = await self._pool.fetchrow(
            f"SELECT {GROUP_COLUMNS} FROM groups WHERE id = $1", group_id
        )
        return GroupInfo(*row) if row else None

    @pg_errors
    async def member_roles(self, group_id: str) -> dict[str, int]:
        rows = await self._pool.fetch(
            "SELECT user_id, role FROM group_members WHERE group_id = $1", group_id
        )
        return {row[0]: int(row[1]) for row in rows}

    @pg_errors
    async def member_role(self, group_id: str, user_id: str) -> int | None:
        role = await self._pool.fetchval(
            "SELECT role FROM group_members WHERE group_id = $1 AND user_id = $2",
            group_id,
            user_id,
        )
        return int(role) if role is not None else None

    @pg_errors
    async def members(
        self, group_id: str, user_ids: Sequence[str] | None = None
    ) -> list[GroupMember]:
        if user_ids is None:
            rows = await self._pool.fetch(_MEMBER_SELECT + _MEMBER_ORDER, group_id)
        else:
            rows = await self._pool.fetch(
                _MEMBER_SELECT + "AND m.user_id = ANY($2::VARCHAR[]) " + _MEMBER_ORDER,
                group_id,
                list(user_ids),
            )
        return [GroupMember(*row) for row in rows]

    @pg_errors
    async def add_members(self, group_id: str, user_ids: Sequence[str], now_ms: int) -> list[str]:
        rows = await self._pool.fetch(
            "WITH added AS (INSERT INTO group_members "
            "(group_id, user_id, group_name, role, joined_at) "
            f"SELECT $1, u.id, u.name, {MEMBER}, $2 FROM users u "
            "WHERE NOT u.is_delete AND u.id = ANY($3::VARCHAR[]) "
            "ON CONFLICT (group_id, user_id) DO NOTHING RETURNING user_id), "
            f"reads AS ({_ADD_READ}) SELECT user_id FROM added",
            group_id,
            now_ms,
            list(user_ids),
        )
        added = {row[0] for row in rows}
        return [uid for uid in dict.fromkeys(user_ids) if uid in added]

    @pg_errors
    async def remove_members(self, group_id: str, user_ids: Sequence[str]) -> list[str]:
        rows = await self._pool.fetch(
            "DELETE FROM group_members WHERE group_id = $1 AND user_id = ANY($2::VARCHAR[]) "
            "RETURNING user_id",
            group_id,
            list(user_ids),
        )
        removed = {row[0] for row in rows}
        return [uid for uid in dict.fromkeys(user_ids) if uid in removed]

    @pg_errors
    async def update_group(
        self,
        group_id: str,
        *,
        name: str,
        avatar: str,
        description: str,
        announcement: str,
        now_ms: int,
    ) -> GroupInfo | None:
        row = await self._pool.fetchrow(
            "UPDATE groups SET name = COALESCE(NULLIF($1, ''), name), "
            "avatar = COALESCE(NULLIF($2, ''), avatar), "
            "description = COALESCE(NULLIF($3, ''), description), "
            "announcement = COALESCE(NULLIF($4, ''), announcement), update_time = $5 "
            f"WHERE id = $6 RETURNING {GROUP_COLUMNS}",
            name,
            avatar,
            description,
            announcement,
            now_ms,
            group_id,
        )
        return GroupInfo(*row) if row else None

    @pg_errors
    async def delete_group(self, group_id: str) -> None:
        async with self._pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM group_members WHERE group_id = $1", group_id)
            await conn.execute("DELETE FROM groups WHERE id = $1", group_id)


def _count(status: str) -> int:
    """Rows affected, from a command tag such as ``UPDATE 2``."""
    return int(status.rsplit(" ", 1)[-1])
