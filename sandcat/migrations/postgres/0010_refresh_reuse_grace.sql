-- Refresh-token reuse grace (docs/protocol.md, "Devices"): the device's previous refresh
-- jti and the time (ms) it was spent. Presented again within auth.refresh_reuse_grace_seconds
-- of rotated_at it is answered with the current jti (two tabs renewing at once, a retry
-- whose answer was lost) instead of logging the device out.
ALTER TABLE devices ADD COLUMN previous_jti TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN rotated_at BIGINT NOT NULL DEFAULT 0;
