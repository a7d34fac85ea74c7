package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"time"

	"github.com/esia-broker/esia-broker/connectors"
	"github.com/esia-broker/esia-broker/internal/ops"
	"github.com/esia-broker/esia-broker/signing"
	"github.com/esia-broker/esia-broker/upstream"

	"github.com/gorilla/mux"
	"github.com/spf13/cobra"

	"github.com/esia-broker/esia-broker/broker"
	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/storage"
)

func (a *app) serveCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "serve",
		Short: "Run the broker (production)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadConfig()
			if err != nil {
				return err
			}
			conns, err := connectors.Build(cfg, nil)
			if err != nil {
				return err
			}
			return a.serve(cmd.Context(), cfg, serveOptions{connectors: conns})
		},
	}
}

type serveOptions struct {
	connectors []upstream.Connector
	mount      func(*mux.Router)
	// prepare runs on the migrated store before the broker starts (dev: claim the database,
	// check the secrets, seed the demo); the listeners are bound by then.
	prepare func(ctx context.Context, s *storage.Store) error
	// beforeMigrate runs on the store before migrations, writing nothing, in place of the
	// check of the recorded secrets (dev: refuse a database it may not use, then check them).
	beforeMigrate func(ctx context.Context, s *storage.Store) error
	ready         func(addr string)
}

// serve runs the broker on cfg.Listen until ctx ends, then drains in-flight requests. Every
// listener is bound before the database is touched: a busy port stops the start with nothing
// written.
func (a *app) serve(ctx context.Context, cfg *config.Config, o serveOptions) error {
	log := ops.NewLogger(a.stderr, cfg)
	l := a.listener
	var err error
	if l == nil {
		l, err = ops.Listen(a.environ, cfg)
	}
	if err != nil {
		return err
	}
	defer l.Close()
	var metricsL, pprofL net.Listener
	if cfg.HTTP.MetricsListen != "" {
		if metricsL, err = net.Listen("tcp", cfg.HTTP.MetricsListen); err != nil {
			return fmt.Errorf("listen on %s (http.metrics_listen): %w", cfg.HTTP.MetricsListen, err)
		}
		defer metricsL.Close()
	}
	if cfg.HTTP.PprofListen != "" {
		if pprofL, err = net.Listen("tcp", cfg.HTTP.PprofListen); err != nil {
			return fmt.Errorf("listen on %s (http.pprof_listen): %w", cfg.HTTP.PprofListen, err)
		}
		defer pprofL.Close()
	}
	store, err := a.openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer store.Close()
	// Before anything is written — a migration included — the database must be one these
	// secrets belong to, and (dev) one the dev server may use.
	preflight := o.beforeMigrate
	if preflight == nil {
		preflight = func(ctx context.Context, store *storage.Store) error { return checkRecordedSecrets(ctx, cfg, store) }
	}
	if err := preflight(ctx, store); err != nil {
		return err
	}
	if cfg.Database.MigrateOnStart {
		applied, err := store.Migrate(ctx)
		if err != nil {
			return err
		}
		if len(applied) > 0 {
			log.Info("applied migrations", "versions", applied)
		}
	}
	if o.prepare != nil {
		if err := o.prepare(ctx, store); err != nil {
			return err
		}
	}
	// argon2 leaves each check's memory to the garbage collector: without a limit the heap grows
	// to a few times children.hash_memory_mib before it is collected. A soft limit (unless
	// GOMEMLIMIT is set) keeps the process near the budget plus what the rest needs.
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(int64(cfg.Children.HashMemoryMiB+256) << 20)
	}
	tp, stopTracing, err := ops.NewTracer(ctx, cfg.Telemetry, log)
	if err != nil {
		return err
	}
	defer stopTracing()
	store.SetTracer(tp)
	b, err := broker.New(ctx, broker.Options{Config: cfg, Store: store, Logger: log, Mount: o.mount, Connectors: o.connectors, Tracer: tp})
	if err != nil {
		var differ *storage.SecretsDifferError
		var unrecorded *storage.SecretsUnrecordedError
		if errors.As(err, &differ) || errors.As(err, &unrecorded) || errors.Is(err, signing.ErrWrongMasterKey) {
			return &exitError{code: 2, err: err}
		}
		return err
	}
	if !cfg.Children.PasswordAccounts {
		// A region that allows only ESIA: the sub-accounts that exist stop now (their tokens
		// are refused by every replica anyway; this ends them in the database, audited).
		n, err := b.DisablePasswordAccounts(ctx)
		if err != nil {
			return fmt.Errorf("disable password sub-accounts: %w", err)
		}
		if n > 0 {
			log.Info("children.password_accounts is off: disabled login-and-password sub-accounts", "count", n)
		}
	}
	srv := &http.Server{
		Handler:           b.Handler(),
		ReadTimeout:       cfg.HTTP.ReadTimeout,
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      cfg.HTTP.WriteTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	go b.Run(bg)
	if metricsL != nil {
		defer ops.ServeMetrics(metricsL, b.MetricsHandler(), log)()
	}
	if pprofL != nil {
		defer ops.ServePprof(pprofL, log)()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	log.Info("listening", "addr", l.Addr().String(), "issuer", cfg.Issuer, "store", string(store.Dialect()))
	if o.ready != nil {
		o.ready(l.Addr().String())
	}
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down: draining in-flight requests", "timeout", cfg.HTTP.ShutdownTimeout.String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.HTTP.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}

func (a *app) migrateCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "migrate", Short: "Apply or show database migrations"}
	cmd.AddCommand(&cobra.Command{
		Use: "up", Short: "Apply every pending migration", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withMigrationStore(cmd.Context(), func(s *storage.Store) error {
				applied, err := s.Migrate(cmd.Context())
				for _, v := range applied {
					fmt.Fprintf(a.stdout, "applied %s\n", v)
				}
				if err != nil {
					return err
				}
				if len(applied) == 0 {
					fmt.Fprintln(a.stdout, "nothing to apply: the schema is current")
				}
				return nil
			})
		},
	}, &cobra.Command{
		Use: "status", Short: "List migrations as applied or pending", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withExistingMigrationStore(cmd.Context(), func(s *storage.Store) error {
				st, err := s.MigrationStatus(cmd.Context())
				if err != nil {
					return err
				}
				for _, m := range st {
					state := "pending"
					if m.Applied {
						state = "applied"
					}
					fmt.Fprintf(a.stdout, "%-8s %s\n", state, m.Version)
				}
				return nil
			})
		},
	}, a.migrateReportCmd())
	return cmd
}

// checkRecordedSecrets refuses (exit code 2), before anything is written, secrets that differ
// from the fingerprints the database holds.
func checkRecordedSecrets(ctx context.Context, cfg *config.Config, store *storage.Store) error {
	err := store.CheckRecordedSecrets(ctx, cfg.SecretFingerprints(), cfg.LegacySecretFingerprints())
	var differ *storage.SecretsDifferError
	if errors.As(err, &differ) {
		return &exitError{code: 2, err: err}
	}
	return err
}
