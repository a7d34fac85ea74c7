package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/gorilla/mux"
	"github.com/spf13/cobra"

	"github.com/esia-broker/esia-broker/broker"
	"github.com/esia-broker/esia-broker/broker/devrp"
	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/storage"
)

const devStateDir = ".esia-broker-dev"

func (a *app) devCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "dev",
		Short: "Run everything on one machine: the broker on the embedded store with a demo relying party",
		Long: `dev starts the broker on http://127.0.0.1:8080 with the embedded SQLite store
(./esia-broker.db), applies migrations, generates development secrets into ./` + devStateDir + `/,
registers the demo relying party "` + devrp.ClientID + `" and mounts it at /demo/.
Never use dev mode in production: cookies are not Secure and secrets live in a local file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env := append([]string{"ESIA_BROKER_DEV=true", "ESIA_BROKER_DATABASE_MIGRATE_ON_START=true", "ESIA_BROKER_LOG_FORMAT=text"}, a.environ...)
			cfg, err := config.Load(a.configPath, env)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if err := fillDevSecrets(cfg); err != nil {
				return err
			}
			ctx := cmd.Context()
			store, err := a.openStore(ctx, cfg)
			if err != nil {
				return err
			}
			if _, err := store.Migrate(ctx); err != nil {
				store.Close()
				return err
			}
			issuer := strings.TrimSuffix(cfg.Issuer, "/")
			secret, hash, err := broker.NewClientSecret()
			if err != nil {
				store.Close()
				return err
			}
			rp := devrp.New(issuer, secret)
			err = registerDemo(ctx, store, &storage.Client{
				ID: devrp.ClientID, Name: "Демо-дневник", SecretHash: hash,
				RedirectURIs: []string{rp.RedirectURI()}, PostLogoutRedirectURIs: []string{rp.PostLogoutURI()},
				GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"},
				Scopes: []string{"openid", "profile", "offline_access"},
			})
			store.Close()
			if err != nil {
				return err
			}
			return a.serve(ctx, cfg, func(r *mux.Router) { rp.Mount(r) }, func(addr string) {
				fmt.Fprintf(a.stdout, "\nesia-broker dev server is up (store: %s)\n", describeDSN(cfg.Database.DSN))
				fmt.Fprintf(a.stdout, "  demo relying party:  %s/demo/\n", issuer)
				fmt.Fprintf(a.stdout, "  discovery:           %s/.well-known/openid-configuration\n", issuer)
				fmt.Fprintf(a.stdout, "  metrics:             %s/metrics\n", issuer)
				fmt.Fprintf(a.stdout, "Open the demo page and press «Войти». Stop with Ctrl+C.\n\n")
			})
		},
	}
}

func describeDSN(dsn string) string {
	if dsn == "" {
		return "sqlite:" + storage.DefaultSQLitePath
	}
	if strings.HasPrefix(dsn, "sqlite:") {
		return dsn
	}
	return "postgres"
}

func registerDemo(ctx context.Context, s *storage.Store, c *storage.Client) error {
	err := s.CreateClient(ctx, c)
	if errors.Is(err, storage.ErrConflict) {
		return s.UpdateClient(ctx, c)
	}
	return err
}

// fillDevSecrets gives every secret the configuration leaves empty a random value kept in
// ./.esia-broker-dev/secrets.json, so that sessions and keys survive a restart of the dev server.
func fillDevSecrets(cfg *config.Config) error {
	path := filepath.Join(devStateDir, "secrets.json")
	saved := map[string]string{}
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &saved); err != nil {
			return fmt.Errorf("read %s: %w (delete it to start afresh)", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", path, err)
	}
	changed := false
	for name, dst := range map[string]*string{
		"master_key": &cfg.Secrets.MasterKey, "cookie_key": &cfg.Secrets.CookieKey,
		"snils_pepper": &cfg.Secrets.SNILSPepper, "token_key": &cfg.Secrets.TokenKey,
	} {
		if *dst != "" {
			continue
		}
		if saved[name] == "" {
			b := make([]byte, 32)
			if _, err := rand.Read(b); err != nil {
				return fmt.Errorf("generate dev secret: %w", err)
			}
			saved[name] = base64.StdEncoding.EncodeToString(b)
			changed = true
		}
		*dst = saved[name]
	}
	if !changed {
		return nil
	}
	if err := os.MkdirAll(devStateDir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", devStateDir, err)
	}
	b, _ := json.MarshalIndent(saved, "", "  ")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
