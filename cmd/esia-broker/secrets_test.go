package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/internal/testwait"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/storage/storagetest"
)

// withSecret returns env with one secret replaced.
func withSecret(env []string, name, value string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return append(out, name+"="+value)
}

// TestSecretsMustMatchTheDatabase: the first command records the secrets' fingerprints; every
// command and serve run with a different secret later is refused with exit code 2 before it
// writes anything, naming the secret; only the cookie and token keys can be accepted anew.
func TestSecretsMustMatchTheDatabase(t *testing.T) {
	for name, dsn := range map[string]func(testing.TB) string{"sqlite": storagetest.NewSQLiteDSN, "postgres": storagetest.NewPostgresDSN} {
		t.Run(name, func(t *testing.T) {
			d := dsn(t)
			env := testEnv(d)
			mustRun(t, env, "migrate", "up")
			mustRun(t, env, "roster", "schools", "add", "sch-1", "Школа")
			other := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("q", 32)))
			file := filepath.Join(t.TempDir(), "r.csv")
			os.WriteFile(file, []byte("student_id,school_id,class,family_name,given_name,middle_name,birthdate,snils,active,guardian1_snils,guardian1_name\n"+
				"s-1,sch-1,7А,Иванов,Алексей,Игоревич,12.09.2013,123-456-789 64,1,112-233-445 95,Иванова М. П.\n"), 0o600)
			s := storagetest.Open(t, d)
			ctx := t.Context()
			written := func() (n int) {
				if _, err := s.Student(ctx, "s-1"); err == nil {
					n += 1000
				}
				sch, err := s.Schools(ctx)
				inv, err2 := s.ListInvites(ctx, storage.InviteFilter{})
				keys, err3 := s.SigningKeys(ctx)
				ev, err4 := s.AuditEvents(ctx, 1000)
				if err := errors.Join(err, err2, err3, err4); err != nil {
					t.Fatal(err)
				}
				return n + 100*len(sch) + 10*len(inv) + len(keys) + 10000*len(ev)
			}
			before := written()
			for _, c := range []struct {
				secret string
				args   []string
			}{
				{"ESIA_BROKER_SECRETS_SNILS_PEPPER", []string{"roster", "import", file}},
				{"ESIA_BROKER_SECRETS_SNILS_PEPPER", []string{"invites", "issue", "--school", "sch-1", "--role", "parent"}},
				{"ESIA_BROKER_SECRETS_MASTER_KEY", []string{"keys", "rotate"}},
				{"ESIA_BROKER_SECRETS_COOKIE_KEY", []string{"roster", "schools", "add", "sch-2", "Вторая"}},
				{"ESIA_BROKER_SECRETS_TOKEN_KEY", []string{"roster", "schools", "add", "sch-2", "Вторая"}},
				{"ESIA_BROKER_SECRETS_MASTER_KEY", []string{"serve"}},
			} {
				_, err := run(t, withSecret(env, c.secret, other), c.args...)
				var ee *exitError
				key := "secrets." + strings.ToLower(strings.TrimPrefix(c.secret, "ESIA_BROKER_SECRETS_"))
				if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "nothing was written") {
					t.Errorf("%s with another %s: %v", c.args, key, err)
				}
			}
			if after := written(); after != before {
				t.Errorf("refused commands wrote: cards, schools, codes, keys and audit events went from %d to %d", before, after)
			}
			if out := mustRun(t, env, "secrets", "check"); !strings.Contains(out, "are the ones") {
				t.Errorf("secrets check: %s", out)
			}
			if _, err := run(t, withSecret(env, "ESIA_BROKER_SECRETS_SNILS_PEPPER", other), "secrets", "accept", "snils_pepper"); err == nil {
				t.Error("a new SNILS pepper was accepted")
			}
			// Two keys changed, one accepted: nothing changes.
			both := withSecret(withSecret(env, "ESIA_BROKER_SECRETS_COOKIE_KEY", other), "ESIA_BROKER_SECRETS_TOKEN_KEY", other)
			if _, err := run(t, both, "secrets", "accept", "cookie_key"); err == nil || !strings.Contains(err.Error(), "secrets.token_key") {
				t.Errorf("accepting one of two changed keys: %v", err)
			}
			if out := mustRun(t, both, "secrets", "accept", "cookie_key", "secrets.token_key"); strings.Count(out, "accepted") != 2 {
				t.Errorf("accept: %s", out)
			}
			mustRun(t, both, "roster", "import", file)
			if _, err := run(t, env, "roster", "schools", "list"); err == nil {
				t.Error("the earlier cookie key still works after the new one was accepted")
			}
			if _, err := s.Student(ctx, "s-1"); err != nil {
				t.Errorf("the import with the right secrets: %v", err)
			}
		})
	}
}

// TestUpgradedDatabase walks a database from before fingerprints v2 and the dev mark: its
// schema behind refuses every admin command (exit 2, nothing written); serve with another
// secret refuses it before migrating; migrated, its v1 fingerprints still identify the secrets
// (kept, for replicas not yet upgraded). Without any fingerprint, admin commands and `secrets
// check` are refused and record nothing; serve records them after it has decrypted the signing
// keys, and the commands run.
func TestUpgradedDatabase(t *testing.T) {
	dsn := storagetest.NewSQLiteDSN(t)
	env := testEnv(dsn)
	mustRun(t, env, "migrate", "up")
	mustRun(t, env, "roster", "schools", "add", "sch-1", "Школа")
	mustRun(t, env, "keys", "rotate")
	db, err := sql.Open("sqlite", strings.TrimPrefix(dsn, "sqlite:"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func(query string) (n int) {
		t.Helper()
		if err := db.QueryRow(query).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	a := &app{stdout: &bytes.Buffer{}, stderr: &lockedBuffer{}, environ: env}
	cfg, err := a.loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	// Back to the state of release 0010: v1 fingerprints, no marks, events, session clients or
	// accounts awaiting their first login.
	stmts := []string{`DROP TABLE database_marks`, `DROP TABLE events`, `DROP TABLE events_pruned`, `DROP TABLE session_clients`,
		`ALTER TABLE accounts DROP COLUMN awaiting_login`, `ALTER TABLE logout_deliveries DROP COLUMN shown_subject`, `DROP TABLE settings`,
		`DROP INDEX child_credentials_skeleton`, `ALTER TABLE child_credentials DROP COLUMN login_skeleton`,
		`DELETE FROM schema_migrations WHERE version > '0011'`, `DELETE FROM schema_migrations WHERE version LIKE '0011%'`}
	for name, fp := range cfg.LegacySecretFingerprints() {
		stmts = append(stmts, fmt.Sprintf(`UPDATE secret_fingerprints SET fingerprint = '%s' WHERE name = '%s'`, fp, name))
	}
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	refused := func(wantText string, env []string, args ...string) {
		t.Helper()
		_, err := run(t, env, args...)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), wantText) || !strings.Contains(err.Error(), "nothing was written") {
			t.Errorf("%s: %v, want exit 2 saying %q", args, err, wantText)
		}
	}
	schools := func() int { return count(`SELECT COUNT(*) FROM schools`) }
	migrations := func() int { return count(`SELECT COUNT(*) FROM schema_migrations`) }
	before := migrations()
	refused("migrate up", env, "roster", "schools", "add", "sch-2", "Вторая")
	refused("migrate up", env, "secrets", "check")
	if n := schools(); n != 1 {
		t.Errorf("a command on the old schema wrote: %d schools", n)
	}
	// serve (migrating on start) and dev with another pepper: refused before any migration.
	otherPepper := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("p", 32)))
	wrong := append(withSecret(env, "ESIA_BROKER_SECRETS_SNILS_PEPPER", otherPepper), "ESIA_BROKER_DATABASE_MIGRATE_ON_START=true")
	refused("secrets.snils_pepper", wrong, "serve")
	if n := migrations(); n != before {
		t.Errorf("serve with another pepper migrated the database: %d migrations, had %d", n, before)
	}

	if out := mustRun(t, env, "migrate", "up"); !strings.Contains(out, "applied 0011") {
		t.Errorf("migrate up: %s", out)
	}
	if n := count(`SELECT COUNT(*) FROM secret_fingerprints WHERE fingerprint NOT LIKE 'v2:%'`); n != 4 {
		t.Errorf("migrated: %d v1 fingerprints kept, want 4", n)
	}
	if n := count(`SELECT COUNT(*) FROM database_marks`); n != 0 {
		t.Errorf("a database without the demo client was marked as the dev server's")
	}
	// The v1 fingerprints identify the secrets: the right ones run, others are refused by name.
	mustRun(t, env, "roster", "schools", "add", "sch-2", "Вторая")
	if out := mustRun(t, env, "secrets", "check"); !strings.Contains(out, "are the ones") {
		t.Errorf("secrets check with v1 fingerprints: %s", out)
	}
	refused("secrets.snils_pepper", withSecret(env, "ESIA_BROKER_SECRETS_SNILS_PEPPER", otherPepper), "roster", "schools", "list")
	if n := count(`SELECT COUNT(*) FROM secret_fingerprints WHERE fingerprint NOT LIKE 'v2:%'`); n != 4 {
		t.Errorf("the v1 fingerprints were replaced: %d left", n)
	}

	// A database in use without fingerprints (one from before them).
	if _, err := db.Exec(`DELETE FROM secret_fingerprints`); err != nil {
		t.Fatal(err)
	}
	refused("no fingerprint", env, "roster", "schools", "add", "sch-3", "Третья")
	refused("no fingerprint", env, "secrets", "check")
	if n, f := schools(), count(`SELECT COUNT(*) FROM secret_fingerprints`); n != 2 || f != 0 {
		t.Errorf("refused commands wrote: %d schools, %d fingerprints", n, f)
	}

	// serve with another master key cannot decrypt the signing keys and records nothing.
	other := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("q", 32)))
	var ee *exitError
	if _, err := run(t, withSecret(env, "ESIA_BROKER_SECRETS_MASTER_KEY", other), "serve"); !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), "load signing key") {
		t.Fatalf("serve with another master key on a database with signing keys: %v, want exit 2", err)
	}
	if f := count(`SELECT COUNT(*) FROM secret_fingerprints`); f != 0 {
		t.Errorf("serve with the wrong master key recorded %d fingerprints", f)
	}

	serveOnce(t, a, cfg)
	if f := count(`SELECT COUNT(*) FROM secret_fingerprints WHERE fingerprint LIKE 'v2:%'`); f != 4 {
		t.Errorf("serve recorded %d fingerprints, want 4", f)
	}
	mustRun(t, env, "roster", "schools", "add", "sch-3", "Третья")
	if out := mustRun(t, env, "secrets", "check"); !strings.Contains(out, "are the ones") {
		t.Errorf("secrets check: %s", out)
	}
	if _, err := run(t, withSecret(env, "ESIA_BROKER_SECRETS_MASTER_KEY", other), "roster", "schools", "list"); err == nil || !strings.Contains(err.Error(), "secrets.master_key") {
		t.Errorf("another master key after serve recorded the fingerprints: %v", err)
	}
}

// TestAdminCommandsOnAMissingOrEmptyDatabase: a mistyped SQLite path is refused and not
// created; `secrets check` on a database that holds nothing yet says so, records nothing and
// creates no schema.
func TestAdminCommandsOnAMissingOrEmptyDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "typo.db")
	for _, args := range [][]string{{"clients", "list"}, {"secrets", "check"}, {"invites", "list"}, {"migrate", "status"}} {
		_, err := run(t, testEnv("sqlite:"+path), args...)
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != 2 || !strings.Contains(err.Error(), "no database at") {
			t.Errorf("%v on a missing database: %v", args, err)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%v created the database file", args)
		}
	}
	dsn := storagetest.NewSQLiteDSN(t)
	env := testEnv(dsn)
	mustRun(t, env, "migrate", "up")
	if out := mustRun(t, env, "secrets", "check"); !strings.Contains(out, "holds no data yet") {
		t.Errorf("secrets check on an empty database: %s", out)
	}
	db, err := sql.Open("sqlite", strings.TrimPrefix(dsn, "sqlite:"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	if err := db.QueryRow(`SELECT COUNT(*) FROM secret_fingerprints`).Scan(&n); err != nil || n != 0 {
		t.Errorf("secrets check recorded %d fingerprints (%v)", n, err)
	}
}

// serveOnce runs `serve` with cfg until it listens, then stops it.
func serveOnce(t *testing.T, a *app, cfg *config.Config) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ready, done := make(chan string, 1), make(chan error, 1)
	go func() { done <- a.serve(ctx, cfg, serveOptions{ready: func(addr string) { ready <- addr }}) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("serve ended: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not start")
	}
	cancel()
	if err := testwait.Recv(t, done, 10*time.Second, "serve to stop"); err != nil {
		t.Fatal(err)
	}
}
