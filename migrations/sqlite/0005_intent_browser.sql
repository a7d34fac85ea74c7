-- A diary's link intent is bound to the first browser that opens it: whoever learns the link
-- later (from a log, a forwarded message) cannot complete it in another browser.
ALTER TABLE link_intents ADD COLUMN browser_hash TEXT NOT NULL DEFAULT '';
