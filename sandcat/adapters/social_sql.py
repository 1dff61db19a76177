"""SQL shared by the SQLite and PostgreSQL friend and group stores (same schema, same rows)."""

from __future__ import annotations

from sandcat.domain import FriendStatus, GroupRole

#: The stored values (``sandcat.domain``), short for the SQL text here and in the stores.
PENDING, ACCEPTED, REJECTED, DELETED = (
    FriendStatus.PENDING,
    FriendStatus.ACCEPTED,
    FriendStatus.REJECTED,
    FriendStatus.DELETED,
)
OWNER, MEMBER = GroupRole.OWNER, GroupRole.MEMBER

FRIEND_SELECT = (
    "SELECT f.fs_id, f.friend_id, u.account, u.name, u.avatar, u.gender, u.age, u.region, "
    "f.status, f.remark, u.email, f.source, u.signature, f.create_time, f.update_time "
    "FROM friends f JOIN users u ON u.id = f.friend_id "
)
#: The requester's remark and e-mail are not the target's business: both are null.
REQUEST_SELECT = (
    "SELECT f.id, f.user_id, u.name, u.avatar, u.gender, u.age, u.region, f.status, "
    "f.apply_msg, f.source, f.create_time, u.account, NULL, NULL "
    "FROM friendships f JOIN users u ON u.id = f.user_id "
)
#: Leaves out the requests whose receiver read them as they stand (``FriendshipReads``).
UNREAD_ONLY = (
    "AND NOT EXISTS (SELECT 1 FROM friendship_reads r "
    "WHERE r.fs_id = f.id AND r.read_until >= f.update_time) "
)
GROUP_COLUMNS = "id, owner, name, avatar, description, announcement, create_time, update_time"
#: Members of one group; the caller appends the group id placeholder of its dialect.
MEMBER_SELECT = (
    "SELECT u.age, m.group_id, m.user_id, u.name, u.avatar, m.joined_at, u.region, u.gender, "
    "m.group_remark, u.signature, m.role "
    "FROM group_members m JOIN users u ON u.id = m.user_id WHERE m.group_id = "
)
#: One friend request row (``FriendRequest``); the caller appends its condition.
FRIENDSHIP_SELECT = (
    "SELECT id, user_id, friend_id, status, apply_msg, req_remark, source, "
    "create_time, update_time FROM friendships WHERE "
)


def upsert_request_sql(mark: str) -> str:
    """``FriendStore.upsert_request``: a new pending request, or an old one renewed unless it
    is pending or was rejected since ``renew_rejected_before``. Eight parameters by number
    (id, user, friend, apply_msg, req_remark, source, now, renew_rejected_before); ``mark``
    numbers them in the dialect: ``$`` for PostgreSQL, ``?`` for SQLite (``?N``)."""
    p = [f"{mark}{n}" for n in range(1, 9)]
    return (
        "INSERT INTO friendships (id, user_id, friend_id, status, apply_msg, req_remark, "
        f"source, create_time, update_time) VALUES ({p[0]}, {p[1]}, {p[2]}, {PENDING}, "
        f"{p[3]}, {p[4]}, {p[5]}, {p[6]}, {p[6]}) "
        f"ON CONFLICT (user_id, friend_id) DO UPDATE SET status = {PENDING}, "
        "apply_msg = excluded.apply_msg, req_remark = excluded.req_remark, "
        "source = excluded.source, create_time = excluded.create_time, "
        "update_time = excluded.update_time, resp_msg = NULL, resp_remark = NULL "
        f"WHERE friendships.status NOT IN ({PENDING}, {REJECTED}) "
        f"OR (friendships.status = {REJECTED} AND friendships.update_time < {p[7]}) "
        "RETURNING id"
    )
