-- The diaries' event feed (GET /api/v1/events). An event is written in the transaction of the
-- change it records; SQLite has one writer at a time, so ids follow commit order.
CREATE TABLE events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    type       TEXT NOT NULL,
    at         TIMESTAMP NOT NULL,
    student_id TEXT NOT NULL DEFAULT '',
    account_id TEXT NOT NULL DEFAULT '',
    data       TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX events_at ON events (at);

-- The highest event id removed by retention: a cursor below it has missed events (410).
CREATE TABLE events_pruned (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    through   INTEGER NOT NULL
);
INSERT INTO events_pruned (singleton, through) VALUES (TRUE, 0);
