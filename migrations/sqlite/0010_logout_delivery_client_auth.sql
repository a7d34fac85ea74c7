-- OpenID Connect Back-Channel and Front-Channel Logout: where a diary receives logouts.
ALTER TABLE clients ADD COLUMN backchannel_logout_uri TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN frontchannel_logout_uri TEXT NOT NULL DEFAULT '';
-- How the client authenticates at the token, introspection and revocation endpoints
-- (client_secret_basic, client_secret_post, private_key_jwt, none; '' = basic or post), and
-- for private_key_jwt its public keys (a JWK Set).
ALTER TABLE clients ADD COLUMN token_endpoint_auth_method TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN jwks TEXT NOT NULL DEFAULT '';
-- RFC 9126: the client may start an authorization only with a pushed request.
ALTER TABLE clients ADD COLUMN require_par BOOLEAN NOT NULL DEFAULT FALSE;

-- The durable queue of back-channel logout tokens: a row per diary and ended session (sid) or
-- person (sub only), written in the transaction that ends the session, deleted once the diary
-- answered 200 (or after the delivery window). The token itself is signed at each attempt.
CREATE TABLE logout_deliveries (
    id              TEXT PRIMARY KEY,
    client_id       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    sid             TEXT NOT NULL DEFAULT '',
    created_at      TIMESTAMP NOT NULL,
    next_attempt_at TIMESTAMP NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX logout_deliveries_due ON logout_deliveries (next_attempt_at);

-- The jti of client assertions (private_key_jwt) seen, until they expire: each is used once.
CREATE TABLE client_assertions (
    jti_hash   TEXT PRIMARY KEY,
    expires_at TIMESTAMP NOT NULL
);
CREATE INDEX client_assertions_expires_at ON client_assertions (expires_at);

-- Pushed authorization requests (RFC 9126): the request a client pushed, by the digest of its
-- request_uri, until it is used once or expires.
CREATE TABLE oauth2_par (
    signature    TEXT PRIMARY KEY,
    client_id    TEXT NOT NULL,
    expires_at   TIMESTAMP NOT NULL,
    request      TEXT NOT NULL
);
CREATE INDEX oauth2_par_expires_at ON oauth2_par (expires_at);
