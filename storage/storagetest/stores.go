// Package storagetest gives tests a throw-away store of each dialect (PostgreSQL, SQLite). The
// storage conformance suite itself is in storage's own tests.
package storagetest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	_ "github.com/lib/pq" // PostgreSQL driver

	"github.com/esia-broker/esia-broker/storage"
)

// DefaultPostgresAdminDSN is used when ESIA_BROKER_TEST_POSTGRES is unset.
const DefaultPostgresAdminDSN = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// PostgresAdminDSN is the DSN of a PostgreSQL server where tests may create databases.
func PostgresAdminDSN() string {
	if d := os.Getenv("ESIA_BROKER_TEST_POSTGRES"); d != "" {
		return d
	}
	return DefaultPostgresAdminDSN
}

// NewPostgresDSN creates a throw-away database and returns its DSN; it is dropped when the test
// ends. Without a reachable server the test is skipped loudly, or fails under CI=true.
func NewPostgresDSN(t testing.TB) string {
	t.Helper()
	admin := PostgresAdminDSN()
	db, err := sql.Open("postgres", admin)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = db.PingContext(ctx)
		cancel()
	}
	if err != nil {
		msg := fmt.Sprintf("!!! PostgreSQL is not reachable at %s (%v): PostgreSQL tests NOT RUN. Set ESIA_BROKER_TEST_POSTGRES to a DSN.", redact(admin), err)
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + " Under CI=true this is a failure.")
		}
		t.Skip(msg)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := "esia_broker_test_" + hex.EncodeToString(b)
	if _, err := db.Exec(`CREATE DATABASE ` + name); err != nil {
		_ = db.Close()
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		_, _ = db.Exec(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, name)
		if _, err := db.Exec(`DROP DATABASE IF EXISTS ` + name); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
		_ = db.Close()
	})
	u, err := url.Parse(admin)
	if err != nil {
		t.Fatalf("parse %s: %v", redact(admin), err)
	}
	u.Path = "/" + name
	return u.String()
}

// NewSQLiteDSN returns the DSN of a fresh embedded store in the test's temporary folder.
func NewSQLiteDSN(t testing.TB) string {
	t.Helper()
	return "sqlite:" + filepath.Join(t.TempDir(), "esia-broker.db")
}

// Open opens and migrates a store at dsn, closed when the test ends.
func Open(t testing.TB, dsn string) *storage.Store {
	t.Helper()
	s, err := storage.Open(context.Background(), dsn, storage.Options{})
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return s
}

// Dialects gives, by name, a constructor of a fresh migrated store for each dialect.
func Dialects() map[string]func(t testing.TB) *storage.Store {
	return map[string]func(t testing.TB) *storage.Store{
		"sqlite":   func(t testing.TB) *storage.Store { return Open(t, NewSQLiteDSN(t)) },
		"postgres": func(t testing.TB) *storage.Store { return Open(t, NewPostgresDSN(t)) },
	}
}

func redact(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return "(unparsable DSN)"
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxx")
	}
	return strings.TrimSpace(u.String())
}
