-- GitHub login (docs/protocol.md, "GitHub login"): which user an account at a provider
-- signs in as, and the sign-ins in progress (state -> PKCE verifier, single use, short TTL).
CREATE TABLE oauth_links (
    provider    TEXT    NOT NULL,
    subject     TEXT    NOT NULL,
    user_id     TEXT    NOT NULL REFERENCES users(id),
    create_time INTEGER NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX oauth_links_user ON oauth_links(user_id);
CREATE TABLE oauth_states (
    state      TEXT    PRIMARY KEY,
    value      TEXT    NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX oauth_states_expiry ON oauth_states(expires_at);
