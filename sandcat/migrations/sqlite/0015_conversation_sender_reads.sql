-- A one-to-one conversation keeps each side's own read mark: its count at that side's
-- newest message (sending reads one's conversation up to one's own message). The two ids
-- of the conversation's key in byte order are "lo" and "hi". The message writer updates
-- them in the conversation's own row, so a message writes one conversation row, not also
-- its sender's state; a user's read_n is the larger of this mark and their state's.
ALTER TABLE conversations ADD COLUMN lo_read_n INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN hi_read_n INTEGER NOT NULL DEFAULT 0;
