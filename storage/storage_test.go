package storage_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/storage/storagetest"
)

func TestConformance(t *testing.T) {
	for name, open := range storagetest.Dialects() {
		t.Run(name, func(t *testing.T) {
			runConformance(t, open)
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

// TestConformanceReachesEveryMethod: every exported method of *storage.Store is called by the
// storage package's own tests (the conformance suite runs them on both dialects), not only
// through the broker's tests.
func TestConformanceReachesEveryMethod(t *testing.T) {
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	var src strings.Builder
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src.Write(b)
	}
	typ := reflect.TypeOf(&storage.Store{})
	for i := range typ.NumMethod() {
		name := typ.Method(i).Name
		if strings.HasSuffix(name, "ForTest") || name == "PreparedCount" || name == "SetPreparedHook" {
			continue // test hooks (export_test.go)
		}
		if !strings.Contains(src.String(), "."+name+"(") {
			t.Errorf("(*storage.Store).%s is not called by the storage tests", name)
		}
	}
}
