package main

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/gorilla/mux"
	"github.com/spf13/cobra"

	"github.com/esia-broker/esia-broker/broker"
	"github.com/esia-broker/esia-broker/broker/devrp"
	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/connectors"
	"github.com/esia-broker/esia-broker/esia"
	"github.com/esia-broker/esia-broker/internal/devenv"
	"github.com/esia-broker/esia-broker/provider"
	"github.com/esia-broker/esia-broker/storage"
)

func (a *app) devCmd() *cobra.Command {
	var population int
	var skipSig bool
	var tokenAlg, listen string
	var port int
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run everything on one machine: the broker on the embedded store with a demo relying party",
		Long: `dev starts the broker on http://127.0.0.1:8080 with the embedded SQLite store
(./esia-broker.db), applies migrations, generates development secrets into ./` + devenv.StateDir + `/,
registers the demo relying party "` + devrp.ClientID + `" and mounts it at /demo/.
Never use dev mode in production: cookies are not Secure and secrets live in a local file.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			env := append([]string{"ESIA_BROKER_DEV=true", "ESIA_BROKER_DATABASE_MIGRATE_ON_START=true", "ESIA_BROKER_LOG_FORMAT=text"}, a.environ...)
			switch {
			case port != 0 && listen != "":
				return &exitError{code: 2, err: errors.New("give --port or --listen, not both")}
			case port < 0 || port > 65535:
				return &exitError{code: 2, err: fmt.Errorf("--port must be between 1 and 65535, got %d", port)}
			case port != 0:
				env = append(env, "ESIA_BROKER_LISTEN=127.0.0.1:"+strconv.Itoa(port))
			case listen != "":
				env = append(env, "ESIA_BROKER_LISTEN="+listen)
			}
			cfg, err := config.Load(a.configPath, env)
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if err := devenv.DeriveIssuer(cfg); err != nil {
				return &exitError{code: 2, err: err}
			}
			inFile, err := config.FileSets(a.configPath, "http.metrics_listen")
			if err != nil {
				return &exitError{code: 2, err: err}
			}
			if !inFile && !hasEnv(a.environ, "ESIA_BROKER_HTTP_METRICS_LISTEN") {
				// A second dev server (--port) must not collide on the metrics port: dev serves
				// metrics only when the environment or the --config file asks.
				cfg.HTTP.MetricsListen = ""
			}
			st, err := devenv.ReadState()
			if err != nil {
				return err
			}
			fromOutside := st.FromOutside(cfg)
			if err := st.Apply(cfg, true); err != nil {
				return err
			}
			if cfg.Region.Name == config.Defaults()["region.name"] {
				cfg.Region.Name = "Электронный дневник (демо)"
			}
			if cfg.Region.SupportPhone == "" && cfg.Region.SupportEmail == "" {
				cfg.Region.SupportPhone, cfg.Region.SupportEmail = "8 800 000-00-00", "support@example.ru"
			}
			if cfg.Activation.ClientID == "" {
				cfg.Activation.ClientID = "demo-mobile"
			}
			ctx := cmd.Context()
			issuer := strings.TrimSuffix(cfg.Issuer, "/")
			secret, hash, err := provider.NewClientSecret()
			if err != nil {
				return err
			}
			rp := devrp.New(issuer, secret)
			var codes []string
			// Runs once the listeners are bound and the store is migrated: nothing is written,
			// in the database or in ./.esia-broker-dev, before the database is known to be the
			// dev server's and the secrets its own.
			// secretsHint says how to mend dev secrets the database refused.
			secretsHint := func(err error) error {
				hint := fmt.Sprintf("delete ./%s and the database %s to start afresh", devenv.StateDir, devenv.DescribeDSN(cfg.Database.DSN))
				if len(fromOutside) > 0 {
					hint = fmt.Sprintf("%s came from the environment or --config, not from ./%s: unset it to use the dev folder's", strings.Join(fromOutside, ", "), devenv.StateDir)
				}
				return fmt.Errorf("%w\n(the dev server's secrets do not match its database %s: %s)", err, devenv.DescribeDSN(cfg.Database.DSN), hint)
			}
			prepare := func(ctx context.Context, store *storage.Store) error {
				if err := store.ClaimForDev(ctx); err != nil {
					if errors.Is(err, storage.ErrNotDevDatabase) {
						return &exitError{code: 2, err: fmt.Errorf("%s: %w", devenv.DescribeDSN(cfg.Database.DSN), err)}
					}
					return err
				}
				// A database that has data but no fingerprints yet gets them from the broker
				// once the signing keys decrypt.
				err := verifySecrets(ctx, cfg, store, storage.RecordWhenEmpty)
				var unrecorded *storage.SecretsUnrecordedError
				if err != nil && !errors.As(err, &unrecorded) {
					return secretsHint(err)
				}
				if err := st.SaveSecrets(); err != nil {
					return err
				}
				err = devenv.RegisterDemo(ctx, store, &storage.Client{
					ID: devrp.ClientID, Name: "Демо-дневник", SecretHash: hash,
					RedirectURIs: []string{rp.RedirectURI()}, PostLogoutRedirectURIs: []string{rp.PostLogoutURI()},
					GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"},
					Scopes: []string{"openid", "profile", "offline_access", "students", "esia"}, HomeURL: issuer + "/demo/",
				})
				if err == nil && cfg.Activation.ClientID == "demo-mobile" {
					err = devenv.RegisterDemo(ctx, store, &storage.Client{ID: "demo-mobile", Name: "Госуслуги (демо-приложение)", Public: true,
						GrantTypes: []string{provider.GrantTypeActivationKey, "refresh_token"}, Scopes: []string{"openid", "profile", "students", "offline_access"}})
				}
				if err != nil {
					return err
				}
				link, inv, err := broker.Services(cfg, store)
				if err != nil {
					return err
				}
				codes, err = devenv.SeedRoster(ctx, store, link, inv)
				return err
			}
			emu, err := devenv.Emulator(cfg, population, skipSig, tokenAlg)
			if err != nil {
				return err
			}
			conns, err := connectors.Build(cfg, emu.TokenVerifier())
			if err != nil {
				return err
			}
			mount := func(r *mux.Router) {
				r.PathPrefix("/_esia/").Handler(http.StripPrefix("/_esia", emu.Handler()))
				rp.Mount(r)
			}
			beforeMigrate := func(ctx context.Context, store *storage.Store) error {
				ok, err := store.DevCandidate(ctx)
				if err != nil {
					return err
				}
				if !ok {
					return &exitError{code: 2, err: fmt.Errorf("%s: %w", devenv.DescribeDSN(cfg.Database.DSN), storage.ErrNotDevDatabase)}
				}
				if err := checkRecordedSecrets(ctx, cfg, store); err != nil {
					return secretsHint(err)
				}
				return nil
			}
			return a.serve(ctx, cfg, serveOptions{connectors: conns, mount: mount, prepare: prepare, beforeMigrate: beforeMigrate, ready: func(addr string) {
				st.Issuer, st.DSN = issuer, cfg.Database.DSN
				if err := st.SaveServer(); err != nil {
					fmt.Fprintf(a.stderr, "warning: %v (admin commands in this folder will not find the dev server's address)\n", err)
				}
				fmt.Fprintf(a.stdout, "\nesia-broker dev server is up (store: %s)\n", devenv.DescribeDSN(cfg.Database.DSN))
				fmt.Fprintf(a.stdout, "  demo relying party:  %s/demo/\n", issuer)
				fmt.Fprintf(a.stdout, "  ESIA emulator:       under %s/_esia/, reached by «Войти через Госуслуги» (personas: %s)\n", issuer, devenv.PersonaNames())
				fmt.Fprintf(a.stdout, "  discovery:           %s/.well-known/openid-configuration\n", issuer)
				if m := cfg.HTTP.MetricsListen; m != "" {
					fmt.Fprintf(a.stdout, "  metrics:             http://%s/metrics\n", m)
				}
				for _, c := range codes {
					fmt.Fprintf(a.stdout, "  %s\n", c)
				}
				fmt.Fprintf(a.stdout, "Open the demo page, press «Войти», then «Войти через Госуслуги» and pick a persona. Stop with Ctrl+C.\n\n")
			}})
		},
	}
	cmd.Flags().IntVar(&port, "port", 0, "listen on 127.0.0.1:PORT (the issuer, the demo relying party and the emulator follow)")
	cmd.Flags().StringVar(&listen, "listen", "", "listen on HOST:PORT (the issuer follows, with 127.0.0.1 for an unspecified host)")
	cmd.Flags().IntVar(&population, "esia-random-population", 0, "answer every ESIA login at once as a random member of a generated population of this size (load tests)")
	cmd.Flags().BoolVar(&skipSig, "esia-skip-signature-checks", false, "the emulator does not verify client secrets (load tests measure the broker only)")
	cmd.Flags().StringVar(&tokenAlg, "esia-token-alg", esia.AlgGOST, "how the emulator signs its tokens: GOST3410_2012_256 or RS256")
	return cmd
}
