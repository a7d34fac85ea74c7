package main

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
