package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// syncBuffer collects a process's output, written from another goroutine, for the test to read.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitReady(t *testing.T, url string, logs *syncBuffer) {
	t.Helper()
	for i := 0; ; i++ {
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return
			}
		}
		if i > 400 {
			t.Fatalf("%s did not answer:\n%s", url, logs)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

// TestBenchEndToEnd runs what make bench runs, small: a region through the roster CLI, the
// ESIA emulator in its own server with every signature check on, the real broker binary via
// serve configured from the emulator's files, and every load mode for a second. It checks that
// each mode completes logins or calls without errors, that the first logins met the consent form
// and the timed logins did not.
func TestBenchEndToEnd(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "esia-broker")
	if out, err := exec.Command("go", "build", "-o", bin, "../esia-broker").CombinedOutput(); err != nil {
		t.Fatalf("build the broker: %v\n%s", err, out)
	}
	// Both servers get listeners the test holds: no port is picked, closed and reused.
	brokerLn, esiaLn := listen(t), listen(t)
	brokerAddr, esiaAddr := brokerLn.Addr().String(), esiaLn.Addr().String()
	issuer := "http://" + brokerAddr
	k := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("q", 32)))
	env := append(os.Environ(),
		"ESIA_BROKER_DATABASE_DSN=sqlite:"+filepath.Join(dir, "bench.db"),
		"ESIA_BROKER_SECRETS_MASTER_KEY="+k, "ESIA_BROKER_SECRETS_COOKIE_KEY="+k,
		"ESIA_BROKER_SECRETS_SNILS_PEPPER="+k, "ESIA_BROKER_SECRETS_TOKEN_KEY="+k,
		"ESIA_BROKER_LISTEN="+brokerAddr, "ESIA_BROKER_ISSUER="+issuer, "ESIA_BROKER_HTTP_METRICS_LISTEN=127.0.0.1:0", "ESIA_BROKER_LOG_LEVEL=warn",
		"ESIA_BROKER_LIMITS_PAGES_PER_IP_PER_MINUTE=0", "ESIA_BROKER_LIMITS_TOKEN_PER_IP_PER_MINUTE=0",
		"ESIA_BROKER_UPSTREAM_ESIA_ENABLED=true", "ESIA_BROKER_UPSTREAM_ESIA_BASE_URL=http://"+esiaAddr,
		"ESIA_BROKER_UPSTREAM_ESIA_CLIENT_ID=ESIA_BROKER_BENCH", "ESIA_BROKER_UPSTREAM_ESIA_SIGNER=gost",
		"ESIA_BROKER_UPSTREAM_ESIA_KEY_FILE="+filepath.Join(dir, "client-key.pem"),
		"ESIA_BROKER_UPSTREAM_ESIA_CERT_FILE="+filepath.Join(dir, "client-cert.pem"),
		"ESIA_BROKER_UPSTREAM_ESIA_VERIFY_CERT_FILES="+filepath.Join(dir, "esia-cert.pem"),
		"ESIA_BROKER_UPSTREAM_ESIA_ACCESS_TYPE=online")
	cli := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, args...)
		cmd.Env, cmd.Dir = env, dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("esia-broker %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	cli("migrate", "up")
	if err := region([]string{"-schools", "2", "-students", "12", "-population", "12", "-out", dir}); err != nil {
		t.Fatal(err)
	}
	cli("roster", "schools", "import", filepath.Join(dir, "schools.csv"))
	cli("roster", "import", filepath.Join(dir, "roster.csv"))
	m := regexp.MustCompile(`client_secret: (\S+)`).FindStringSubmatch(cli("clients", "create", "bench",
		"--redirect-uri", "http://127.0.0.1:9/bench/callback", "--grant-type", "authorization_code,refresh_token,client_credentials",
		"--scope", "openid,profile,students,offline_access"))
	if m == nil {
		t.Fatal("no client secret printed")
	}

	ctx, stopEmulator := context.WithCancel(context.Background())
	emuDone := make(chan error, 1)
	go func() {
		emuDone <- emulatorOn(ctx, []string{"-dir", dir, "-population", "6", "-in-order-first",
			"-redirect-uri", issuer + "/esia/callback"}, esiaLn)
	}()
	t.Cleanup(func() {
		stopEmulator()
		select {
		case err := <-emuDone:
			if err != nil {
				t.Errorf("emulator: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("the emulator did not stop within 30 s")
		}
	})
	waitReady(t, "http://"+esiaAddr+"/rs/prns/1", &syncBuffer{})

	logs := &syncBuffer{}
	lf, err := brokerLn.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	serve := exec.Command(bin, "serve")
	serve.Env, serve.Dir, serve.Stderr = append(env, "LISTEN_FDS=1"), dir, logs
	serve.ExtraFiles = []*os.File{lf} // socket activation: the broker serves the test's listener
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	lf.Close()
	brokerLn.Close()
	t.Cleanup(func() {
		_ = serve.Process.Signal(os.Interrupt)
		_ = serve.Wait()
	})
	waitReady(t, issuer+"/readyz", logs)

	out := filepath.Join(dir, "report.json")
	if err := run([]string{"-issuer", issuer, "-client-id", "bench", "-client-secret", m[1], "-users", "2", "-duration", "1s",
		"-first-logins", "6", "-rate", "10", "-pid", "0", "-json", out}); err != nil {
		t.Fatalf("run: %v\n%s", err, logs.String())
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var rows []struct {
		Mode     string         `json:"mode"`
		OK       int            `json:"ok"`
		Errors   map[string]int `json:"errors"`
		Consents *int           `json:"consent_pages"`
	}
	if err := json.Unmarshal(b, &rows); err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range rows {
		seen[r.Mode] = true
		if r.OK == 0 || len(r.Errors) > 0 {
			t.Errorf("mode %s: %d ok, errors %v", r.Mode, r.OK, r.Errors)
		}
		switch r.Mode {
		case "first_login":
			if r.OK != 6 || r.Consents == nil || *r.Consents != 6 {
				t.Errorf("first_login: %d ok, consent pages %v; want 6 and 6", r.OK, r.Consents)
			}
		case "login", "login_rate":
			if r.Consents == nil || *r.Consents != 0 {
				t.Errorf("%s: consent pages %v, want 0 for returning users", r.Mode, r.Consents)
			}
		}
	}
	for _, mode := range []string{"first_login", "login", "login_rate", "refresh", "client_credentials", "userinfo"} {
		if !seen[mode] {
			t.Errorf("mode %s missing from the report", mode)
		}
	}
}
