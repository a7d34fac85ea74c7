package storage_test

import (
	"context"
	"testing"

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
