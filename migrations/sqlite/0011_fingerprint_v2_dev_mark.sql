-- Fingerprints are now SHA-256 over a label, the secret's name and the secret (v2), not an HMAC
-- keyed by the secret. The v1 ones are dropped: serve records v2 after it has decrypted the
-- signing keys (admin commands refuse a database in use with no fingerprint until then).
DELETE FROM secret_fingerprints WHERE fingerprint NOT LIKE 'v2:%';

-- What a database is: 'dev' marks one the dev server created (it seeds demo data and refuses a
-- database it did not create). Databases the dev server ran on before this migration carry its
-- demo relying party.
CREATE TABLE database_marks (
    name TEXT PRIMARY KEY,
    recorded_at TIMESTAMP NOT NULL
);
INSERT INTO database_marks (name, recorded_at)
    SELECT 'dev', CURRENT_TIMESTAMP FROM clients WHERE id = 'demo-diary';
