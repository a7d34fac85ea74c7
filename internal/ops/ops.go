package ops

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/esia-broker/esia-broker/config"
)

// Listen returns the socket to serve: one passed by systemd socket activation (LISTEN_FDS=1: file descriptor 3), or a new one on cfg.Listen.
func Listen(environ []string, cfg *config.Config) (net.Listener, error) {
	env := map[string]string{}
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	if n := env["LISTEN_FDS"]; n != "" {
		if pid := env["LISTEN_PID"]; pid != "" && pid != strconv.Itoa(os.Getpid()) {
			return net.Listen("tcp", cfg.Listen) // meant for another process
		}
		if n != "1" {
			return nil, fmt.Errorf("socket activation: LISTEN_FDS=%s, want 1", n)
		}
		f := os.NewFile(3, "listen-fd-3")
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("socket activation: file descriptor 3 is not a listening socket: %w", err)
		}
		return l, nil
	}
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	return l, nil
}

// ServeMetrics serves /metrics on its own listener (http.metrics_listen), never on the broker's
// public address.
func ServeMetrics(l net.Listener, h http.Handler, log *slog.Logger) (stop func()) {
	m := http.NewServeMux()
	m.Handle("GET /metrics", h)
	srv := &http.Server{Handler: m, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	log.Info("metrics listening", "addr", l.Addr().String())
	return func() { _ = srv.Close() }
}

// ServePprof serves Go's profiler on its own loopback listener (http.pprof_listen), never on the
// broker's own address.
func ServePprof(l net.Listener, log *slog.Logger) (stop func()) {
	m := http.NewServeMux()
	m.HandleFunc("/debug/pprof/", pprof.Index)
	m.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	m.HandleFunc("/debug/pprof/profile", pprof.Profile)
	m.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	m.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: m, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	log.Info("profiler listening", "addr", l.Addr().String())
	return func() { _ = srv.Close() }
}

// NewLogger is the broker's logger on w, at log.level, in log.format (json or text).
func NewLogger(w io.Writer, cfg *config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
