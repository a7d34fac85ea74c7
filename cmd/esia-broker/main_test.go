package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/internal/testwait"

	"github.com/gorilla/mux"

	"github.com/esia-broker/esia-broker/storage/storagetest"
)

func testEnv(dsn string) []string {
	k := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("z", 32)))
	return []string{
		"ESIA_BROKER_DATABASE_DSN=" + dsn,
		"ESIA_BROKER_SECRETS_MASTER_KEY=" + k, "ESIA_BROKER_SECRETS_COOKIE_KEY=" + k,
		"ESIA_BROKER_SECRETS_SNILS_PEPPER=" + k, "ESIA_BROKER_SECRETS_TOKEN_KEY=" + k,
		"ESIA_BROKER_LISTEN=127.0.0.1:0", "ESIA_BROKER_HTTP_METRICS_LISTEN=127.0.0.1:0", "ESIA_BROKER_DATABASE_MIGRATE_ON_START=true",
	}
}

// run executes the CLI with args and returns stdout and the error.
func run(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRoot(&app{stdout: &out, stderr: &errOut, environ: env})
	root.SetArgs(append(args, "--operator", "tester"))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func mustRun(t *testing.T, env []string, args ...string) string {
	t.Helper()
	out, err := run(t, env, args...)
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return out
}

func TestCLI(t *testing.T) {
	for name, dsn := range map[string]func(testing.TB) string{"sqlite": storagetest.NewSQLiteDSN, "postgres": storagetest.NewPostgresDSN} {
		t.Run(name, func(t *testing.T) {
			env := testEnv(dsn(t))
			if name == "sqlite" {
				// No file yet: status says so and creates none (migrate up creates it).
				if _, err := run(t, env, "migrate", "status"); err == nil || !strings.Contains(err.Error(), "no database at") {
					t.Errorf("status before the file exists: %v", err)
				}
			} else if out := mustRun(t, env, "migrate", "status"); !strings.Contains(out, "pending  0001_core") {
				t.Errorf("status before up: %q", out)
			}
			if out := mustRun(t, env, "migrate", "up"); !strings.Contains(out, "applied 0001_core") {
				t.Errorf("up: %q", out)
			}
			if out := mustRun(t, env, "migrate", "up"); !strings.Contains(out, "nothing to apply") {
				t.Errorf("second up: %q", out)
			}
			if out := mustRun(t, env, "migrate", "status"); !strings.Contains(out, "applied  0001_core") {
				t.Errorf("status after up: %q", out)
			}

			out := mustRun(t, env, "clients", "create", "kiasuo", "--name", "КИАСУО", "--redirect-uri", "https://diary.example/cb", "--post-logout-redirect-uri", "https://diary.example/")
			secret := regexp.MustCompile(`client_secret: (\S+)`).FindStringSubmatch(out)
			if secret == nil || len(secret[1]) < 43 {
				t.Fatalf("create printed no secret: %q", out)
			}
			if _, err := run(t, env, "clients", "create", "kiasuo", "--redirect-uri", "https://diary.example/cb"); err == nil || !strings.Contains(err.Error(), "already exists") {
				t.Errorf("duplicate create: %v", err)
			}
			_, err := run(t, env, "clients", "create", "evil", "--redirect-uri", "http://evil.example/cb", "--scope", "admin")
			if err == nil || !strings.Contains(err.Error(), "http is allowed only on loopback") || !strings.Contains(err.Error(), `scope "admin"`) {
				t.Errorf("invalid client accepted or problems not all listed: %v", err)
			}
			show := mustRun(t, env, "clients", "show", "kiasuo")
			if strings.Contains(show, secret[1]) || !strings.Contains(show, "https://diary.example/cb") {
				t.Errorf("show: %s", show)
			}
			mustRun(t, env, "clients", "create", "mobile", "--public", "--redirect-uri", "ru.region.diary:/cb")
			list := mustRun(t, env, "clients", "list")
			if !strings.Contains(list, "kiasuo") || !strings.Contains(list, "public") {
				t.Errorf("list: %s", list)
			}
			mustRun(t, env, "clients", "update", "kiasuo", "--redirect-uri", "https://diary.example/cb2", "--grant-type", "authorization_code,refresh_token,client_credentials")
			if show := mustRun(t, env, "clients", "show", "kiasuo"); !strings.Contains(show, "cb2") || !strings.Contains(show, "client_credentials") || !strings.Contains(show, "КИАСУО") {
				t.Errorf("after update: %s", show)
			}
			rot := mustRun(t, env, "clients", "rotate-secret", "kiasuo")
			if !strings.Contains(rot, "client_secret: ") || strings.Contains(rot, secret[1]) {
				t.Errorf("rotate-secret: %s", rot)
			}
			if _, err := run(t, env, "clients", "rotate-secret", "mobile"); err == nil {
				t.Error("rotating a public client's secret succeeded")
			}
			if _, err := run(t, env, "clients", "delete", "mobile"); err == nil || !strings.Contains(err.Error(), "--yes") {
				t.Errorf("delete without --yes: %v", err)
			}
			mustRun(t, env, "clients", "delete", "mobile", "--yes")
			if _, err := run(t, env, "clients", "show", "mobile"); err == nil || !strings.Contains(err.Error(), `no client "mobile"`) {
				t.Errorf("show deleted: %v", err)
			}

			mustRun(t, env, "keys", "rotate", "--alg", "ES256")
			mustRun(t, env, "keys", "rotate", "--alg", "ES256")
			keys := mustRun(t, env, "keys", "list")
			if strings.Count(keys, "ES256") != 2 {
				t.Errorf("keys list after two rotations: %s", keys)
			}
			if _, err := run(t, env, "keys", "rotate", "--alg", "HS256"); err == nil {
				t.Error("HS256 rotation accepted")
			}
		})
	}
}

func TestBadConfigExitsWithCode2(t *testing.T) {
	env := []string{"ESIA_BROKER_ISSUER=https://id.example", "ESIA_BROKER_TOKENS_ID_TOKEN_ALG=none"}
	_, err := run(t, env, "migrate", "status")
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != 2 {
		t.Fatalf("err = %v, want exit code 2", err)
	}
	for _, want := range []string{"secrets.master_key", "tokens.id_token_alg"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %s: %v", want, err)
		}
	}
	_, err = run(t, testEnv("sqlite:"+filepath.Join(t.TempDir(), "x.db")), "--config", "/nonexistent.yaml", "migrate", "status")
	if !errors.As(err, &ee) || ee.code != 2 {
		t.Errorf("missing config file: %v", err)
	}
}

// TestServeDrainsInFlightRequests stops the server while a request is in flight: the request
// completes and serve returns cleanly.
func TestServeDrainsInFlightRequests(t *testing.T) {
	env := testEnv(storagetest.NewSQLiteDSN(t))
	a := &app{stdout: io.Discard, stderr: io.Discard, environ: env}
	cfg, err := a.loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan struct{})
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- a.serve(ctx, cfg, serveOptions{mount: func(r *mux.Router) {
			r.HandleFunc("/slow", func(w http.ResponseWriter, _ *http.Request) {
				close(started)
				time.Sleep(300 * time.Millisecond)
				_, _ = w.Write([]byte("finished"))
			})
		}, ready: func(a string) { addr <- a }})
	}()
	var base string
	select {
	case a := <-addr:
		base = "http://" + a
	case err := <-done:
		t.Fatalf("serve ended before it listened: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not listen within 30 s")
	}
	resp, err := http.Get(base + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", resp, err)
	}
	resp.Body.Close()
	got := make(chan string, 1)
	go func() {
		resp, err := http.Get(base + "/slow")
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- string(b)
	}()
	testwait.Recv(t, started, 10*time.Second, "the slow request to arrive")
	cancel()
	if body := testwait.Recv(t, got, 10*time.Second, "the in-flight answer"); body != "finished" {
		t.Errorf("in-flight request got %q", body)
	}
	if err := testwait.Recv(t, done, 10*time.Second, "serve to return"); err != nil {
		t.Errorf("serve: %v", err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Error("server still answers after shutdown")
	}
}
