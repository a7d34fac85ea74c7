// Command esia-broker is the identity broker: the server, the dev server, and the admin CLI.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"os/user"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/storage"
)

// exitError carries a process exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

type app struct {
	configPath string
	operator   string
	stdout     io.Writer
	stderr     io.Writer
	environ    []string
	// listener, when set, is served instead of listening on cfg.Listen (tests hand over a
	// listener they hold, so no port is picked, closed and reused).
	listener net.Listener
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot(&app{stdout: os.Stdout, stderr: os.Stderr, environ: os.Environ()}).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "esia-broker:", err)
		var ee *exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		os.Exit(1)
	}
}

func newRoot(a *app) *cobra.Command {
	root := &cobra.Command{
		Use:           "esia-broker",
		Short:         "OpenID Connect identity broker between school e-diaries and Gosuslugi (ESIA)",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(a.stdout)
	root.SetErr(a.stderr)
	root.PersistentFlags().StringVar(&a.configPath, "config", "", "YAML configuration file (every key can also be set as ESIA_BROKER_<KEY>)")
	root.PersistentFlags().StringVar(&a.operator, "operator", "", "who is running the command, for the audit log (default: the OS user)")
	root.AddCommand(a.serveCmd(), a.devCmd(), a.migrateCmd(), a.clientsCmd(), a.keysCmd(), a.rosterCmd(), a.invitesCmd(), a.accountsCmd(), a.auditCmd(), a.esiaCmd())
	return root
}

func (a *app) loadConfig() (*config.Config, error) {
	cfg, err := config.Load(a.configPath, a.environ)
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	return cfg, nil
}

func (a *app) openStore(ctx context.Context, cfg *config.Config) (*storage.Store, error) {
	s, err := storage.Open(ctx, cfg.Database.DSN, storage.Options{MaxOpenConns: cfg.Database.MaxOpenConns, NoPreparedStatements: !cfg.Database.PreparedStatements})
	if err != nil {
		return nil, err
	}
	s.RefreshGrace = cfg.Tokens.RefreshGracePeriod
	return s, nil
}

// withStore loads the configuration, opens the store and runs fn.
func (a *app) withStore(ctx context.Context, fn func(cfg *config.Config, s *storage.Store) error) error {
	cfg, err := a.loadConfig()
	if err != nil {
		return err
	}
	s, err := a.openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	return fn(cfg, s)
}

func (a *app) actor() string {
	if a.operator != "" {
		return "cli:" + a.operator
	}
	if u, err := user.Current(); err == nil {
		return "cli:" + u.Username
	}
	return "cli:unknown"
}

func newLogger(w io.Writer, cfg *config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Log.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}
