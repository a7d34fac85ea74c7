-- Sub-accounts for children under 14, and activation keys for the mobile app.
CREATE TABLE child_credentials (
    account_id    TEXT PRIMARY KEY REFERENCES accounts (id) ON DELETE CASCADE,
    student_id    TEXT NOT NULL UNIQUE REFERENCES students (id),
    login         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_by    TEXT NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE activation_keys (
    id           TEXT PRIMARY KEY,
    key_digest   TEXT NOT NULL UNIQUE,
    account_id   TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    client_id    TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    used_at      TIMESTAMPTZ,
    request_id   TEXT NOT NULL DEFAULT '',
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX activation_keys_account ON activation_keys (account_id);
