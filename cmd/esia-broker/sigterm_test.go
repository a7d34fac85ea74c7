package main

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/internal/testwait"

	"github.com/esia-broker/esia-broker/storage/storagetest"
)

// TestSIGTERMUnderLoad runs the real binary, sends SIGTERM while clients hammer it, and checks
// that every request that was accepted got a complete answer, and the process exits cleanly.
func TestSIGTERMUnderLoad(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "esia-broker")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	// The server gets the test's listening socket (socket activation, file descriptor 3): no
	// port is picked, closed and reused by someone else in between.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	lf, err := l.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), testEnv(storagetest.NewSQLiteDSN(t))...)
	cmd.Env = append(cmd.Env, "LISTEN_FDS=1", "ESIA_BROKER_LISTEN="+addr, "ESIA_BROKER_ISSUER=http://"+addr, "ESIA_BROKER_HTTP_METRICS_LISTEN=127.0.0.1:0")
	cmd.ExtraFiles = []*os.File{lf}
	logs := &lockedBuffer{}
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Only the server holds the socket now: when it closes it, connections are refused.
	lf.Close()
	l.Close()
	base := "http://" + addr
	testwait.Until(t, 30*time.Second, "the server to get ready", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	var (
		mu                  sync.Mutex
		ok, refused, broken int
		wg                  sync.WaitGroup
	)
	stop := make(chan struct{})
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get(base + "/.well-known/openid-configuration")
				mu.Lock()
				switch {
				case err == nil:
					body, rerr := io.ReadAll(resp.Body)
					resp.Body.Close()
					if rerr == nil && resp.StatusCode == 200 && bytes.Contains(body, []byte(`"issuer"`)) {
						ok++
					} else {
						broken++
					}
				case errors.Is(err, syscall.ECONNREFUSED) || strings.Contains(err.Error(), "connection refused"):
					refused++
				default:
					broken++ // reset before any answer: the connection was still in the kernel's backlog
				}
				mu.Unlock()
			}
		}()
	}
	// SIGTERM once the load is really flowing (not after a guessed sleep).
	testwait.Until(t, 30*time.Second, "50 answered requests before SIGTERM", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return ok >= 50
	})
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	close(stop)
	wg.Wait()
	if err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, logs.String())
	}
	// Every request the server handled (its access log) reached its client complete; the rest
	// never got to the server (refused, or reset in the listen backlog as the listener closed),
	// which a client retries.
	handled := strings.Count(logs.String(), `"route":"/.well-known/openid-configuration","status":200`)
	if ok < 20 || handled != ok {
		t.Errorf("the server handled %d requests, %d complete answers arrived (refused %d, reset before any answer %d)", handled, ok, refused, broken)
	}
	if !strings.Contains(logs.String(), "draining in-flight requests") || !strings.Contains(logs.String(), `"msg":"stopped"`) {
		t.Errorf("shutdown not logged:\n%s", logs.String())
	}
	t.Logf("%d handled and answered; %d refused and %d reset before reaching the server", ok, refused, broken)
}
