package main

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/provider"

	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/storage/storagetest"
)

// TestRegionImportCLI: links import and children import name bad rows by line and change
// nothing; good files go in once; a weak hash needs --accept-weak; migrate report lists the
// families who will need a code.
func TestRegionImportCLI(t *testing.T) {
	for name, dsn := range map[string]func(testing.TB) string{"sqlite": storagetest.NewSQLiteDSN, "postgres": storagetest.NewPostgresDSN} {
		t.Run(name, func(t *testing.T) {
			env := testEnv(dsn(t))
			mustRun(t, env, "migrate", "up")
			mustRun(t, env, "roster", "schools", "add", "sch-1", "МБОУ СШ № 1")
			dir := t.TempDir()
			write := func(name, body string) string {
				p := filepath.Join(dir, name)
				if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
					t.Fatal(err)
				}
				return p
			}
			mustRun(t, env, "roster", "import", write("roster.csv", "student_id,school_id,class,family_name,given_name,middle_name,birthdate,snils,active,guardian1_snils,guardian1_name\n"+
				"s-1,sch-1,2А,Иванов,Алексей,Игоревич,12.09.2017,123-456-789 64,1,112-233-445 95,Иванова М. П.\n"+
				"s-2,sch-1,2А,Петрова,Анна,,2017-02-03,,1,,\n"+
				"s-3,sch-1,2А,Сидоров,Олег,,2017-05-05,,1,,\n"))

			bad := write("bad-links.csv", "esia_oid,student_id,relation,linked_at\n1000000001,s-2,parent,2020-09-01\n12ab,s-2,parent,2020-09-01\n1000000002,s-2,aunt,2020-09-01\n")
			out, err := run(t, env, "links", "import", bad)
			if err == nil || !strings.Contains(out, "line 3: esia_oid") || !strings.Contains(out, "line 4: relation") || !strings.Contains(out, "nothing imported") {
				t.Errorf("bad links file: %v\n%s", err, out)
			}
			links := write("links.csv", "esia_oid,student_id,relation,linked_at,method\n1000000001,s-2,parent,2020-09-01,invite\n")
			if out := mustRun(t, env, "links", "import", "--dry-run", links); !strings.Contains(out, "would import") || !strings.Contains(out, "1 created") {
				t.Errorf("dry run: %s", out)
			}
			if out := mustRun(t, env, "links", "import", links); !strings.Contains(out, "1 created") || !strings.Contains(out, "1 new account(s) waiting for their first login") {
				t.Errorf("links import: %s", out)
			}
			if out := mustRun(t, env, "links", "import", links); !strings.Contains(out, "0 created, 1 unchanged") {
				t.Errorf("links import again: %s", out)
			}

			children := write("children.csv", "student_id,login,password_hash,guardian_esia_oid\ns-2,Anna.P,36f25706170402e9628df575cc50218f,1000000001\n")
			out, err = run(t, env, "children", "import", children)
			if err == nil || !strings.Contains(out, "line 2: password_hash") || !strings.Contains(out, "--accept-weak") {
				t.Errorf("a weak hash without --accept-weak: %v\n%s", err, out)
			}
			if out := mustRun(t, env, "children", "import", "--accept-weak", children); !strings.Contains(out, "1 created") || !strings.Contains(out, "1 weak hashes accepted") {
				t.Errorf("children import: %s", out)
			}

			report := filepath.Join(dir, "report.csv")
			mustRun(t, env, "migrate", "report", "--out", report)
			b, err := os.ReadFile(report)
			if err != nil {
				t.Fatal(err)
			}
			// s-1 has a guardian SNILS; s-2 an imported link that waits for its parent's first
			// login; s-3 nothing: its family needs a code.
			rows := strings.Split(strings.TrimSpace(string(b)), "\n")
			if len(rows) != 3 || !strings.Contains(rows[1], "s-2") || !strings.Contains(rows[1], "first ESIA login") ||
				!strings.Contains(rows[2], "s-3") || !strings.Contains(rows[2], "Сидоров Олег") || !strings.Contains(rows[2], "invite code") {
				t.Errorf("report: %s", b)
			}
			if _, err := run(t, env, "migrate", "report", "--out", report); err == nil {
				t.Error("the report overwrote an existing file")
			}
		})
	}
}

// TestForgetFromTheCLIUnderPairwise: `accounts forget` queues each diary's logout with the sub
// that diary saw, as the server would, never the account id.
func TestForgetFromTheCLIUnderPairwise(t *testing.T) {
	dsn := storagetest.NewSQLiteDSN(t)
	env := testEnv(dsn) // the command's own configuration says uuid: it follows the server's
	mustRun(t, env, "migrate", "up")
	mustRun(t, env, "clients", "create", "diary-a", "--redirect-uri", "https://a.example/cb", "--scope", "openid,profile",
		"--backchannel-logout-uri", "https://a.example/logout")
	ctx := context.Background()
	s, err := storage.Open(ctx, dsn, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	oid := "1000300001"
	a, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: &oid, Birthdate: "1985-03-04"})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveConsent(ctx, &storage.Consent{AccountID: a.ID, ClientID: "diary-a", Scopes: "openid", GrantedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	// What `serve` records at start with tokens.subject: pairwise.
	server, err := provider.NewSubjects(config.Tokens{Subject: "pairwise"}, "esia", linking.NewDigester([]byte(strings.Repeat("z", 32))))
	if err != nil {
		t.Fatal(err)
	}
	if err := server.Record(ctx, s); err != nil {
		t.Fatal(err)
	}
	want := server.For(a, "diary-a", []string{"https://a.example/cb"})
	mustRun(t, env, "accounts", "forget", a.ID, "--yes")
	db, err := sql.Open("sqlite", strings.TrimPrefix(dsn, "sqlite:"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var shown string
	if err := db.QueryRow(`SELECT shown_subject FROM logout_deliveries WHERE client_id = 'diary-a'`).Scan(&shown); err != nil {
		t.Fatal(err)
	}
	if shown != want || len(shown) != 43 {
		t.Errorf("the queued logout's sub %q, want diary-a's pairwise sub %q", shown, want)
	}
}
