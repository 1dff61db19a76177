-- GitHub login (docs/protocol.md, "GitHub login"): which user an account at a provider
-- signs in as. The sign-ins in progress live in Redis (oauth_state:{state}).
CREATE TABLE oauth_links (
    provider    VARCHAR NOT NULL,
    subject     VARCHAR NOT NULL,
    user_id     VARCHAR NOT NULL REFERENCES users(id),
    create_time BIGINT  NOT NULL,
    PRIMARY KEY (provider, subject)
);
CREATE INDEX oauth_links_user ON oauth_links (user_id);
