-- Which diaries a browser session gave codes to: a logout of that session is told to exactly
-- those (back-channel and front-channel), children's sessions included, who give no consent.
CREATE TABLE session_clients (
    account_id TEXT NOT NULL,
    sid        TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (account_id, sid, client_id)
);
CREATE INDEX session_clients_expires ON session_clients (expires_at);
