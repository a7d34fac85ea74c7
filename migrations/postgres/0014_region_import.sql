-- Moving a region in: accounts known by their ESIA oid before their first login (made by
-- `links import`), and links of method imported.
ALTER TABLE accounts ADD COLUMN awaiting_login BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE links DROP CONSTRAINT IF EXISTS links_method_check;
ALTER TABLE links ADD CONSTRAINT links_method_check CHECK (method IN ('snils', 'invite', 'diary', 'admin', 'imported'));
-- The sub the diary saw (tokens.subject), computed when the logout is queued: a forgotten
-- account's ESIA oid is gone by the time the logout is sent.
ALTER TABLE logout_deliveries ADD COLUMN shown_subject TEXT NOT NULL DEFAULT '';
-- Settings the server runs with that the admin commands must follow (tokens.subject: the sub
-- a logout queued by `accounts forget` carries), recorded by serve at start.
CREATE TABLE settings (
    name        TEXT PRIMARY KEY,
    value       TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL
);
-- What a login looks like (Cyrillic а, е, о… read as Latin), unique: no two children's logins
-- read alike. Every login before this release is Latin, its own skeleton.
ALTER TABLE child_credentials ADD COLUMN login_skeleton TEXT NOT NULL DEFAULT '';
UPDATE child_credentials SET login_skeleton = login;
CREATE UNIQUE INDEX child_credentials_skeleton ON child_credentials (login_skeleton);
