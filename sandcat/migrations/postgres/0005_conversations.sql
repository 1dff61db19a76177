-- Server-side conversations (docs/protocol.md, "Conversations"), as in the embedded schema
-- (migrations/sqlite/0008_conversations.sql). One row per conversation, upserted by the
-- msg-server in the statement that appends its batch to the history: ``id`` is the group
-- id, or for a one-to-one conversation the pair key ``a:b`` of the two user ids in byte
-- order (COLLATE "C"); ``n`` counts its chat messages; ``last_*`` is the newest one.
CREATE TABLE conversations (
    id                VARCHAR PRIMARY KEY,
    n                 BIGINT NOT NULL,
    last_server_id    VARCHAR NOT NULL,
    last_sender       VARCHAR NOT NULL,
    last_content_type INT NOT NULL,
    last_content      BYTEA NOT NULL,
    last_time         BIGINT NOT NULL
);

-- One user's state in one conversation, written only on flag changes, reads, and for the
-- sender of a message (sending marks one's conversation read): unread = n - read_n.
CREATE TABLE conversation_states (
    user_id         VARCHAR NOT NULL,
    conversation_id VARCHAR NOT NULL,
    read_n          BIGINT NOT NULL DEFAULT 0,
    pinned          BOOLEAN NOT NULL DEFAULT FALSE,
    muted           BOOLEAN NOT NULL DEFAULT FALSE,
    hidden          BOOLEAN NOT NULL DEFAULT FALSE,
    update_time     BIGINT NOT NULL,
    PRIMARY KEY (user_id, conversation_id)
);
