"""Friends, friend requests, groups and the membership cache of the embedded mode.

Every method is one hop to the SQLite thread; lists of ids travel as one JSON parameter
(``json_each``), so a batch of any size is one statement, not one per id.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections import OrderedDict
from collections.abc import AsyncIterator, Collection, Sequence

import orjson

from sandcat.adapters.conversation_sql import join_read_sql
from sandcat.adapters.embedded.sqlite import SqliteDatabase
from sandcat.adapters.social_sql import (
    FRIEND_SELECT,
    FRIENDSHIP_SELECT,
    GROUP_COLUMNS,
    MEMBER,
    MEMBER_SELECT,
    OWNER,
    PENDING,
    REQUEST_SELECT,
    UNREAD_ONLY,
    upsert_request_sql,
)
from sandcat.ports import FriendRequest
from sandcat.protocol.payloads import Friend, FriendshipWithUser, GroupInfo, GroupMember

_MEMBER_SELECT = MEMBER_SELECT + "? "
_MEMBER_ORDER = "ORDER BY m.joined_at, m.role, m.user_id"
#: One parameter holding a JSON array of ids.
_IDS = "(SELECT value FROM json_each(?))"
_UPSERT_REQUEST = upsert_request_sql("?")


def _ids(values: Collection[str]) -> str:
    return orjson.dumps(list(values)).decode()


_JOIN_READ = join_read_sql(
    "(SELECT value AS user_id FROM json_each(?2))", group="?1", now="?3", greatest="MAX"
)


def _join_read(conn: sqlite3.Connection, group_id: str, added: Collection[str], now: int) -> None:
    """The new members' reads of the group's conversation, in the membership's transaction."""
    if added:
        conn.execute(_JOIN_READ, (group_id, _ids(added), now))


def _select_friend(conn: sqlite3.Connection, user_id: str, friend_id: str) -> Friend:
    row = conn.execute(
        FRIEND_SELECT + "WHERE f.user_id = ? AND f.friend_id = ?", (user_id, friend_id)
    ).fetchone()
    return Friend(*row)


#: Friendship answers kept in memory (each entry is a pair of ids and a bool).
FRIENDSHIP_CACHE_ENTRIES = 1_000_000


class SqliteFriendStore:
    """Implements ``FriendStore``.

    The process that owns the database is its only writer, so ``are_friends`` (asked for
    every one-to-one message and call) is answered from memory after the first read: the
    two writes that change a friendship (accept, delete) update the cache as they commit.
    """

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db
        self._friends: dict[tuple[str, str], bool] = {}

    def _remember(self, user_id: str, friend_id: str, friends: bool) -> None:
        if len(self._friends) >= FRIENDSHIP_CACHE_ENTRIES:
            self._friends.clear()
        self._friends[(user_id, friend_id)] = friends
        self._friends[(friend_id, user_id)] = friends

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
        def run(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                _UPSERT_REQUEST,
                (
                    new_id,
                    user_id,
                    friend_id,
                    apply_msg,
                    req_remark,
                    source,
                    now_ms,
                    renew_rejected_before,
                ),
            ).fetchone()
            return str(row[0]) if row else None

        return await self._db.write(run)

    async def get_request(self, fs_id: str) -> FriendRequest | None:
        def run(conn: sqlite3.Connection) -> FriendRequest | None:
            row = conn.execute(
                FRIENDSHIP_SELECT + "id = ?",
                (fs_id,),
            ).fetchone()
            return FriendRequest(*row) if row else None

        return await self._db.read(run)

    async def request_between(self, user_id: str, friend_id: str) -> FriendRequest | None:
        def run(conn: sqlite3.Connection) -> FriendRequest | None:
            row = conn.execute(
                FRIENDSHIP_SELECT + "user_id = ? AND friend_id = ?",
                (user_id, friend_id),
            ).fetchone()
            return FriendRequest(*row) if row else None

        return await self._db.read(run)

    async def accept_request(
        self, fs_id: str, resp_msg: str | None, resp_remark: str | None, now_ms: int
    ) -> tuple[Friend, Friend] | None:
        def run(conn: sqlite3.Connection) -> tuple[Friend, Friend] | None:
            row = conn.execute(
                "UPDATE friendships SET status = 1, resp_msg = ?, resp_remark = ?, "
                "update_time = ? WHERE id = ? AND status = 0 "
                "RETURNING user_id, friend_id, req_remark, source",
                (resp_msg, resp_remark, now_ms, fs_id),
            ).fetchone()
            if row is None:
                return None
            requester, accepter, req_remark, source = row
            conn.executemany(
                "INSERT INTO friends (user_id, friend_id, fs_id, status, remark, source, "
                "create_time, update_time) VALUES (?, ?, ?, 1, ?, ?, ?, ?) "
                "ON CONFLICT (user_id, friend_id) DO UPDATE SET fs_id = excluded.fs_id, "
                "status = 1, remark = excluded.remark, source = excluded.source, "
                "update_time = excluded.update_time",
                [
                    (requester, accepter, fs_id, req_remark, source, now_ms, now_ms),
                    (accepter, requester, fs_id, resp_remark, source, now_ms, now_ms),
                ],
            )
            return (
                _select_friend(conn, accepter, requester),
                _select_friend(conn, requester, accepter),
            )

        accepted = await self._db.write(run)
        if accepted is not None:
            self._remember(accepted[0].friend_id, accepted[1].friend_id, True)
        return accepted

    async def reject_request(self, fs_id: str, resp_msg: str | None, now_ms: int) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE friendships SET status = 2, resp_msg = ?, update_time = ? "
                "WHERE id = ? AND status = 0",
                (resp_msg, now_ms, fs_id),
            )
            return cur.rowcount > 0

        return await self._db.write(run)

    async def delete_friend(self, user_id: str, friend_id: str, fs_id: str, now_ms: int) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE friends SET status = 4, update_time = ?1 WHERE fs_id = ?2 AND status = 1 "
                "AND ((user_id = ?3 AND friend_id = ?4) OR (user_id = ?4 AND friend_id = ?3))",
                (now_ms, fs_id, user_id, friend_id),
            )
            if cur.rowcount == 0:
                return False
            conn.execute(
                "UPDATE friendships SET status = 4, update_time = ? WHERE id = ?", (now_ms, fs_id)
            )
            return True

        deleted = await self._db.write(run)
        if deleted:
            self._remember(user_id, friend_id, False)
        return deleted

    async def set_remark(self, user_id: str, friend_id: str, remark: str, now_ms: int) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE friends SET remark = ?, update_time = ? "
                "WHERE user_id = ? AND friend_id = ? AND status = 1",
                (remark, now_ms, user_id, friend_id),
            )
            return cur.rowcount > 0

        return await self._db.write(run)

    async def are_friends(self, user_id: str, friend_id: str) -> bool:
        known = self._friends.get((user_id, friend_id))
        if known is not None:
            return known

        def run(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                "SELECT 1 FROM friends WHERE user_id = ? AND friend_id = ? AND status = 1",
                (user_id, friend_id),
            ).fetchone()
            return row is not None

        found = await self._db.read(run)
        # A write that committed while this read was in flight has set the answer: keep it.
        return self._friends.setdefault((user_id, friend_id), found)

    async def friends_among(self, user_id: str, user_ids: Sequence[str]) -> set[str]:
        def run(conn: sqlite3.Connection) -> set[str]:
            rows = conn.execute(
                "SELECT friend_id FROM friends WHERE user_id = ? AND status = 1 "
                f"AND friend_id IN {_IDS}",
                (user_id, _ids(user_ids)),
            )
            return {str(row[0]) for row in rows}

        return await self._db.read(run)

    async def friends_since(self, user_id: str, since_ms: int) -> list[Friend]:
        def run(conn: sqlite3.Connection) -> list[Friend]:
            rows = conn.execute(
                FRIEND_SELECT + "WHERE f.user_id = ? AND f.update_time > ? AND u.is_delete = 0 "
                "ORDER BY f.update_time",
                (user_id, since_ms),
            )
            return [Friend(*row) for row in rows]

        return await self._db.read(run)

    async def requests_to(
        self, user_id: str, *, since_ms: int, pending_only: bool, unread_only: bool = False
    ) -> list[FriendshipWithUser]:
        sql = REQUEST_SELECT + "WHERE f.friend_id = ? AND f.update_time > ? AND u.is_delete = 0 "
        if pending_only:
            sql += f"AND f.status = {PENDING} "
        if unread_only:
            sql += UNREAD_ONLY
        sql += "ORDER BY f.update_time"

        def run(conn: sqlite3.Connection) -> list[FriendshipWithUser]:
            return [FriendshipWithUser(*row) for row in conn.execute(sql, (user_id, since_ms))]

        return await self._db.read(run)


class SqliteGroupStore:
    """Implements ``GroupStore``."""

    def __init__(self, db: SqliteDatabase) -> None:
        self._db = db

    async def create_group(self, info: GroupInfo, member_ids: Sequence[str]) -> list[GroupMember]:
        def run(conn: sqlite3.Connection) -> list[GroupMember]:
            conn.execute(
                f"INSERT INTO groups ({GROUP_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    info.id,
                    info.owner,
                    info.name,
                    info.avatar,
                    info.description,
                    info.announcement,
                    info.create_time,
                    info.update_time,
                ),
            )
            rows = conn.execute(
                "INSERT INTO group_members (group_id, user_id, group_name, role, joined_at) "
                f"SELECT ?1, u.id, u.name, CASE WHEN u.id = ?2 THEN {OWNER} ELSE {MEMBER} END, "
                "?3 FROM users u "
                "WHERE u.is_delete = 0 AND u.id IN (SELECT value FROM json_each(?4)) "
                "RETURNING user_id",
                (info.id, info.owner, info.create_time, _ids(member_ids)),
            ).fetchall()
            _join_read(conn, info.id, [row[0] for row in rows], info.create_time)
            return [
                GroupMember(*row)
                for row in conn.execute(_MEMBER_SELECT + _MEMBER_ORDER, (info.id,))
            ]

        return await self._db.write(run)

    async def get_group(self, group_id: str) -> GroupInfo | None:
        def run(conn: sqlite3.Connection) -> GroupInfo | None:
            row = conn.execute(
                f"SELECT {GROUP_COLUMNS} FROM groups WHERE id = ?", (group_id,)
            ).fetchone()
            return GroupInfo(*row) if row else None

        return await self._db.read(run)

    async def member_roles(self, group_id: str) -> dict[str, int]:
        def run(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute(
                "SELECT user_id, role FROM group_members WHERE group_id = ?", (group_id,)
            )
            return {user_id: role for user_id, role in rows}

        return await self._db.read(run)

    async def member_role(self, group_id: str, user_id: str) -> int | None:
        def run(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(
                "SELECT role FROM group_members WHERE group_id = ? AND user_id = ?",
                (group_id, user_id),
            ).fetchone()
            return int(row[0]) if row else None

        return await self._db.read(run)

    async def members(
        self, group_id: str, user_ids: Sequence[str] | None = None
    ) -> list[GroupMember]:
        def run(conn: sqlite3.Connection) -> list[GroupMember]:
            if user_ids is None:
                rows = conn.execute(_MEMBER_SELECT + _MEMBER_ORDER, (group_id,))
            else:
                rows = conn.execute(
                    _MEMBER_SELECT + f"AND m.user_id IN {_IDS} " + _MEMBER_ORDER,
                    (group_id, _ids(user_ids)),
                )
            return [GroupMember(*row) for row in rows]

        return await self._db.read(run)

    async def add_members(self, group_id: str, user_ids: Sequence[str], now_ms: int) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "INSERT INTO group_members (group_id, user_id, group_name, role, joined_at) "
                f"SELECT ?1, u.id, u.name, {MEMBER}, ?2 FROM users u "
                "WHERE u.is_delete = 0 AND u.id IN (SELECT value FROM json_each(?3)) "
                "AND NOT EXISTS (SELECT 1 FROM group_members m "
                "WHERE m.group_id = ?1 AND m.user_id = u.id) RETURNING user_id",
                (group_id, now_ms, _ids(user_ids)),
            ).fetchall()
            added = {row[0] for row in rows}
            _join_read(conn, group_id, added, now_ms)
            return [uid for uid in dict.fromkeys(user_ids) if uid in added]

        return await self._db.write(run)

    async def remove_members(self, group_id: str, user_ids: Sequence[str]) -> list[str]:
        def run(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                f"DELETE FROM group_members WHERE group_id = ? AND user_id IN {_IDS} "
                "RETURNING user_id",
                (group_id, _ids(user_ids)),
            ).fetchall()
            removed = {row[0] for row in rows}
            return [uid for uid in dict.fromkeys(user_ids) if uid in removed]

        return await self._db.write(run)

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
        def run(conn: sqlite3.Connection) -> GroupInfo | None:
            row = conn.execute(
                "UPDATE groups SET name = COALESCE(NULLIF(?, ''), name), "
                "avatar = COALESCE(NULLIF(?, ''), avatar), "
                "description = COALESCE(NULLIF(?, ''), description), "
                "announcement = COALESCE(NULLIF(?, ''), announcement), update_time = ? "
                f"WHERE id = ? RETURNING {GROUP_COLUMNS}",
                (name, avatar, description, announcement, now_ms, group_id),
            ).fetchone()
            return GroupInfo(*row) if row else None

        return await self._db.write(run)

    async def delete_group(self, group_id: str) -> None:
        def run(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM group_members WHERE group_id = ?", (group_id,))
            conn.execute("DELETE FROM groups WHERE id = ?", (group_id,))

        await self._db.write(run)


class InProcessMembershipCache:
    """Implements ``MembershipCache`` in memory: LRU, bounded by the member ids it holds.

    One process, one FIFO message log: the group service's lock orders changes against
    group messages, so the epoch stays 0 and ``changing`` holds nothing more."""

    def __init__(self, *, max_ids: int = 2_000_000) -> None:
        self._groups: OrderedDict[str, frozenset[str]] = OrderedDict()
        self._size = 0
        self._max_ids = max_ids

    async def get(self, group_id: str) -> tuple[frozenset[str], int] | None:
        members = self._groups.get(group_id)
        if members is None:
            return None
        self._groups.move_to_end(group_id)
        return members, 0

    async def put(self, group_id: str, members: frozenset[str]) -> int | None:
        await self.invalidate(group_id)
        self._groups[group_id] = members
        self._size += len(members)
        while self._size > self._max_ids and len(self._groups) > 1:
            _, evicted = self._groups.popitem(last=False)
            self._size -= len(evicted)
        return 0

    async def invalidate(self, group_id: str) -> None:
        old = self._groups.pop(group_id, None)
        if old is not None:
            self._size -= len(old)

    @contextlib.asynccontextmanager
    async def changing(self, group_id: str) -> AsyncIterator[None]:
        yield
