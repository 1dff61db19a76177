-- Sandcat embedded schema: users, sequences, inbox, history, idempotency keys, codes.
CREATE TABLE users (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    account     TEXT NOT NULL UNIQUE,
    password    TEXT NOT NULL,
    salt        TEXT NOT NULL,
    signature   TEXT NOT NULL DEFAULT '',
    avatar      TEXT NOT NULL,
    gender      TEXT NOT NULL DEFAULT '',
    age         INTEGER NOT NULL DEFAULT 0,
    phone       TEXT,
    email       TEXT,
    address     TEXT,
    region      TEXT,
    birthday    INTEGER,
    create_time INTEGER NOT NULL,
    update_time INTEGER NOT NULL,
    is_delete   INTEGER NOT NULL DEFAULT 0,
    -- tokens issued before this time (ms) are refused: DELETE /user/logout ends all sessions
    tokens_valid_after INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX users_email ON users(email) WHERE email IS NOT NULL;
CREATE INDEX users_phone ON users(phone) WHERE phone IS NOT NULL;

-- Highest receive / send seq issued per user (updated in the same transaction as the inbox).
CREATE TABLE sequence (
    user_id      TEXT PRIMARY KEY,
    rec_max_seq  INTEGER NOT NULL DEFAULT 0,
    send_max_seq INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

-- One copy per owner: box 0 = received (seq = receive seq), box 1 = sent (seq = send_seq).
CREATE TABLE inbox (
    owner_id       TEXT NOT NULL,
    box            INTEGER NOT NULL,
    seq            INTEGER NOT NULL,
    other_seq      INTEGER NOT NULL DEFAULT 0,
    send_id        TEXT NOT NULL,
    receiver_id    TEXT NOT NULL,
    local_id       TEXT NOT NULL,
    server_id      TEXT NOT NULL,
    create_time    INTEGER NOT NULL,
    send_time      INTEGER NOT NULL,
    msg_type       INTEGER NOT NULL,
    content_type   INTEGER NOT NULL,
    content        BLOB NOT NULL,
    is_read        INTEGER NOT NULL DEFAULT 0,
    group_id       TEXT NOT NULL DEFAULT '',
    related_msg_id TEXT,
    PRIMARY KEY (owner_id, box, seq)
) WITHOUT ROWID;
CREATE INDEX inbox_send_time ON inbox(send_time);

-- Every stored chat message (one-to-one and group), once.
CREATE TABLE history (
    send_id      TEXT NOT NULL,
    receiver_id  TEXT NOT NULL,
    local_id     TEXT NOT NULL,
    server_id    TEXT NOT NULL,
    send_time    INTEGER NOT NULL,
    msg_type     INTEGER NOT NULL,
    content_type INTEGER NOT NULL,
    content      BLOB NOT NULL,
    platform     INTEGER NOT NULL,
    group_id     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (send_id, server_id, send_time)
) WITHOUT ROWID;

-- (send_id, local_id) -> the original ack, kept 24 h.
CREATE TABLE idempotency (
    send_id    TEXT NOT NULL,
    local_id   TEXT NOT NULL,
    server_id  TEXT NOT NULL,
    send_time  INTEGER NOT NULL,
    send_seq   INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (send_id, local_id)
) WITHOUT ROWID;
CREATE INDEX idempotency_created ON idempotency(created_at);

-- E-mail codes: one per address, own expiry, single use.
CREATE TABLE codes (
    email      TEXT PRIMARY KEY,
    code       TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
