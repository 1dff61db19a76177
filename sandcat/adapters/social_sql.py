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
GROUP_COLUMNS = "id, owner, name, avatar, description, announcement, create_time, update_time"
#: Members of one group; the caller appends the group id placeholder of its dialect.
MEMBER_SELECT = (
    "SELECT u.age, m.group_id, m.user_id, u.name, u.avatar, m.joined_at, u.region, u.gender, "
    "m.group_remark, u.signature, m.role "
    "FROM group_members m JOIN users u ON u.id = m.user_id WHERE m.group_id = "
)
