package storage_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/storage/storagetest"
)

func TestConformance(t *testing.T) {
	for name, open := range storagetest.Dialects() {
		t.Run(name, func(t *testing.T) {
			storagetest.Run(t, open)
		})
	}
}

// TestDriverErrorsByCode: real unique violations of both dialects are told by their codes; a
// syntax error is neither a violation nor an outage.
func TestDriverErrorsByCode(t *testing.T) {
	ctx := context.Background()
	for name, open := range storagetest.Dialects() {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			for _, q := range []string{`CREATE TABLE errclass (k TEXT PRIMARY KEY, u TEXT UNIQUE)`, `INSERT INTO errclass (k, u) VALUES ('a', 'x')`} {
				if err := s.ExecForTest(ctx, q); err != nil {
					t.Fatal(err)
				}
			}
			for _, q := range []string{`INSERT INTO errclass (k, u) VALUES ('a', 'y')`, `INSERT INTO errclass (k, u) VALUES ('b', 'x')`} {
				if err := s.ExecForTest(ctx, q); !storage.IsUniqueViolation(err) || storage.IsUnavailable(err) {
					t.Errorf("%s: %v not told as a unique violation", q, err)
				}
			}
			if err := s.ExecForTest(ctx, `SELEKT 1`); err == nil || storage.IsUniqueViolation(err) || storage.IsUnavailable(err) {
				t.Errorf("a syntax error (%v) told as a violation or an outage", err)
			}
		})
	}
}

// TestReserveWhileSuccessesRefund: 50 attempts on one key at once, each refunded by its success
// as it ends: a success may delete the key's row between another's insert and its lock, and the
// reservation must then make the row again instead of failing.
func TestReserveWhileSuccessesRefund(t *testing.T) {
	ctx := context.Background()
	for name, open := range storagetest.Dialects() {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			key := storage.LimitKey{Key: "child:login:max", Limit: storage.AttemptLimit{Max: 1000, Window: time.Hour, Lockout: time.Minute}}
			errs := make(chan error, 50)
			for range 50 {
				go func() {
					for range 5 {
						if until, err := s.ReserveAttempt(ctx, key); err != nil || !until.IsZero() {
							errs <- fmt.Errorf("reserve: %v %v", until, err)
							return
						}
						if err := s.Succeeded(ctx, key.Key); err != nil {
							errs <- err
							return
						}
					}
					errs <- nil
				}()
			}
			for range 50 {
				if err := <-errs; err != nil {
					t.Error(err)
				}
			}
		})
	}
}
