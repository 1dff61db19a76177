-- Sandcat distributed schema (PostgreSQL): users, sequence marks, friends, groups,
-- idempotency keys and the monthly-partitioned message history.
-- Enums are stored as the protocol's integers, as in the embedded schema
-- (migrations/sqlite/*.sql): FriendshipStatus Pending=0, Accepted=1, Rejected=2, Blacked=3,
-- Deleted=4; GroupMemberRole Owner=0, Admin=1, Member=2.

CREATE TABLE users (
    id                 VARCHAR PRIMARY KEY,
    name               VARCHAR NOT NULL,
    account            VARCHAR NOT NULL UNIQUE,
    password           VARCHAR NOT NULL,
    salt               VARCHAR NOT NULL,
    signature          VARCHAR(1024) NOT NULL DEFAULT '',
    avatar             VARCHAR NOT NULL,
    gender             VARCHAR NOT NULL DEFAULT '',
    age                INT NOT NULL DEFAULT 0,
    phone              VARCHAR(20),
    email              VARCHAR(64),
    address            VARCHAR(1024),
    region             VARCHAR(1024),
    birthday           BIGINT,
    create_time        BIGINT NOT NULL,
    update_time        BIGINT NOT NULL,
    is_delete          BOOLEAN NOT NULL DEFAULT FALSE,
    -- tokens issued before this time (ms) are refused: DELETE /user/logout ends all sessions
    tokens_valid_after BIGINT NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX users_email ON users (email) WHERE email IS NOT NULL;
CREATE INDEX users_phone ON users (phone) WHERE phone IS NOT NULL;

-- Durable segment marks behind the Redis counters (docs/distributed.md).
CREATE TABLE sequence (
    user_id      VARCHAR PRIMARY KEY,
    rec_max_seq  BIGINT NOT NULL DEFAULT 0,
    send_max_seq BIGINT NOT NULL DEFAULT 0
);

-- Friend requests: one row per (requester, target); a new request upserts it.
CREATE TABLE friendships (
    id          VARCHAR PRIMARY KEY,
    user_id     VARCHAR NOT NULL,   -- requester
    friend_id   VARCHAR NOT NULL,   -- target
    status      SMALLINT NOT NULL DEFAULT 0 CHECK (status BETWEEN 0 AND 4),
    apply_msg   VARCHAR,
    req_remark  VARCHAR,
    resp_msg    VARCHAR,
    resp_remark VARCHAR,
    source      VARCHAR NOT NULL DEFAULT '',
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    UNIQUE (user_id, friend_id)
);
CREATE INDEX friendships_target ON friendships (friend_id, update_time);

-- Accepted friendships, one row per direction (the owner's remark lives on the owner's row).
CREATE TABLE friends (
    user_id     VARCHAR NOT NULL,
    friend_id   VARCHAR NOT NULL,
    fs_id       VARCHAR NOT NULL,
    status      SMALLINT NOT NULL DEFAULT 1 CHECK (status BETWEEN 0 AND 4),
    remark      VARCHAR,
    source      VARCHAR NOT NULL DEFAULT '',
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    PRIMARY KEY (user_id, friend_id)
);
CREATE INDEX friends_fs_id ON friends (fs_id);
CREATE INDEX friends_since ON friends (user_id, update_time);

CREATE TABLE groups (
    id           VARCHAR PRIMARY KEY,
    owner        VARCHAR(256) NOT NULL,
    name         VARCHAR(256) NOT NULL,
    avatar       TEXT NOT NULL,
    description  TEXT NOT NULL DEFAULT '',
    announcement TEXT NOT NULL DEFAULT '',
    create_time  BIGINT NOT NULL,
    update_time  BIGINT NOT NULL
);

CREATE TABLE group_members (
    group_id     VARCHAR NOT NULL,
    user_id      VARCHAR NOT NULL,
    group_name   VARCHAR NOT NULL,  -- the member's user name when they joined
    group_remark VARCHAR,
    role         SMALLINT NOT NULL DEFAULT 2 CHECK (role BETWEEN 0 AND 2),
    joined_at    BIGINT NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members (user_id);

-- (send_id, local_id) -> the original ack, kept 24 h.
CREATE TABLE idempotency (
    send_id    VARCHAR NOT NULL,
    local_id   VARCHAR NOT NULL,
    server_id  VARCHAR NOT NULL,
    send_time  BIGINT NOT NULL,
    send_seq   BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (send_id, local_id)
);
CREATE INDEX idempotency_created ON idempotency (created_at);

-- Every stored chat message (one-to-one and group), once. Monthly range partitions
-- messages_YYYYMM over send_time (ms, UTC months) are created ahead by the scheduled
-- job (sandcat/jobs/partitions.py); the default partition catches everything else, so
-- no insert can fail.
CREATE TABLE messages (
    send_id      VARCHAR NOT NULL,
    receiver_id  VARCHAR NOT NULL,
    local_id     VARCHAR NOT NULL,
    server_id    VARCHAR NOT NULL,
    send_time    BIGINT NOT NULL,
    msg_type     INT NOT NULL,
    content_type INT NOT NULL,
    content      BYTEA NOT NULL,
    platform     INT NOT NULL,
    group_id     VARCHAR NOT NULL DEFAULT '',
    PRIMARY KEY (send_id, server_id, send_time)
) PARTITION BY RANGE (send_time);
CREATE TABLE messages_default PARTITION OF messages DEFAULT;
