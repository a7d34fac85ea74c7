package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/storage/storagetest"
)

func TestRosterInvitesAccountsAuditCLI(t *testing.T) {
	for name, dsn := range map[string]func(testing.TB) string{"sqlite": storagetest.NewSQLiteDSN, "postgres": storagetest.NewPostgresDSN} {
		t.Run(name, func(t *testing.T) {
			env := testEnv(dsn(t))
			mustRun(t, env, "migrate", "up")
			if _, err := run(t, env, "roster", "schools", "add", "bad id!", "x"); err == nil {
				t.Error("a bad school id was accepted")
			}
			mustRun(t, env, "roster", "schools", "add", "sch-1", "МБОУ СШ № 1")
			dir := t.TempDir()
			file := filepath.Join(dir, "roster.csv")
			os.WriteFile(file, []byte("student_id,school_id,class,family_name,given_name,middle_name,birthdate,snils,active,guardian1_snils,guardian1_name\n"+
				"s-1,sch-1,7А,Иванов,Алексей,Игоревич,12.09.2013,123-456-789 64,1,112-233-445 95,Иванова М. П.\n"+
				"s-2,sch-1,7А,Петрова,Анна,,2013-02-30,,1,,\n"), 0o600)
			out, err := run(t, env, "roster", "import", file)
			if err == nil || !strings.Contains(out, "line 3: birthdate") || !strings.Contains(out, "nothing imported") {
				t.Errorf("bad file: %v\n%s", err, out)
			}
			if out := mustRun(t, env, "roster", "import", "--dry-run", "--skip-invalid", file); !strings.Contains(out, "would import") || !strings.Contains(out, "1 created") {
				t.Errorf("dry run: %s", out)
			}
			if out := mustRun(t, env, "roster", "import", "--skip-invalid", file); !strings.Contains(out, "1 created") {
				t.Errorf("import: %s", out)
			}
			if out := mustRun(t, env, "roster", "import", "--skip-invalid", file); !strings.Contains(out, "1 unchanged") {
				t.Errorf("second import: %s", out)
			}
			sheet := filepath.Join(dir, "codes.csv")
			mustRun(t, env, "invites", "issue", "--school", "sch-1", "--class", "7А", "--role", "parent", "--format", "csv", "--out", sheet)
			b, _ := os.ReadFile(sheet)
			code := regexp.MustCompile(`[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}`).FindString(string(b))
			if code == "" {
				t.Fatalf("no code in %s", b)
			}
			if _, err := run(t, env, "invites", "issue", "--school", "sch-1", "--role", "parent"); err == nil || !strings.Contains(err.Error(), "invites rotate") {
				t.Errorf("duplicate issue: %v", err)
			}
			if _, err := run(t, env, "invites", "issue", "--school", "sch-1", "--role", "parent", "--expires", "forever"); err == nil {
				t.Error("bad --expires accepted")
			}
			list := mustRun(t, env, "invites", "list")
			if !strings.Contains(list, "open") || strings.Contains(list, code) {
				t.Errorf("list: %s", list)
			}
			if out := mustRun(t, env, "invites", "revoke", "--school", "sch-1", "--role", "parent"); !strings.Contains(out, "revoked 1") {
				t.Errorf("revoke: %s", out)
			}
			if out := mustRun(t, env, "invites", "stats"); !strings.Contains(out, "sch-1") {
				t.Errorf("stats: %s", out)
			}
			if out := mustRun(t, env, "roster", "deactivate", "s-1"); !strings.Contains(out, "inactive") {
				t.Errorf("deactivate: %s", out)
			}
			if _, err := run(t, env, "accounts", "show", "nobody"); err == nil || !strings.Contains(err.Error(), "no account") {
				t.Errorf("accounts show unknown: %v", err)
			}
			tail := mustRun(t, env, "audit", "tail", "-n", "20")
			for _, want := range []string{"cli:tester", "roster.import", "invites.issue", "invites.revoke", "roster.deactivate"} {
				if !strings.Contains(tail, want) {
					t.Errorf("audit lacks %s:\n%s", want, tail)
				}
			}
			if strings.Contains(tail, "123-456-789") || strings.Contains(tail, code) {
				t.Error("the audit log holds a SNILS or a code")
			}
		})
	}
}

func TestAccountsCLI(t *testing.T) {
	dsn := storagetest.NewSQLiteDSN(t)
	env := testEnv(dsn)
	mustRun(t, env, "migrate", "up")
	mustRun(t, env, "roster", "schools", "add", "sch-1", "Школа")
	file := filepath.Join(t.TempDir(), "r.csv")
	os.WriteFile(file, []byte("student_id,school_id,class,family_name,given_name,middle_name,birthdate\ns-1,sch-1,1А,Орлов,Пётр,,2018-01-01\n"), 0o600)
	mustRun(t, env, "roster", "import", file)
	s := storagetest.Open(t, dsn)
	ctx := t.Context()
	sub := "1000300001"
	acct, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: &sub, FamilyName: "Иванова", GivenName: "Мария", SNILSDigest: "digest-not-to-show"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddLink(ctx, acct.ID, "s-1", "parent", "admin"); err != nil {
		t.Fatal(err)
	}
	if out := mustRun(t, env, "accounts", "show", acct.ID); !strings.Contains(out, "Иванова") || !strings.Contains(out, `"has_snils": true`) || strings.Contains(out, "digest-not-to-show") {
		t.Errorf("show: %s", out)
	}
	links := mustRun(t, env, "accounts", "links", acct.ID)
	linkID := regexp.MustCompile(`(?m)^([0-9a-f-]{36})\s+s-1`).FindStringSubmatch(links)
	if linkID == nil {
		t.Fatalf("links: %s", links)
	}
	if _, err := run(t, env, "accounts", "unlink", acct.ID, "no-such-link"); err == nil {
		t.Error("unlinking an unknown link succeeded")
	}
	mustRun(t, env, "accounts", "unlink", acct.ID, linkID[1])
	if ls, _ := s.Links(ctx, acct.ID, false); len(ls) != 0 {
		t.Error("the link is still active")
	}
	mustRun(t, env, "accounts", "disable", acct.ID)
	if a, _ := s.Account(ctx, acct.ID); a.Status != "disabled" {
		t.Errorf("status %s", a.Status)
	}
	if _, err := run(t, env, "accounts", "forget", acct.ID); err == nil {
		t.Error("forget without --yes")
	}
	mustRun(t, env, "accounts", "forget", acct.ID, "--yes")
	a, _ := s.Account(ctx, acct.ID)
	if a.FamilyName != "" || a.GivenName != "" || a.SNILSDigest != "" || a.UpstreamSub != nil || a.Status != "forgotten" {
		t.Errorf("after forget: %+v", a)
	}
	if found, _ := s.SearchText(ctx, "Иванова"); len(found) != 0 {
		t.Errorf("the name survives in %v", found)
	}
	tail := mustRun(t, env, "audit", "tail")
	for _, w := range []string{"link.revoke", "account.disable", "account.forget"} {
		if !strings.Contains(tail, w) {
			t.Errorf("audit lacks %s", w)
		}
	}
}
