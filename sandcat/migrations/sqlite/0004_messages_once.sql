-- Every stored message is written once, in append order, and the inbox holds only thin
-- (owner, box, seq) -> message rows. Before, each owner's copy carried the whole message
-- (a group of 1,000 wrote the content 1,001 times) and a third copy went to `history`.
-- Every dirty page is copied into the WAL at commit, so bytes written per message are the
-- embedded path's main cost.
-- * `messages`: the message, its sender's send_seq (the `send_seq` of a received copy of a
--   one-to-one message; 0 for groups), `in_history` for chat messages (the `history` view),
--   `idempotent` when it answers resends of (send_id, local_id) for 24 h (by send_time), so
--   the separate idempotency table and its purge go.
-- * `inbox`: box 0 = received (seq = the owner's receive seq), box 1 = sent (seq = send_seq).
CREATE TABLE messages (
    id             INTEGER PRIMARY KEY,
    send_id        TEXT NOT NULL,
    receiver_id    TEXT NOT NULL,
    local_id       TEXT NOT NULL,
    server_id      TEXT NOT NULL,
    create_time    INTEGER NOT NULL,
    send_time      INTEGER NOT NULL,
    msg_type       INTEGER NOT NULL,
    content_type   INTEGER NOT NULL,
    content        BLOB NOT NULL,
    group_id       TEXT NOT NULL DEFAULT '',
    related_msg_id TEXT,
    platform       INTEGER NOT NULL DEFAULT 0,
    send_seq       INTEGER NOT NULL DEFAULT 0,
    in_history     INTEGER NOT NULL DEFAULT 0,
    idempotent     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX messages_idempotency ON messages(send_id, local_id) WHERE idempotent = 1;

INSERT INTO messages (send_id, receiver_id, local_id, server_id, create_time, send_time,
    msg_type, content_type, content, group_id, related_msg_id, platform, send_seq, in_history,
    idempotent)
SELECT send_id, receiver_id, local_id, server_id, create_time, send_time, msg_type,
    content_type, content, group_id, related_msg_id,
    COALESCE((SELECT platform FROM history AS h WHERE h.server_id = inbox.server_id), 0),
    MAX(CASE WHEN box = 1 THEN seq ELSE other_seq END),
    server_id IN (SELECT server_id FROM history),
    EXISTS (SELECT 1 FROM idempotency AS k
            WHERE k.send_id = inbox.send_id AND k.server_id = inbox.server_id)
FROM inbox GROUP BY server_id ORDER BY MIN(send_time), server_id;
CREATE INDEX messages_server_id_tmp ON messages(server_id);

CREATE TABLE inbox_thin (
    owner_id   TEXT NOT NULL,
    box        INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    message_id INTEGER NOT NULL,
    is_read    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (owner_id, box, seq)
) WITHOUT ROWID;
INSERT INTO inbox_thin SELECT i.owner_id, i.box, i.seq, m.id, i.is_read
FROM inbox AS i JOIN messages AS m ON m.server_id = i.server_id;
DROP INDEX messages_server_id_tmp;
DROP TABLE inbox;
ALTER TABLE inbox_thin RENAME TO inbox;
DROP TABLE history;
DROP TABLE idempotency;
CREATE VIEW history AS
SELECT send_id, receiver_id, local_id, server_id, send_time, msg_type, content_type, content,
    platform, group_id FROM messages WHERE in_history = 1;
