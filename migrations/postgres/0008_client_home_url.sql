-- A diary's home page, listed on the broker's start page («/»): where a parent who opened the
-- broker's address from an invite slip goes on to.
ALTER TABLE clients ADD COLUMN home_url TEXT NOT NULL DEFAULT '';
