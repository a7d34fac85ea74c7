-- The provider core: clients, accounts, fosite's token tables, signing keys, browser sessions,
-- login requests and upstream flows, audit log.
CREATE TABLE clients (
    id                        TEXT PRIMARY KEY,
    name                      TEXT NOT NULL DEFAULT '',
    secret_hash               TEXT NOT NULL DEFAULT '',
    public                    BOOLEAN NOT NULL DEFAULT FALSE,
    redirect_uris             TEXT NOT NULL DEFAULT '[]',
    post_logout_redirect_uris TEXT NOT NULL DEFAULT '[]',
    grant_types               TEXT NOT NULL DEFAULT '[]',
    response_types            TEXT NOT NULL DEFAULT '[]',
    scopes                    TEXT NOT NULL DEFAULT '[]',
    audience                  TEXT NOT NULL DEFAULT '[]',
    id_token_alg              TEXT NOT NULL DEFAULT '',
    created_at                TIMESTAMPTZ NOT NULL,
    updated_at                TIMESTAMPTZ NOT NULL
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
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    UNIQUE (upstream, upstream_sub)
);

CREATE TABLE oauth2_code (
    signature        TEXT PRIMARY KEY,
    request_id       TEXT NOT NULL,
    client_id        TEXT NOT NULL,
    subject          TEXT NOT NULL DEFAULT '',
    requested_at     TIMESTAMPTZ NOT NULL,
    expires_at       TIMESTAMPTZ NOT NULL,
    request          TEXT NOT NULL,
    active           BOOLEAN NOT NULL DEFAULT TRUE
);
CREATE INDEX oauth2_code_request_id ON oauth2_code (request_id);
CREATE INDEX oauth2_code_expires_at ON oauth2_code (expires_at);

CREATE TABLE oauth2_access (LIKE oauth2_code INCLUDING ALL);
CREATE TABLE oauth2_pkce (LIKE oauth2_code INCLUDING ALL);
CREATE TABLE oauth2_oidc (LIKE oauth2_code INCLUDING ALL);
CREATE TABLE oauth2_refresh (LIKE oauth2_code INCLUDING ALL);
ALTER TABLE oauth2_refresh ADD COLUMN access_signature TEXT NOT NULL DEFAULT '';
ALTER TABLE oauth2_refresh ADD COLUMN rotated_at TIMESTAMPTZ;

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,
    private_enc  BYTEA NOT NULL,
    public_jwk   TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    not_before   TIMESTAMPTZ NOT NULL,
    retired_at   TIMESTAMPTZ,
    expires_at   TIMESTAMPTZ
);

CREATE TABLE browser_sessions (
    id_hash     TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    auth_time   TIMESTAMPTZ NOT NULL,
    amr         TEXT NOT NULL DEFAULT '[]',
    acr         TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX browser_sessions_expires_at ON browser_sessions (expires_at);

CREATE TABLE login_requests (
    id              TEXT PRIMARY KEY,
    authorize_query TEXT NOT NULL,
    browser_hash    TEXT NOT NULL,
    session_hash    TEXT NOT NULL DEFAULT '',
    created_at      TIMESTAMPTZ NOT NULL,
    expires_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX login_requests_expires_at ON login_requests (expires_at);

CREATE TABLE upstream_flows (
    state            TEXT PRIMARY KEY,
    connector        TEXT NOT NULL,
    login_request_id TEXT NOT NULL,
    browser_hash     TEXT NOT NULL,
    data             TEXT NOT NULL DEFAULT '',
    created_at       TIMESTAMPTZ NOT NULL,
    expires_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX upstream_flows_expires_at ON upstream_flows (expires_at);

CREATE TABLE audit_log (
    id         BIGSERIAL PRIMARY KEY,
    at         TIMESTAMPTZ NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL DEFAULT '',
    details    TEXT NOT NULL DEFAULT '{}'
);
