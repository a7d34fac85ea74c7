package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/storage/storagetest"
)

// TestOnlyESIAAtStart: `accounts children --password` lists the sub-accounts for the schools;
// serve with children.password_accounts false disables them at start, audited, and the list
// then says so.
func TestOnlyESIAAtStart(t *testing.T) {
	dsn := storagetest.NewSQLiteDSN(t)
	env := testEnv(dsn)
	mustRun(t, env, "migrate", "up")
	mustRun(t, env, "roster", "schools", "list") // records the secrets' fingerprints while the database is empty
	ctx := context.Background()
	s, err := storage.Open(ctx, dsn, storage.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.UpsertSchool(ctx, "sch-1", "Школа 1"))
	_, err = s.UpsertStudent(ctx, &storage.Student{ID: "s-1", SchoolID: "sch-1", Class: "3А", FamilyName: "Иванова", GivenName: "Дарья", Birthdate: "2017-05-21", Active: true}, nil)
	must(err)
	must(s.CreateChild(ctx, &storage.Account{FamilyName: "Иванова", GivenName: "Дарья", Birthdate: "2017-05-21"}, &storage.ChildCredential{StudentID: "s-1", Login: "darya", PasswordHash: "h", CreatedBy: "p"}))

	if _, err := run(t, env, "accounts", "children"); err == nil {
		t.Error("accounts children without --password ran")
	}
	out := mustRun(t, env, "accounts", "children", "--password")
	if !strings.Contains(out, "SCHOOL") || !regexpLine(out, `sch-1\s+3А\s+s-1\s+darya\s+active\s+no`) {
		t.Errorf("list before: %q", out)
	}

	a := &app{stdout: &bytes.Buffer{}, stderr: &lockedBuffer{}, environ: append(env, "ESIA_BROKER_CHILDREN_PASSWORD_ACCOUNTS=false")}
	cfg, err := a.loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	serveOnce(t, a, cfg)
	if logs := a.stderr.(*lockedBuffer).String(); !strings.Contains(logs, "disabled login-and-password sub-accounts") || !strings.Contains(logs, `"count":1`) && !strings.Contains(logs, "count=1") {
		t.Errorf("serve's log: %s", logs)
	}
	out = mustRun(t, env, "accounts", "children", "--password")
	if !regexpLine(out, `sch-1\s+3А\s+s-1\s+darya\s+disabled\s+no`) {
		t.Errorf("list after: %q", out)
	}
	ev, err := s.AuditEvents(ctx, 50)
	must(err)
	n := 0
	for _, e := range ev {
		if e.Action == "child.disabled" && e.Target == "s-1" && e.Actor == "system:children.password_accounts" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d audit lines child.disabled", n)
	}
}

// regexpLine tells whether a line of out matches pattern.
func regexpLine(out, pattern string) bool {
	return regexp.MustCompile(`(?m)^` + pattern + `\s*$`).MatchString(out)
}

// TestClientHomeURL: --home-url registers the diary's page for the start page; anything but an
// https URL (http on loopback) is refused and nothing is written.
func TestClientHomeURL(t *testing.T) {
	env := testEnv(storagetest.NewSQLiteDSN(t))
	mustRun(t, env, "migrate", "up")
	for _, bad := range []string{"http://diary.example/", "javascript:alert(1)", "https://user:pw@diary.example/", "https://diary.example/#x"} {
		if _, err := run(t, env, "clients", "create", "bad", "--name", "Плохой", "--redirect-uri", "https://diary.example/cb", "--home-url", bad); err == nil || !strings.Contains(err.Error(), "home URL") {
			t.Errorf("%s: %v", bad, err)
		}
	}
	if out, _ := run(t, env, "clients", "list"); strings.Contains(out, "bad") {
		t.Errorf("a refused client was written: %s", out)
	}
	mustRun(t, env, "clients", "create", "kiasuo", "--name", "КИАСУО", "--redirect-uri", "https://diary.example/cb", "--home-url", "https://diary.example/")
	if out := mustRun(t, env, "clients", "show", "kiasuo"); !strings.Contains(out, `"home_url": "https://diary.example/"`) {
		t.Errorf("show: %s", out)
	}
}

// TestInviteCLIMessages: an unknown school is named as unknown, every unknown student id is
// named, a student code for children under 14 comes with a note, and a rotated slip says the
// earlier code no longer works (issue 17, item 7).
func TestInviteCLIMessages(t *testing.T) {
	dsn := storagetest.NewSQLiteDSN(t)
	env := testEnv(dsn)
	mustRun(t, env, "migrate", "up")
	mustRun(t, env, "roster", "schools", "add", "sch-1", "Школа № 1")
	dir := t.TempDir()
	roster := filepath.Join(dir, "r.csv")
	young := time.Now().AddDate(-10, 0, 0).Format("2006-01-02")
	old := time.Now().AddDate(-15, 0, 0).Format("2006-01-02")
	if err := os.WriteFile(roster, []byte("student_id,school_id,class,family_name,given_name,middle_name,birthdate,snils,active\n"+
		"s-1,sch-1,4А,Иванова,Дарья,Игоревна,"+young+",,1\ns-2,sch-1,9А,Кузнецов,Иван,Андреевич,"+old+",,1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustRun(t, env, "roster", "import", roster)
	if _, err := run(t, env, "invites", "issue", "--school", "nope", "--role", "parent", "--out", filepath.Join(dir, "x.html")); err == nil || !strings.Contains(err.Error(), `unknown school "nope"`) {
		t.Errorf("unknown school: %v", err)
	}
	if _, err := run(t, env, "invites", "issue", "--school", "sch-1", "--student", "s-1", "--student", "x-9", "--student", "y-7", "--role", "parent", "--out", filepath.Join(dir, "y.html")); err == nil || !strings.Contains(err.Error(), `"x-9", "y-7"`) {
		t.Errorf("unknown students: %v", err)
	}
	stderr := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		root := newRoot(&app{stdout: &out, stderr: &errOut, environ: env})
		root.SetArgs(append(args, "--operator", "tester"))
		if err := root.ExecuteContext(context.Background()); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
		return errOut.String()
	}
	if e := stderr("invites", "issue", "--school", "sch-1", "--role", "student", "--out", filepath.Join(dir, "s.html")); !strings.Contains(e, "1 of these students are under 14") {
		t.Errorf("no note on students under 14: %s", e)
	}
	sheet := filepath.Join(dir, "p.html")
	stderr("invites", "issue", "--school", "sch-1", "--role", "parent", "--out", sheet)
	if b, _ := os.ReadFile(sheet); strings.Contains(string(b), "заменяет выданный ранее") {
		t.Error("a first slip says it replaces one")
	}
	rotated := filepath.Join(dir, "rot.html")
	stderr("invites", "rotate", "--school", "sch-1", "--role", "parent", "--out", rotated)
	if b, _ := os.ReadFile(rotated); strings.Count(string(b), "прежний код больше не действует") != 2 {
		t.Errorf("the rotated slips do not say the old codes are void: %s", b)
	}
}

// TestClientLogoutAndAuthFlags: a diary is registered for back- and front-channel logout,
// private_key_jwt with its public keys and pushed requests only; each bad registration is
// refused with the reason and writes nothing (issue 16, items 8-10).
func TestClientLogoutAndAuthFlags(t *testing.T) {
	env := testEnv(storagetest.NewSQLiteDSN(t))
	mustRun(t, env, "migrate", "up")
	dir := t.TempDir()
	jwksFile := func(name string, bits int, private bool) string {
		key, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		var k any = &key.PublicKey
		if private {
			k = key
		}
		b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: k, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good, priv, short := jwksFile("good.json", 2048, false), jwksFile("private.json", 2048, true), jwksFile("short.json", 1024, false)
	base := []string{"clients", "create", "pkj", "--name", "Дневник", "--redirect-uri", "https://diary.example/cb"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--token-endpoint-auth-method", "private_key_jwt"}, "--jwks"},
		{[]string{"--token-endpoint-auth-method", "private_key_jwt", "--jwks", priv}, "private key"},
		{[]string{"--token-endpoint-auth-method", "private_key_jwt", "--jwks", short}, "at least 2048"},
		{[]string{"--jwks", good}, "only for token endpoint auth method private_key_jwt"},
		{[]string{"--token-endpoint-auth-method", "none"}, "only for a public client"},
		{[]string{"--backchannel-logout-uri", "http://diary.example/bc"}, "back-channel logout URI"},
		{[]string{"--frontchannel-logout-uri", "javascript:alert(1)"}, "front-channel logout URI"},
		{[]string{"--require-par", "--grant-type", "client_credentials"}, "PAR"},
	} {
		_, err := run(t, env, append(append([]string{}, base...), c.args...)...)
		if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(c.want)) {
			t.Errorf("%v: %v, want an error saying %q", c.args, err, c.want)
		}
	}
	if out := mustRun(t, env, "clients", "list"); strings.Contains(out, "pkj") {
		t.Fatalf("a refused registration was written: %s", out)
	}
	out := mustRun(t, env, append(append([]string{}, base...), "--token-endpoint-auth-method", "private_key_jwt", "--jwks", good,
		"--backchannel-logout-uri", "https://diary.example/bc", "--frontchannel-logout-uri", "https://diary.example/fc", "--require-par")...)
	if strings.Contains(out, "client_secret") {
		t.Errorf("a private_key_jwt client was given a secret: %s", out)
	}
	var shown map[string]any
	if err := json.Unmarshal([]byte(mustRun(t, env, "clients", "show", "pkj")), &shown); err != nil {
		t.Fatal(err)
	}
	if shown["token_endpoint_auth_method"] != "private_key_jwt" || shown["backchannel_logout_uri"] != "https://diary.example/bc" ||
		shown["frontchannel_logout_uri"] != "https://diary.example/fc" || shown["require_pushed_authorization_requests"] != true || shown["jwks"] == nil {
		t.Errorf("show: %v", shown)
	}
	mustRun(t, env, "clients", "update", "pkj", "--backchannel-logout-uri", "", "--require-par=false")
	if err := json.Unmarshal([]byte(mustRun(t, env, "clients", "show", "pkj")), &shown); err != nil || shown["backchannel_logout_uri"] != "" || shown["require_pushed_authorization_requests"] != false {
		t.Errorf("after update: %v %v", err, shown)
	}
}
