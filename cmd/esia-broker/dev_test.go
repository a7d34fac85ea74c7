package main

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/internal/devenv"
	"github.com/esia-broker/esia-broker/internal/testwait"
	"github.com/esia-broker/esia-broker/storage"
)

// TestDevServerLogsInThroughEmulator runs `esia-broker dev` in an empty folder and logs in from
// the demo relying party through the start page and the mounted ESIA emulator, as a browser
// would (cookies, redirects, the persona form).
func TestDevServerLogsInThroughEmulator(t *testing.T) {
	base, out := startDev(t)
	login := func(t *testing.T, persona string) (string, int) {
		jar, _ := cookiejar.New(nil)
		br := &http.Client{Jar: jar}
		get := func(u string) (string, string) {
			resp, err := br.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b), resp.Request.URL.String()
		}
		start, _ := get(base + "/demo/login")
		m := regexp.MustCompile(`href="(/login/esia\?login=[^"]+)"`).FindStringSubmatch(start)
		if m == nil {
			t.Fatalf("start page has no «Войти через Госуслуги»: %s", start)
		}
		page, esiaURL := get(base + strings.ReplaceAll(m[1], "&amp;", "&"))
		if !strings.Contains(esiaURL, "/_esia/aas/oauth2/v2/ac?") {
			t.Fatalf("not sent to the emulator: %s", esiaURL)
		}
		req := regexp.MustCompile(`name="request" value="([^"]+)"`).FindStringSubmatch(page)
		if req == nil {
			t.Fatalf("no persona page: %s", page)
		}
		resp, err := br.PostForm(esiaURL, url.Values{"request": {req[1]}, "persona": {persona}})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// First login: the consent page (152-ФЗ) comes before the diary.
		if m := regexp.MustCompile(`name="csrf" value="([^"]+)"[\s\S]*?name="login" value="([^"]+)"`).FindStringSubmatch(string(b)); m != nil && strings.Contains(string(b), `action="/consent"`) {
			resp, err = br.PostForm(base+"/consent", url.Values{"csrf": {m[1]}, "login": {m[2]}, "decision": {"accept"}})
			if err != nil {
				t.Fatal(err)
			}
			b, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		return string(b), resp.StatusCode
	}
	t.Run("confirmed parent reaches the demo RP with verified claims", func(t *testing.T) {
		body, code := login(t, "parent-two-kids")
		if code != 200 || !strings.Contains(body, "Иванова Мария Петровна") || !strings.Contains(body, `&#34;amr&#34;`) ||
			!strings.Contains(body, "Иванов Алексей Игоревич") || !strings.Contains(body, "demo-sch-2") {
			t.Errorf("%d %s", code, body)
		}
	})
	t.Run("unconfirmed account is refused", func(t *testing.T) {
		body, code := login(t, "unconfirmed")
		if code != 403 || !strings.Contains(body, "не подтверждена") {
			t.Errorf("%d %s", code, body)
		}
	})
	t.Run("the demo RP speaks Russian and the emulator is styled under the CSP", func(t *testing.T) {
		get := func(u string) (*http.Response, string) {
			resp, err := http.Get(base + u)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp, string(b)
		}
		_, page := get("/demo/callback?" + url.Values{"error": {"access_denied"}, "error_description": {"The resource owner denied the request"}}.Encode())
		if !strings.Contains(page, "Вход отменён") || strings.Contains(page, "resource owner") {
			t.Errorf("demo RP error page: %s", page)
		}
		_, page = get("/demo/callback?" + url.Values{"error": {"<b>Позвоните 8-900</b>"}}.Encode())
		if strings.Contains(page, "Позвоните") || !strings.Contains(page, "Вход не удался") {
			t.Errorf("free text from the query reached the page: %s", page)
		}
		resp, css := get("/_esia/aas/oauth2/v2/emulator.css")
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/css") || !strings.Contains(css, "button{") {
			t.Errorf("emulator stylesheet: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "style-src 'self'") {
			t.Errorf("the emulator is not under the broker's CSP (%q): the test proves nothing", csp)
		}
		resp, favicon := get("/favicon.ico")
		if resp.StatusCode != 200 || !strings.HasPrefix(favicon, "<svg") {
			t.Errorf("favicon: %d", resp.StatusCode)
		}
	})
	if !strings.Contains(out.String(), "/demo/") || !strings.Contains(out.String(), "ESIA emulator") {
		t.Errorf("dev printed: %s", out.String())
	}
}

// startDev runs `esia-broker dev` in an empty folder on a free port until the test ends.
func startDev(t *testing.T) (string, *lockedBuffer) {
	t.Helper()
	return startDevWith(t, func(addr string) ([]string, []string) {
		return []string{"ESIA_BROKER_LISTEN=" + addr, "ESIA_BROKER_ISSUER=http://" + addr}, nil
	})
}

// startDevWith runs `esia-broker dev` in an empty folder on a listener it holds; setup turns
// the listener's address into the environment and the extra arguments.
func startDevWith(t *testing.T, setup func(addr string) (env, args []string)) (string, *lockedBuffer) {
	t.Helper()
	t.Chdir(t.TempDir())
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String() // the dev server serves this listener: no port closed and reused
	base := "http://" + addr
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	out := &lockedBuffer{}
	env, args := setup(addr)
	go func() {
		root := newRoot(&app{stdout: out, stderr: io.Discard, listener: l, environ: append(env, "ESIA_BROKER_HTTP_METRICS_LISTEN=127.0.0.1:0")})
		root.SetArgs(append([]string{"dev"}, args...))
		done <- root.ExecuteContext(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		if err := testwait.Recv(t, done, 30*time.Second, "the dev server to stop"); err != nil {
			t.Errorf("dev: %v", err)
		}
	})
	testwait.Until(t, 60*time.Second, "the dev server's banner", func() bool {
		select {
		case err := <-done:
			done <- err // for the clean-up
			t.Fatalf("the dev server stopped before it started: %v\n%s", err, out.String())
		default:
		}
		return strings.Contains(out.String(), "Stop with Ctrl+C")
	})
	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatalf("dev server: %v", err)
	}
	resp.Body.Close()
	return base, out
}

// lockedBuffer collects the dev server's output, written from its goroutine, for the test to read.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestDevPort: `dev --port N` alone moves the whole dev server — issuer, demo relying party,
// emulator — to that port (setting only the listen address used to leave them on 8080), and
// the admin commands run in its folder print slips with that address.
func TestDevPort(t *testing.T) {
	base, out := startDevWith(t, func(addr string) ([]string, []string) {
		_, port, _ := net.SplitHostPort(addr)
		return nil, []string{"--port", port}
	})
	if !strings.Contains(out.String(), base+"/demo/") {
		t.Errorf("the banner does not name %s: %s", base, out.String())
	}
	resp, err := http.Get(base + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"issuer":"`+base+`"`) {
		t.Errorf("discovery: %s", b)
	}
	// The demo relying party's login reaches the broker's start page on the same port (no 502).
	resp, err = http.Get(base + "/demo/login")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Request.URL.Host != strings.TrimPrefix(base, "http://") || !strings.Contains(string(b), "Войти через Госуслуги") {
		t.Errorf("demo login: %d at %s", resp.StatusCode, resp.Request.URL)
	}
	slips := mustRun(t, nil, "invites", "rotate", "--school", "demo-sch-1", "--class", "5А", "--role", "parent")
	if !strings.Contains(slips, base) || strings.Contains(slips, "127.0.0.1:8080") {
		t.Errorf("slips from the dev folder: %s", slips)
	}
	for _, bad := range [][]string{{"--port", "1", "--listen", "127.0.0.1:1"}, {"--port", "70000"}} {
		if _, err := run(t, nil, append([]string{"dev"}, bad...)...); err == nil {
			t.Errorf("dev %v started", bad)
		}
	}
}

// devOnce runs `esia-broker dev` in the current folder with env until its banner shows (then
// stops it) or it ends; it returns the output and the error it ended with.
func devOnce(t *testing.T, env []string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	out := &lockedBuffer{}
	done := make(chan error, 1)
	go func() {
		root := newRoot(&app{stdout: out, stderr: io.Discard, environ: env})
		root.SetArgs([]string{"dev"})
		done <- root.ExecuteContext(ctx)
	}()
	var err error
	testwait.Until(t, 60*time.Second, "the dev server to start or stop", func() bool {
		select {
		case err = <-done:
			return true
		default:
			if strings.Contains(out.String(), "Stop with Ctrl+C") {
				cancel()
				err = testwait.Recv(t, done, 30*time.Second, "the dev server to stop")
				return true
			}
			return false
		}
	})
	return out.String(), err
}

// TestDevClaimsOnlyItsDatabase: dev binds its ports before it touches anything, runs only on a
// database it created (an empty one, or one it ran on before), and writes its secrets and
// address to ./.esia-broker-dev only once the database has accepted them.
func TestDevClaimsOnlyItsDatabase(t *testing.T) {
	t.Chdir(t.TempDir())
	free := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		return addr
	}
	devEnv := func(dsn string, extra ...string) []string {
		addr := free()
		env := []string{"ESIA_BROKER_LISTEN=" + addr, "ESIA_BROKER_ISSUER=http://" + addr, "ESIA_BROKER_HTTP_METRICS_LISTEN=127.0.0.1:0"}
		if dsn != "" {
			env = append(env, "ESIA_BROKER_DATABASE_DSN="+dsn)
		}
		return append(env, extra...)
	}
	wroteState := func() []string {
		var files []string
		for _, f := range []string{devenv.SecretsFile, devenv.ServerFile} {
			if _, err := os.Stat(filepath.Join(devenv.StateDir, f)); err == nil {
				files = append(files, f)
			}
		}
		return files
	}
	exit2 := func(err error, text string) bool {
		var ee *exitError
		return errors.As(err, &ee) && ee.code == 2 && strings.Contains(err.Error(), text)
	}

	// A busy metrics port: refused before the database is created or a file written.
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, err = devOnce(t, append(devEnv(""), "ESIA_BROKER_HTTP_METRICS_LISTEN="+busy.Addr().String()))
	busy.Close()
	if err == nil || !strings.Contains(err.Error(), "http.metrics_listen") {
		t.Errorf("dev with a busy metrics port: %v", err)
	}
	if _, err := os.Stat(storage.DefaultSQLitePath); !errors.Is(err, os.ErrNotExist) || len(wroteState()) > 0 {
		t.Errorf("dev with a busy port created the database (%v) or wrote %v", err, wroteState())
	}

	// A database in use that dev did not create: refused, nothing written to it or the folder.
	other := "sqlite:" + filepath.Join(t.TempDir(), "region.db")
	env := testEnv(other)
	mustRun(t, env, "migrate", "up")
	mustRun(t, env, "roster", "schools", "add", "sch-1", "Школа")
	_, err = devOnce(t, devEnv(other))
	if !exit2(err, "did not create") {
		t.Errorf("dev on a database in use: %v", err)
	}
	if files := wroteState(); len(files) > 0 {
		t.Errorf("the refused dev wrote %v", files)
	}
	if out := mustRun(t, env, "clients", "list"); strings.Contains(out, "demo-diary") {
		t.Errorf("the refused dev registered its demo client: %s", out)
	}

	// An empty database whose secrets an admin command recorded (the server's), and one whose
	// schema is behind: refused, before any migration, with no mark written.
	fresh := "sqlite:" + filepath.Join(t.TempDir(), "fresh.db")
	mustRun(t, testEnv(fresh), "migrate", "up")
	mustRun(t, testEnv(fresh), "clients", "list")
	if _, err := devOnce(t, devEnv(fresh)); !exit2(err, "did not create") {
		t.Errorf("dev on an empty database with the server's fingerprints: %v", err)
	}
	freshDB, err := sql.Open("sqlite", strings.TrimPrefix(fresh, "sqlite:"))
	if err != nil {
		t.Fatal(err)
	}
	defer freshDB.Close()
	var marks int
	if err := freshDB.QueryRow(`SELECT COUNT(*) FROM database_marks`).Scan(&marks); err != nil || marks != 0 {
		t.Errorf("the refused dev marked the database: %d %v", marks, err)
	}
	if _, err := freshDB.Exec(`DELETE FROM schema_migrations WHERE version LIKE '0013%'`); err != nil {
		t.Fatal(err)
	}
	if _, err := devOnce(t, devEnv(fresh)); !exit2(err, "did not create") {
		t.Errorf("dev on a foreign database with its schema behind: %v", err)
	}
	var applied int
	if err := freshDB.QueryRow(`SELECT COUNT(*) FROM schema_migrations WHERE version LIKE '0013%'`).Scan(&applied); err != nil || applied != 0 {
		t.Errorf("the refused dev migrated the database: %d %v", applied, err)
	}
	if files := wroteState(); len(files) > 0 {
		t.Errorf("the refused dev wrote %v", files)
	}

	// Its own database: first start claims it, a restart is accepted.
	if out, err := devOnce(t, devEnv("")); err != nil || !strings.Contains(out, "parent-no-match") {
		t.Fatalf("first dev start: %v\n%s", err, out)
	}
	if files := wroteState(); len(files) != 2 {
		t.Errorf("after the first start ./%s holds %v", devenv.StateDir, files)
	}
	if out, err := devOnce(t, devEnv("")); err != nil || !strings.Contains(out, "printed at an earlier start") {
		t.Errorf("dev restart: %v\n%s", err, out)
	}
	// A secret from the environment that is not the one the dev database was made with: the
	// refusal says where it came from.
	k := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("p", 32)))
	if _, err := devOnce(t, devEnv("", "ESIA_BROKER_SECRETS_SNILS_PEPPER="+k)); !exit2(err, "secrets.snils_pepper came from the environment") {
		t.Errorf("dev with another pepper in the environment: %v", err)
	}
}

// TestDevOnAnotherDatabase: dev run on a database the environment names; the rotate command its
// banner prints, run in the folder without that environment, works on the same database and
// creates no other.
func TestDevOnAnotherDatabase(t *testing.T) {
	startDevWith(t, func(string) ([]string, []string) {
		return []string{"ESIA_BROKER_DATABASE_DSN=sqlite:./mydev.db"}, nil
	})
	out := mustRun(t, nil, "invites", "rotate", "--school", "demo-sch-1", "--class", "5А", "--role", "parent", "--format", "csv")
	if strings.Count(out, "\n") < 2 {
		t.Errorf("rotate in the dev folder: %s", out)
	}
	if _, err := os.Stat(storage.DefaultSQLitePath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the admin command created %s: %v", storage.DefaultSQLitePath, err)
	}
}
