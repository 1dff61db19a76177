-- Devices: one row per login (docs/protocol.md, "Devices"). Each device is one refresh-token
-- family: refresh_jti is the jti of its one unspent refresh token; rotation replaces it,
-- and presenting any other refresh token of the device deletes the row (theft detection).
-- A device's access and refresh tokens carry its id (the did claim) and are refused once
-- the row is gone (remote logout, log out everywhere else, logout, password change).
CREATE TABLE devices (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    platform TEXT NOT NULL DEFAULT '',
    client TEXT NOT NULL DEFAULT '',
    user_agent TEXT NOT NULL DEFAULT '',
    address TEXT NOT NULL DEFAULT '',
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    refresh_jti TEXT NOT NULL
);
CREATE INDEX devices_user ON devices (user_id, last_seen);

-- Friendship read status: the receiver of a friend request read it as it stood at
-- read_until (the request's update_time then); the friend sync leaves it out until the
-- request changes again (renewed, answered).
CREATE TABLE friendship_reads (
    fs_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    read_until INTEGER NOT NULL
);
