package storage

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// AttemptLimit counts failures of one key (an account, an IP, a login) in a window and locks
// the key out after Max failures. The state is in the database, so it holds across replicas.
type AttemptLimit struct {
	Max     int
	Window  time.Duration
	Lockout time.Duration
}

type limitRow struct {
	Key         string     `db:"key"`
	Failures    int        `db:"failures"`
	WindowStart time.Time  `db:"window_start"`
	LockedUntil *time.Time `db:"locked_until"`
}

// LockedUntil returns when key's lock-out ends, or the zero time when it is not locked.
func (s *Store) LockedUntil(ctx context.Context, key string) (time.Time, error) {
	var r limitRow
	err := s.get(ctx, &r, `SELECT key, failures, window_start, locked_until FROM attempt_limits WHERE key = ?`, key)
	if errors.Is(err, ErrNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("read attempt limit: %w", err)
	}
	if r.LockedUntil != nil && r.LockedUntil.After(s.clock()) {
		return r.LockedUntil.UTC(), nil
	}
	return time.Time{}, nil
}

// RecordFailure counts a failure of key and returns the lock-out end when this failure locks it.
func (s *Store) RecordFailure(ctx context.Context, key string, l AttemptLimit) (time.Time, error) {
	var until time.Time
	err := s.InTx(ctx, func(ctx context.Context) error {
		now := s.clock()
		lock := ""
		if s.dialect == Postgres {
			lock = " FOR UPDATE"
		}
		var r limitRow
		err := s.get(ctx, &r, `SELECT key, failures, window_start, locked_until FROM attempt_limits WHERE key = ?`+lock, key)
		switch {
		case errors.Is(err, ErrNotFound):
			r = limitRow{Key: key, WindowStart: now}
			if _, err := s.exec(ctx, `INSERT INTO attempt_limits (key, failures, window_start) VALUES (?, 0, ?) ON CONFLICT (key) DO NOTHING`, key, now); err != nil {
				return fmt.Errorf("record failure: %w", err)
			}
			if s.dialect == Postgres {
				if err := s.get(ctx, &r, `SELECT key, failures, window_start, locked_until FROM attempt_limits WHERE key = ? FOR UPDATE`, key); err != nil {
					return fmt.Errorf("record failure: %w", err)
				}
			}
		case err != nil:
			return fmt.Errorf("record failure: %w", err)
		}
		if now.Sub(r.WindowStart.UTC()) > l.Window {
			r.Failures, r.WindowStart = 0, now
		}
		r.Failures++
		var lockedUntil *time.Time
		if r.Failures >= l.Max {
			t := now.Add(l.Lockout)
			lockedUntil, until = &t, t
			r.Failures, r.WindowStart = 0, now
		}
		_, err = s.exec(ctx, `UPDATE attempt_limits SET failures = ?, window_start = ?, locked_until = ? WHERE key = ?`, r.Failures, r.WindowStart, lockedUntil, key)
		if err != nil {
			return fmt.Errorf("record failure: %w", err)
		}
		return nil
	})
	return until, err
}

// ClearFailures forgets key's failures after a success.
func (s *Store) ClearFailures(ctx context.Context, key string) error {
	if _, err := s.exec(ctx, `DELETE FROM attempt_limits WHERE key = ? AND (locked_until IS NULL OR locked_until <= ?)`, key, s.clock()); err != nil {
		return fmt.Errorf("clear failures: %w", err)
	}
	return nil
}

// Hit counts one request of key in a fixed window and returns the count so far and when the
// window ends. One statement, so concurrent replicas count together.
func (s *Store) Hit(ctx context.Context, key string, window time.Duration) (int, time.Time, error) {
	now := s.clock()
	cutoff := now.Add(-window)
	var row struct {
		Count       int       `db:"count"`
		WindowStart time.Time `db:"window_start"`
	}
	err := s.get(ctx, &row, `INSERT INTO rate_buckets (key, window_start, count) VALUES (?, ?, 1)
		ON CONFLICT (key) DO UPDATE SET
			count = CASE WHEN rate_buckets.window_start <= ? THEN 1 ELSE rate_buckets.count + 1 END,
			window_start = CASE WHEN rate_buckets.window_start <= ? THEN ? ELSE rate_buckets.window_start END
		RETURNING count, window_start`, key, now, cutoff, cutoff, now)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("rate limit %s: %w", key, err)
	}
	return row.Count, row.WindowStart.UTC().Add(window), nil
}
