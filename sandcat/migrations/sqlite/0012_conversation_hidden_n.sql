-- A hidden conversation comes back with the next message (docs/protocol.md, "Conversations"):
-- ``hidden_n`` is the conversation's count when the user hid it, NULL when it is not
-- hidden, and the conversation is listed as hidden only while its count is still that.
-- The message path writes nothing more. The rows hidden now stay hidden until their next
-- message.
ALTER TABLE conversation_states ADD COLUMN hidden_n INTEGER;
UPDATE conversation_states
SET hidden_n = COALESCE((SELECT c.n FROM conversations c WHERE c.id = conversation_id), 0)
WHERE hidden;
ALTER TABLE conversation_states DROP COLUMN hidden;
