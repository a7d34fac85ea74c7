-- Moving a region in: accounts known by their ESIA oid before their first login (made by
-- `links import`), and links of method imported. SQLite cannot change a CHECK: the links
-- table is rebuilt (no table refers to it).
ALTER TABLE accounts ADD COLUMN awaiting_login BOOLEAN NOT NULL DEFAULT FALSE;
CREATE TABLE links_new (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    student_id TEXT NOT NULL REFERENCES students (id),
    relation   TEXT NOT NULL CHECK (relation IN ('parent', 'self')),
    method     TEXT NOT NULL CHECK (method IN ('snils', 'invite', 'diary', 'admin', 'imported')),
    created_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP
);
INSERT INTO links_new (id, account_id, student_id, relation, method, created_at, revoked_at)
    SELECT id, account_id, student_id, relation, method, created_at, revoked_at FROM links;
DROP TABLE links;
ALTER TABLE links_new RENAME TO links;
CREATE UNIQUE INDEX links_active ON links (account_id, student_id) WHERE revoked_at IS NULL;
CREATE INDEX links_student ON links (student_id);
-- The sub the diary saw (tokens.subject), computed when the logout is queued: a forgotten
-- account's ESIA oid is gone by the time the logout is sent.
ALTER TABLE logout_deliveries ADD COLUMN shown_subject TEXT NOT NULL DEFAULT '';
-- Settings the server runs with that the admin commands must follow (tokens.subject: the sub
-- a logout queued by `accounts forget` carries), recorded by serve at start.
CREATE TABLE settings (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    recorded_at TIMESTAMP NOT NULL
);
-- What a login looks like (Cyrillic а, е, о… read as Latin), unique: no two children's logins
-- read alike. Every login before this release is Latin, its own skeleton.
ALTER TABLE child_credentials ADD COLUMN login_skeleton TEXT NOT NULL DEFAULT '';
UPDATE child_credentials SET login_skeleton = login;
CREATE UNIQUE INDEX child_credentials_skeleton ON child_credentials (login_skeleton);
