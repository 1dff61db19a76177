-- A hidden conversation comes back with the next message, as in the embedded schema
-- (sqlite/0012_conversation_hidden_n.sql): ``hidden_n`` is the conversation's count when the
-- user hid it, NULL when it is not hidden; it is listed as hidden only while its count is
-- still that. The rows hidden now stay hidden until their next message.
ALTER TABLE conversation_states ADD COLUMN hidden_n BIGINT;
UPDATE conversation_states AS s
SET hidden_n = COALESCE((SELECT c.n FROM conversations c WHERE c.id = s.conversation_id), 0)
WHERE s.hidden;
ALTER TABLE conversation_states DROP COLUMN hidden;
