-- The provider core: clients, accounts, fosite's token tables, signing keys, browser sessions,
-- login requests and upstream flows, audit log. Times are RFC 3339 UTC text with nanoseconds.
CREATE TABLE clients (
    id                        TEXT PRIMARY KEY,
    name                      TEXT NOT NULL DEFAULT '',
    secret_hash               TEXT NOT NULL DEFAULT '',
    public                    INTEGER NOT NULL DEFAULT 0,
    redirect_uris             TEXT NOT NULL DEFAULT '[]',
    post_logout_redirect_uris TEXT NOT NULL DEFAULT '[]',
    grant_types               TEXT NOT NULL DEFAULT '[]',
    response_types            TEXT NOT NULL DEFAULT '[]',
    scopes                    TEXT NOT NULL DEFAULT '[]',
    audience                  TEXT NOT NULL DEFAULT '[]',
    id_token_alg              TEXT NOT NULL DEFAULT '',
    created_at                TIMESTAMP NOT NULL,
    updated_at                TIMESTAMP NOT NULL
);

CREATE TABLE accounts (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('esia', 'child', 'diary')),
    upstream     TEXT NOT NULL DEFAULT '',
    upstream_sub TEXT,
    family_name  TEXT NOT NULL DEFAULT '',
    given_name   TEXT NOT NULL DEFAULT '',
    middle_name  TEXT NOT NULL DEFAULT '',
    birthdate    TEXT NOT NULL DEFAULT '',
    snils_digest TEXT NOT NULL DEFAULT '',
    status       TEXT NOT NULL DEFAULT 'active',
    created_at   TIMESTAMP NOT NULL,
    updated_at   TIMESTAMP NOT NULL,
    UNIQUE (upstream, upstream_sub)
);

CREATE TABLE oauth2_code (
    signature    TEXT PRIMARY KEY,
    request_id   TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    subject      TEXT NOT NULL DEFAULT '',
    requested_at TIMESTAMP NOT NULL,
    expires_at   TIMESTAMP NOT NULL,
    request      TEXT NOT NULL,
    active       INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX oauth2_code_request_id ON oauth2_code (request_id);
CREATE INDEX oauth2_code_expires_at ON oauth2_code (expires_at);

CREATE TABLE oauth2_access (
    signature    TEXT PRIMARY KEY,
    request_id   TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    subject      TEXT NOT NULL DEFAULT '',
    requested_at TIMESTAMP NOT NULL,
    expires_at   TIMESTAMP NOT NULL,
    request      TEXT NOT NULL,
    active       INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX oauth2_access_request_id ON oauth2_access (request_id);
CREATE INDEX oauth2_access_expires_at ON oauth2_access (expires_at);

CREATE TABLE oauth2_pkce (
    signature    TEXT PRIMARY KEY,
    request_id   TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    subject      TEXT NOT NULL DEFAULT '',
    requested_at TIMESTAMP NOT NULL,
    expires_at   TIMESTAMP NOT NULL,
    request      TEXT NOT NULL,
    active       INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX oauth2_pkce_request_id ON oauth2_pkce (request_id);

CREATE TABLE oauth2_oidc (
    signature    TEXT PRIMARY KEY,
    request_id   TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    subject      TEXT NOT NULL DEFAULT '',
    requested_at TIMESTAMP NOT NULL,
    expires_at   TIMESTAMP NOT NULL,
    request      TEXT NOT NULL,
    active       INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX oauth2_oidc_request_id ON oauth2_oidc (request_id);

CREATE TABLE oauth2_refresh (
    signature        TEXT PRIMARY KEY,
    request_id       TEXT NOT NULL,
    client_id        TEXT NOT NULL,
    subject          TEXT NOT NULL DEFAULT '',
    requested_at     TIMESTAMP NOT NULL,
    expires_at       TIMESTAMP NOT NULL,
    request          TEXT NOT NULL,
    active           INTEGER NOT NULL DEFAULT 1,
    access_signature TEXT NOT NULL DEFAULT '',
    rotated_at       TIMESTAMP
);
CREATE INDEX oauth2_refresh_request_id ON oauth2_refresh (request_id);
CREATE INDEX oauth2_refresh_expires_at ON oauth2_refresh (expires_at);

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,
    private_enc  BLOB NOT NULL,
    public_jwk   TEXT NOT NULL,
    created_at   TIMESTAMP NOT NULL,
    not_before   TIMESTAMP NOT NULL,
    retired_at   TIMESTAMP,
    expires_at   TIMESTAMP
);

CREATE TABLE browser_sessions (
    id_hash     TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    auth_time   TIMESTAMP NOT NULL,
    amr         TEXT NOT NULL DEFAULT '[]',
    acr         TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMP NOT NULL,
    expires_at  TIMESTAMP NOT NULL
);
CREATE INDEX browser_sessions_expires_at ON browser_sessions (expires_at);

CREATE TABLE login_requests (
    id              TEXT PRIMARY KEY,
    authorize_query TEXT NOT NULL,
    browser_hash    TEXT NOT NULL,
    session_hash    TEXT NOT NULL DEFAULT '',
    created_at      TIMESTAMP NOT NULL,
    expires_at      TIMESTAMP NOT NULL
);
CREATE INDEX login_requests_expires_at ON login_requests (expires_at);

CREATE TABLE upstream_flows (
    state            TEXT PRIMARY KEY,
    connector        TEXT NOT NULL,
    login_request_id TEXT NOT NULL,
    browser_hash     TEXT NOT NULL,
    data             TEXT NOT NULL DEFAULT '',
    created_at       TIMESTAMP NOT NULL,
    expires_at       TIMESTAMP NOT NULL
);
CREATE INDEX upstream_flows_expires_at ON upstream_flows (expires_at);

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         TIMESTAMP NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL DEFAULT '',
    details    TEXT NOT NULL DEFAULT '{}'
);
