-- Fingerprints are now recorded as SHA-256 over a label, the secret's name and the secret (v2),
-- not an HMAC keyed by the secret (v1). The v1 ones stay: they still identify the secrets (the
-- broker checks them as v1), and a replica not yet upgraded keeps working with them.

-- What a database is: 'dev' marks one the dev server created (it seeds demo data and refuses a
-- database it did not create). Databases the dev server ran on before this migration carry its
-- demo relying party.
CREATE TABLE database_marks (
    name TEXT PRIMARY KEY,
    recorded_at TIMESTAMPTZ NOT NULL
);
INSERT INTO database_marks (name, recorded_at)
    SELECT 'dev', CURRENT_TIMESTAMP FROM clients WHERE id = 'demo-diary';
