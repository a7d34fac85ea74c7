-- The diaries' event feed (GET /api/v1/events). An event is written in the transaction of the
-- change it records, after that transaction took the events lock (pg_advisory_xact_lock), so
-- that ids are assigned in commit order and a reader following id > cursor misses none.
CREATE TABLE events (
    id         BIGSERIAL PRIMARY KEY,
    type       TEXT NOT NULL,
    at         TIMESTAMPTZ NOT NULL,
    student_id TEXT NOT NULL DEFAULT '',
    account_id TEXT NOT NULL DEFAULT '',
    data       TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_at ON events (at);

-- The highest event id removed by retention: a cursor below it has missed events (410).
CREATE TABLE events_pruned (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    through   BIGINT NOT NULL
);
INSERT INTO events_pruned (singleton, through) VALUES (TRUE, 0);
