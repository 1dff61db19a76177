-- Server-side conversations (docs/protocol.md, "Conversations"). One row per conversation,
-- upserted once per stored batch by the message writer: ``id`` is the group id, or for a
-- one-to-one conversation the pair key ``a:b`` of the two user ids in byte order (nanoids
-- never hold ':'); ``n`` counts its chat messages; ``last_*`` is the newest one.
CREATE TABLE conversations (
    id                TEXT PRIMARY KEY,
    n                 INTEGER NOT NULL,
    last_server_id    TEXT NOT NULL,
    last_sender       TEXT NOT NULL,
    last_content_type INTEGER NOT NULL,
    last_content      BLOB NOT NULL,
    last_time         INTEGER NOT NULL
) WITHOUT ROWID;

-- One user's state in one conversation, written only on flag changes, reads, and for the
-- sender of a message (sending marks one's conversation read): unread = n - read_n.
CREATE TABLE conversation_states (
    user_id         TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    read_n          INTEGER NOT NULL DEFAULT 0,
    pinned          INTEGER NOT NULL DEFAULT 0,
    muted           INTEGER NOT NULL DEFAULT 0,
    hidden          INTEGER NOT NULL DEFAULT 0,
    update_time     INTEGER NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
) WITHOUT ROWID;
