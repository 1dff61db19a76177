-- Sandcat embedded schema, part 2: friends, friend requests, groups and their members.
-- Enums are stored as the protocol's integers: FriendshipStatus Pending=0, Accepted=1,
-- Rejected=2, Blacked=3, Deleted=4; GroupMemberRole Owner=0, Admin=1, Member=2.

-- Friend requests: one row per (requester, target); a new request upserts it.
CREATE TABLE friendships (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL,      -- requester
    friend_id   TEXT NOT NULL,      -- target
    status      INTEGER NOT NULL DEFAULT 0,
    apply_msg   TEXT,
    req_remark  TEXT,
    resp_msg    TEXT,
    resp_remark TEXT,
    source      TEXT NOT NULL DEFAULT '',
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL,
    UNIQUE (user_id, friend_id)
);
CREATE INDEX friendships_target ON friendships(friend_id, update_time);

-- Accepted friendships, one row per direction (the owner's remark lives on the owner's row).
CREATE TABLE friends (
    user_id     TEXT NOT NULL,
    friend_id   TEXT NOT NULL,
    fs_id       TEXT NOT NULL,
    status      INTEGER NOT NULL DEFAULT 1,
    remark      TEXT,
    source      TEXT NOT NULL DEFAULT '',
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL,
    PRIMARY KEY (user_id, friend_id)
) WITHOUT ROWID;
CREATE INDEX friends_fs_id ON friends(fs_id);
CREATE INDEX friends_since ON friends(user_id, update_time);

CREATE TABLE groups (
    id           TEXT PRIMARY KEY,
    owner        TEXT NOT NULL,
    name         TEXT NOT NULL,
    avatar       TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    announcement TEXT NOT NULL DEFAULT '',
    create_time  INTEGER NOT NULL,
    update_time  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE group_members (
    group_id     TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    group_name   TEXT NOT NULL,     -- the member's user name when they joined
    group_remark TEXT,
    role         INTEGER NOT NULL DEFAULT 2,
    joined_at    INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
) WITHOUT ROWID;
CREATE INDEX group_members_user ON group_members(user_id);
