-- One fingerprint (an HMAC keyed by the secret, never the secret) of each secret the database
-- was first used with. serve and every admin command compare theirs and refuse to write with
-- secrets that differ: a pepper or master key that changed makes every stored digest and key useless.
CREATE TABLE secret_fingerprints (
    name TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL
);
