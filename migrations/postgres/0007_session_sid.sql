-- A browser session's public id (OpenID Connect's sid): it goes into ID tokens, so that a
-- diary's logout request names the session to end, also when it comes from the diary's server.
ALTER TABLE browser_sessions ADD COLUMN sid TEXT NOT NULL DEFAULT '';
CREATE INDEX browser_sessions_sid ON browser_sessions (sid);
