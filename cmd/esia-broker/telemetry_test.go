package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/internal/testwait"
	"github.com/esia-broker/esia-broker/storage/storagetest"
)

// TestServeExportsTraces: with telemetry.otlp_endpoint set, serve sends its spans to the OTLP
// collector (flushed at shutdown); without it, it sends nothing.
func TestServeExportsTraces(t *testing.T) {
	for _, on := range []bool{true, false} {
		var posts, bodyBytes atomic.Int64
		collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost && r.URL.Path == "/v1/traces" {
				b, _ := io.ReadAll(r.Body)
				posts.Add(1)
				bodyBytes.Add(int64(len(b)))
			}
			w.WriteHeader(http.StatusOK)
		}))
		env := testEnv(storagetest.NewSQLiteDSN(t))
		if on {
			env = append(env, "ESIA_BROKER_TELEMETRY_OTLP_ENDPOINT="+collector.URL)
		}
		a := &app{stdout: &bytes.Buffer{}, stderr: &lockedBuffer{}, environ: env}
		cfg, err := a.loadConfig()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		ready := make(chan string, 1)
		done := make(chan error, 1)
		go func() { done <- a.serve(ctx, cfg, serveOptions{ready: func(addr string) { ready <- addr }}) }()
		var addr string
		select {
		case addr = <-ready:
		case err := <-done:
			t.Fatalf("serve: %v", err)
		case <-time.After(30 * time.Second):
			t.Fatal("serve did not start")
		}
		for _, path := range []string{"/readyz", "/.well-known/openid-configuration"} {
			resp, err := http.Get("http://" + addr + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
		}
		cancel()
		if err := testwait.Recv(t, done, 15*time.Second, "serve to stop"); err != nil {
			t.Fatal(err)
		}
		collector.Close()
		if got := posts.Load() > 0 && bodyBytes.Load() > 0; got != on {
			t.Errorf("otlp_endpoint set = %v: %d exports (%d bytes) reached the collector; log: %s", on, posts.Load(), bodyBytes.Load(), a.stderr.(*lockedBuffer).String())
		}
	}
}
