package storage

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// AttemptLimit counts attempts of one key (an account, an IP, a login) in a window and locks
// the key out when more than Max are made. The state is in the database, so it holds across
// replicas.
type AttemptLimit struct {
	Max     int
	Window  time.Duration
	Lockout time.Duration
}

// LimitKey is one key an attempt counts against, with its limit.
type LimitKey struct {
	Key   string
	Limit AttemptLimit
}

type limitRow struct {
	Key         string     `db:"key"`
	Failures    int        `db:"failures"`
	WindowStart time.Time  `db:"window_start"`
	LockedUntil *time.Time `db:"locked_until"`
}

// ReserveAttempt spends one attempt of every key before a secret is checked, in one
// transaction with the keys' rows locked, so that concurrent attempts are counted one by one
// and no more than Max of a key are ever checked in its window. It returns the zero time when
// the attempt may go ahead, or when the lock-out of the keys ends: a key already locked, or
// one whose limit this attempt would pass (which locks it now). A refused attempt changes no
// counter; a lock only ever extends. The attempt stays counted unless Succeeded refunds it.
func (s *Store) ReserveAttempt(ctx context.Context, keys ...LimitKey) (time.Time, error) {
	var until time.Time
	err := s.InTx(ctx, func(ctx context.Context) error {
		now := s.clock()
		rows := make([]limitRow, len(keys))
		for i, k := range keys {
			r, err := s.lockLimitRow(ctx, k.Key, now)
			if err != nil {
				return err
			}
			if r.LockedUntil != nil && r.LockedUntil.After(now) && r.LockedUntil.After(until) {
				until = r.LockedUntil.UTC()
			}
			rows[i] = r
		}
		if !until.IsZero() {
			return nil
		}
		for i, k := range keys {
			r := &rows[i]
			if now.Sub(r.WindowStart.UTC()) >= k.Limit.Window {
				r.Failures, r.WindowStart = 0, now
			}
			if r.Failures+1 > k.Limit.Max {
				if t := now.Add(k.Limit.Lockout); t.After(until) {
					until = t
				}
			}
		}
		if !until.IsZero() {
			// Over the limit: lock the keys that are spent, count nothing.
			for i, k := range keys {
				r := rows[i]
				if r.Failures+1 <= k.Limit.Max {
					continue
				}
				if _, err := s.exec(ctx, `UPDATE attempt_limits SET failures = 0, window_start = ?, locked_until = ? WHERE key = ?`, now, now.Add(k.Limit.Lockout), k.Key); err != nil {
					return fmt.Errorf("lock attempts: %w", err)
				}
			}
			return nil
		}
		for i, k := range keys {
			r := rows[i]
			if _, err := s.exec(ctx, `UPDATE attempt_limits SET failures = ?, window_start = ? WHERE key = ?`, r.Failures+1, r.WindowStart, k.Key); err != nil {
				return fmt.Errorf("reserve attempt: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return time.Time{}, err
	}
	return until, nil
}

// lockLimitRow returns key's row, created when missing, locked for this transaction, in one
// statement: an upsert that always writes the row takes its lock on PostgreSQL (SQLite's
// transactions hold the write lock from BEGIN), and makes the row again should a success delete
// it meanwhile (Succeeded, in its own transaction) — an insert then a SELECT … FOR UPDATE found
// nothing in that gap, and the attempt failed.
func (s *Store) lockLimitRow(ctx context.Context, key string, now time.Time) (limitRow, error) {
	var r limitRow
	err := s.get(ctx, &r, `INSERT INTO attempt_limits (key, failures, window_start) VALUES (?, 0, ?)
		ON CONFLICT (key) DO UPDATE SET key = excluded.key
		RETURNING key, failures, window_start, locked_until`, key, now)
	if err != nil {
		return limitRow{}, fmt.Errorf("reserve attempt: %w", err)
	}
	return r, nil
}

// Failed records that the secret checked under a reservation was wrong: each key whose
// attempts are spent (Max reserved in its window) is locked now, so that the failure that uses
// up the last attempt already says so. It returns when the lock-out ends, or the zero time.
func (s *Store) Failed(ctx context.Context, keys ...LimitKey) (time.Time, error) {
	var until time.Time
	now := s.clock()
	for _, k := range keys {
		t := now.Add(k.Limit.Lockout)
		res, err := s.exec(ctx, `UPDATE attempt_limits SET failures = 0, window_start = ?, locked_until = ?
			WHERE key = ? AND failures >= ? AND window_start > ? AND (locked_until IS NULL OR locked_until < ?)`,
			now, t, k.Key, k.Limit.Max, now.Add(-k.Limit.Window), t)
		if err != nil {
			return time.Time{}, fmt.Errorf("record failed attempt: %w", err)
		}
		if affected(res) > 0 && t.After(until) {
			until = t
		}
	}
	return until, nil
}

// Succeeded refunds the attempt reserved for key after the secret proved right: its counter
// starts again, unless the key is locked (a lock is never lifted early).
func (s *Store) Succeeded(ctx context.Context, key string) error {
	if _, err := s.exec(ctx, `DELETE FROM attempt_limits WHERE key = ? AND (locked_until IS NULL OR locked_until <= ?)`, key, s.clock()); err != nil {
		return fmt.Errorf("clear attempts: %w", err)
	}
	return nil
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
