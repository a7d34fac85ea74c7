-- Fixed-window request counters per key (route and IP), shared by every replica.
CREATE TABLE rate_buckets (
    key          TEXT PRIMARY KEY,
    window_start TIMESTAMP NOT NULL,
    count        INTEGER NOT NULL
);
