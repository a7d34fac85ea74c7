-- Roster, links, invites, consents, attempt limits, diary link intents.
CREATE TABLE schools (
    id         TEXT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL
);

CREATE TABLE students (
    id           TEXT PRIMARY KEY,
    school_id    TEXT NOT NULL REFERENCES schools (id),
    class        TEXT NOT NULL DEFAULT '',
    family_name  TEXT NOT NULL DEFAULT '',
    given_name   TEXT NOT NULL DEFAULT '',
    middle_name  TEXT NOT NULL DEFAULT '',
    birthdate    TEXT NOT NULL DEFAULT '',
    snils_digest TEXT NOT NULL DEFAULT '',
    active       INTEGER NOT NULL DEFAULT 1,
    updated_at   TIMESTAMP NOT NULL
);
CREATE INDEX students_snils ON students (snils_digest) WHERE snils_digest <> '';
CREATE INDEX students_school_class ON students (school_id, class);

CREATE TABLE student_guardians (
    student_id   TEXT NOT NULL REFERENCES students (id) ON DELETE CASCADE,
    snils_digest TEXT NOT NULL,
    name         TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (student_id, snils_digest)
);
CREATE INDEX student_guardians_snils ON student_guardians (snils_digest);

CREATE TABLE links (
    id         TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    student_id TEXT NOT NULL REFERENCES students (id),
    relation   TEXT NOT NULL CHECK (relation IN ('parent', 'self')),
    method     TEXT NOT NULL CHECK (method IN ('snils', 'invite', 'diary', 'admin')),
    created_at TIMESTAMP NOT NULL,
    revoked_at TIMESTAMP
);
CREATE UNIQUE INDEX links_active ON links (account_id, student_id) WHERE revoked_at IS NULL;
CREATE INDEX links_student ON links (student_id);

CREATE TABLE invites (
    id          TEXT PRIMARY KEY,
    code_digest TEXT NOT NULL UNIQUE,
    student_id  TEXT NOT NULL REFERENCES students (id),
    role        TEXT NOT NULL CHECK (role IN ('parent', 'student')),
    created_by  TEXT NOT NULL DEFAULT '',
    created_at  TIMESTAMP NOT NULL,
    expires_at  TIMESTAMP NOT NULL,
    redeemed_by TEXT,
    redeemed_at TIMESTAMP,
    revoked_at  TIMESTAMP
);
CREATE INDEX invites_student ON invites (student_id, role);

CREATE TABLE attempt_limits (
    key          TEXT PRIMARY KEY,
    failures     INTEGER NOT NULL,
    window_start TIMESTAMP NOT NULL,
    locked_until TIMESTAMP
);

CREATE TABLE consents (
    account_id   TEXT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    client_id    TEXT NOT NULL,
    text_version TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    students     TEXT NOT NULL,
    granted_at   TIMESTAMP NOT NULL,
    PRIMARY KEY (account_id, client_id)
);

CREATE TABLE link_intents (
    id_hash     TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    student_ids TEXT NOT NULL,
    return_uri  TEXT NOT NULL DEFAULT '',
    relation    TEXT NOT NULL DEFAULT 'parent',
    created_at  TIMESTAMP NOT NULL,
    expires_at  TIMESTAMP NOT NULL
);

ALTER TABLE login_requests ADD COLUMN link_intent TEXT NOT NULL DEFAULT '';
ALTER TABLE login_requests ADD COLUMN student_id TEXT NOT NULL DEFAULT '';
ALTER TABLE login_requests ADD COLUMN consented INTEGER NOT NULL DEFAULT 0;
