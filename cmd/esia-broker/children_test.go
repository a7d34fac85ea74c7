package main

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/internal/testwait"
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
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- a.serve(sctx, cfg, serveOptions{ready: func(addr string) { ready <- addr }}) }()
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
