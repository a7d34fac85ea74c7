// Command esia-broker is the identity broker: the server, the dev server, and the admin CLI.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/internal/devenv"
	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/provider"
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
	root.AddCommand(a.serveCmd(), a.devCmd(), a.migrateCmd(), a.clientsCmd(), a.keysCmd(), a.rosterCmd(), a.invitesCmd(), a.accountsCmd(), a.auditCmd(), a.esiaCmd(), a.secretsCmd(), a.linksCmd(), a.childrenCmd())
	return root
}

func (a *app) loadConfig() (*config.Config, error) {
	cfg, err := config.Load(a.configPath, a.environ)
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	return cfg, nil
}

// loadAdminConfig is the configuration of an admin command. Run in the dev server's folder
// (./.esia-broker-dev holds its secrets) with no --config and no secret in the environment, a
// command works on what the dev server works on: dev mode, its secrets, its issuer.
func (a *app) loadAdminConfig() (*config.Config, error) {
	if !a.inDevFolder() {
		return a.loadConfig()
	}
	cfg, err := config.Load("", append([]string{"ESIA_BROKER_DEV=true"}, a.environ...))
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	st, err := devenv.ReadState()
	if err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	if err := st.Apply(cfg, false); err != nil {
		return nil, &exitError{code: 2, err: err}
	}
	if !hasEnv(a.environ, "ESIA_BROKER_ISSUER") && st.Issuer != "" {
		cfg.Issuer = st.Issuer
	}
	if !hasEnv(a.environ, "ESIA_BROKER_DATABASE_DSN") && st.DSN != "" {
		cfg.Database.DSN = st.DSN
	}
	fmt.Fprintf(a.stderr, "esia-broker: in the dev server's folder: using its secrets and settings from ./%s (dev mode)\n", devenv.StateDir)
	return cfg, nil
}

// inDevFolder tells whether an admin command should take the dev server's state: no
// configuration file, no secret in the environment, and ./.esia-broker-dev/secrets.json present.
func (a *app) inDevFolder() bool {
	if a.configPath != "" {
		return false
	}
	for _, kv := range a.environ {
		if strings.HasPrefix(kv, "ESIA_BROKER_SECRETS_") {
			return false
		}
	}
	_, err := os.Stat(filepath.Join(devenv.StateDir, devenv.SecretsFile))
	return err == nil
}

func hasEnv(environ []string, name string) bool {
	for _, kv := range environ {
		if k, _, _ := strings.Cut(kv, "="); k == name {
			return true
		}
	}
	return false
}

func (a *app) openStore(ctx context.Context, cfg *config.Config) (*storage.Store, error) {
	s, err := storage.Open(ctx, cfg.Database.DSN, storage.Options{MaxOpenConns: cfg.Database.MaxOpenConns, NoPreparedStatements: !cfg.Database.PreparedStatements})
	if err != nil {
		return nil, err
	}
	s.RefreshGrace = cfg.Tokens.RefreshGracePeriod
	return s, nil
}

// withStore loads an admin command's configuration, opens the store, refuses a schema that
// is not current and secrets that are not the ones the database was first used with (both exit
// code 2, before anything is written), and runs fn.
func (a *app) withStore(ctx context.Context, fn func(cfg *config.Config, s *storage.Store) error) error {
	return a.withStoreRecording(ctx, storage.RecordWhenEmpty, fn)
}

// withStoreRecording is withStore with the say on whether the secrets' fingerprints may be
// recorded (only on an empty database, or never: `secrets check` reads only).
func (a *app) withStoreRecording(ctx context.Context, rec storage.SecretRecording, fn func(cfg *config.Config, s *storage.Store) error) error {
	return a.withCurrentStore(ctx, func(cfg *config.Config, s *storage.Store) error {
		if err := verifySecrets(ctx, cfg, s, rec); err != nil {
			return err
		}
		// A command that ends sessions (accounts forget, disable, unlink) queues logouts with
		// the sub each diary saw, by the setting the server recorded.
		pepper, err := config.DecodeSecret(cfg.Secrets.SNILSPepper)
		if err != nil {
			return fmt.Errorf("secrets.snils_pepper: %w", err)
		}
		own, err := provider.NewSubjects(cfg.Tokens, cfg.OIDUpstream(), linking.NewDigester(pepper))
		if err != nil {
			return err
		}
		subjects, differs, err := provider.SubjectsOfServer(ctx, s, own)
		if err != nil {
			return err
		}
		if differs {
			fmt.Fprintln(a.stderr, "note: following the server's tokens.subject and tokens.pairwise_sectors recorded in the database, not this command's configuration")
		}
		subjects.Install(s)
		return fn(cfg, s)
	})
}

// withCurrentStore opens the store of an admin command and refuses a schema that is not
// current; the secrets are left to fn (`secrets accept` compares them itself).
func (a *app) withCurrentStore(ctx context.Context, fn func(cfg *config.Config, s *storage.Store) error) error {
	return a.openAdminStore(ctx, true, func(cfg *config.Config, s *storage.Store) error {
		if err := checkSchema(ctx, s); err != nil {
			return err
		}
		return fn(cfg, s)
	})
}

// withMigrationStore is for `migrate up`: it works on a schema that is not current (creating
// the SQLite file when there is none) and never touches what the secrets protect.
func (a *app) withMigrationStore(ctx context.Context, fn func(s *storage.Store) error) error {
	return a.openAdminStore(ctx, false, func(_ *config.Config, s *storage.Store) error { return fn(s) })
}

// withExistingMigrationStore is withMigrationStore for a command that only reads (migrate
// status): it refuses a SQLite file that does not exist instead of creating it.
func (a *app) withExistingMigrationStore(ctx context.Context, fn func(s *storage.Store) error) error {
	return a.openAdminStore(ctx, true, func(_ *config.Config, s *storage.Store) error { return fn(s) })
}

// openAdminStore loads an admin command's configuration and opens its store for fn; with
// mustExist a SQLite file that does not exist is refused, not created.
func (a *app) openAdminStore(ctx context.Context, mustExist bool, fn func(cfg *config.Config, s *storage.Store) error) error {
	cfg, err := a.loadAdminConfig()
	if err != nil {
		return err
	}
	if mustExist {
		if err := databaseExists(cfg); err != nil {
			return err
		}
	}
	s, err := a.openStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	return fn(cfg, s)
}

// databaseExists refuses (exit code 2) an embedded store whose file does not exist: only
// `migrate up`, `serve` and `dev` create one.
func databaseExists(cfg *config.Config) error {
	if path, ok := storage.SQLitePath(cfg.Database.DSN); ok {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return &exitError{code: 2, err: fmt.Errorf("no database at %s: check database.dsn, or create it with `esia-broker migrate up`; nothing was written", path)}
		}
	}
	return nil
}

// checkSchema refuses (exit code 2) a database whose schema is behind this binary: a command
// would write rows the old schema cannot hold, or skip the checks the new one carries.
func checkSchema(ctx context.Context, s *storage.Store) error {
	current, err := s.MigrationsCurrent(ctx)
	if err != nil {
		return fmt.Errorf("check the database schema: %w", err)
	}
	if !current {
		return &exitError{code: 2, err: errors.New("the database schema is not current: run `esia-broker migrate up` first; nothing was written")}
	}
	return nil
}

// verifySecrets refuses (exit code 2) secrets that differ from those the database was first used
// with, and a database in use that has no fingerprints yet.
func verifySecrets(ctx context.Context, cfg *config.Config, s *storage.Store, rec storage.SecretRecording) error {
	err := s.VerifySecrets(ctx, cfg.SecretFingerprints(), rec, cfg.LegacySecretFingerprints())
	var differ *storage.SecretsDifferError
	var unrecorded *storage.SecretsUnrecordedError
	if errors.As(err, &differ) || errors.As(err, &unrecorded) {
		return &exitError{code: 2, err: err}
	}
	return err
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
