package main

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/spf13/cobra"

	"github.com/esia-broker/esia-broker/broker/devrp"
	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/esia"
	"github.com/esia-broker/esia-broker/esia/esiatest"
	"github.com/esia-broker/esia-broker/esia/gost"
	"github.com/esia-broker/esia-broker/invites"
	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/provider"
	"github.com/esia-broker/esia-broker/storage"
)

const devStateDir = ".esia-broker-dev"

func (a *app) devCmd() *cobra.Command {
	var population int
	var skipSig bool
	var tokenAlg, listen string
	var port int
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run everything on one machine: the broker on the embedded store with a demo relying party",
		Long: `dev starts the broker on http://127.0.0.1:8080 with the embedded SQLite store
(./esia-broker.db), applies migrations, generates development secrets into ./` + devStateDir + `/,
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
			if err := deriveDevIssuer(cfg); err != nil {
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
			st, err := readDevState()
			if err != nil {
				return err
			}
			fromOutside := st.fromOutside(cfg)
			if err := st.apply(cfg, true); err != nil {
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
				hint := fmt.Sprintf("delete ./%s and the database %s to start afresh", devStateDir, describeDSN(cfg.Database.DSN))
				if len(fromOutside) > 0 {
					hint = fmt.Sprintf("%s came from the environment or --config, not from ./%s: unset it to use the dev folder's", strings.Join(fromOutside, ", "), devStateDir)
				}
				return fmt.Errorf("%w\n(the dev server's secrets do not match its database %s: %s)", err, describeDSN(cfg.Database.DSN), hint)
			}
			prepare := func(ctx context.Context, store *storage.Store) error {
				if err := store.ClaimForDev(ctx); err != nil {
					if errors.Is(err, storage.ErrNotDevDatabase) {
						return &exitError{code: 2, err: fmt.Errorf("%s: %w", describeDSN(cfg.Database.DSN), err)}
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
				if err := st.saveSecrets(); err != nil {
					return err
				}
				err = registerDemo(ctx, store, &storage.Client{
					ID: devrp.ClientID, Name: "Демо-дневник", SecretHash: hash,
					RedirectURIs: []string{rp.RedirectURI()}, PostLogoutRedirectURIs: []string{rp.PostLogoutURI()},
					GrantTypes: []string{"authorization_code", "refresh_token"}, ResponseTypes: []string{"code"},
					Scopes: []string{"openid", "profile", "offline_access", "students", "esia"}, HomeURL: issuer + "/demo/",
				})
				if err == nil && cfg.Activation.ClientID == "demo-mobile" {
					err = registerDemo(ctx, store, &storage.Client{ID: "demo-mobile", Name: "Госуслуги (демо-приложение)", Public: true,
						GrantTypes: []string{provider.GrantTypeActivationKey, "refresh_token"}, Scopes: []string{"openid", "profile", "students", "offline_access"}})
				}
				if err != nil {
					return err
				}
				codes, err = seedDevRoster(ctx, cfg, store)
				return err
			}
			emu, err := devESIA(cfg, population, skipSig, tokenAlg)
			if err != nil {
				return err
			}
			conns, err := buildConnectors(cfg, emu.TokenVerifier())
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
					return &exitError{code: 2, err: fmt.Errorf("%s: %w", describeDSN(cfg.Database.DSN), storage.ErrNotDevDatabase)}
				}
				if err := checkRecordedSecrets(ctx, cfg, store); err != nil {
					return secretsHint(err)
				}
				return nil
			}
			return a.serve(ctx, cfg, serveOptions{connectors: conns, mount: mount, prepare: prepare, beforeMigrate: beforeMigrate, ready: func(addr string) {
				st.Issuer, st.DSN = issuer, cfg.Database.DSN
				if err := st.saveServer(); err != nil {
					fmt.Fprintf(a.stderr, "warning: %v (admin commands in this folder will not find the dev server's address)\n", err)
				}
				fmt.Fprintf(a.stdout, "\nesia-broker dev server is up (store: %s)\n", describeDSN(cfg.Database.DSN))
				fmt.Fprintf(a.stdout, "  demo relying party:  %s/demo/\n", issuer)
				fmt.Fprintf(a.stdout, "  ESIA emulator:       %s/_esia/ (personas: %s)\n", issuer, personaNames())
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

// deriveDevIssuer makes the issuer follow the listen address when only the address was
// changed: the dev server, its demo relying party and the emulator then agree on one origin.
func deriveDevIssuer(cfg *config.Config) error {
	d := config.Defaults()
	if cfg.Issuer != d["issuer"] || cfg.Listen == d["listen"] {
		return nil
	}
	host, port, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	if port == "0" {
		return errors.New("the dev server needs a fixed port for its issuer: give --port or set ESIA_BROKER_ISSUER")
	}
	cfg.Issuer = "http://" + net.JoinHostPort(host, port)
	return nil
}

func personaNames() string {
	var ids []string
	for _, p := range esiatest.DefaultPersonas() {
		ids = append(ids, p.ID)
	}
	return strings.Join(ids, ", ")
}

// devESIA points the ESIA connector at the emulator mounted on the dev server: GOST client
// key and certificate are generated into ./.esia-broker-dev at first start, the emulator
// registers that certificate, and its tokens are GOST-signed, so the whole flow runs signed and
// verified as in production. A configuration that enables ESIA itself is left alone.
func devESIA(cfg *config.Config, population int, skipSig bool, tokenAlg string) (*esiatest.Server, error) {
	issuer := strings.TrimSuffix(cfg.Issuer, "/")
	keyPath, certPath := filepath.Join(devStateDir, "esia-client-key.pem"), filepath.Join(devStateDir, "esia-client-cert.pem")
	if _, err := os.Stat(certPath); errors.Is(err, os.ErrNotExist) {
		key, cert, err := esiatest.NewClientCredentials("ESIA_BROKER_DEV")
		if err != nil {
			return nil, err
		}
		der, err := gost.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(devStateDir, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", devStateDir, err)
		}
		if err := os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", keyPath, err)
		}
		if err := os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert}), 0o600); err != nil {
			return nil, fmt.Errorf("write %s: %w", certPath, err)
		}
	}
	e := &cfg.Upstream.ESIA
	if !e.Enabled {
		*e = config.ESIA{Enabled: true, BaseURL: issuer + "/_esia", ClientID: "ESIA_BROKER_DEV", Scopes: e.Scopes, AccessType: "online",
			Timeout: e.Timeout, Signer: "gost", KeyFile: keyPath, CertFile: certPath, TokenIssuer: e.TokenIssuer, Logout: e.Logout}
	}
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", certPath, err)
	}
	cert, err := gost.ParseCertificatePEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (delete %s to start afresh)", certPath, err, devStateDir)
	}
	return esiatest.New(esiatest.Options{
		Issuer:              e.TokenIssuer,
		TokenAlg:            tokenAlg,
		RandomPopulation:    population,
		SkipSignatureChecks: skipSig,
		// The personas keep their ages whatever the date (a demo child never turns 14).
		Personas: esiatest.PersonasOn(time.Now()),
		Clients: []esiatest.Client{{ID: "ESIA_BROKER_DEV", CertDER: cert.Raw, RedirectURIs: []string{issuer + "/esia/callback", issuer + "/oauth2/logout/done"},
			Scopes: []string{"openid", "fullname", "birthdate", "gender", "snils", "email", "mobile", "contacts", "kid_fullname", "kid_birthdate", "kid_gender", "kid_snils"}}},
	})
}

//go:embed devroster.csv
var devRoster string

// seedDevRoster loads the demo schools and cards that match the emulator's personas, and issues
// parent codes for the cards without guardian SNILS (for the persona with no match) when none
// are open. It returns the lines to print: the codes exist only in that output.
func seedDevRoster(ctx context.Context, cfg *config.Config, s *storage.Store) ([]string, error) {
	for id, name := range map[string]string{"demo-sch-1": "МБОУ СШ № 1 (демо)", "demo-sch-2": "Гимназия № 2 (демо)"} {
		if err := s.UpsertSchool(ctx, id, name); err != nil {
			return nil, err
		}
	}
	link, inv, err := services(cfg, s)
	if err != nil {
		return nil, err
	}
	// Birth dates move with today, as the personas' do: the demo children keep their ages.
	roster := esiatest.ShiftDates(devRoster, esiatest.OffsetOf(time.Now()))
	if _, err := link.Import(ctx, strings.NewReader(roster), linking.ImportOptions{Operator: "dev"}); err != nil {
		return nil, fmt.Errorf("dev roster: %w", err)
	}
	slips, err := inv.Issue(ctx, invites.IssueRequest{Selection: invites.Selection{SchoolID: "demo-sch-1", Class: "5А"}, Role: invites.RoleParent, TTL: 30 * 24 * time.Hour, Operator: "dev"})
	again := selfCommand() + " invites rotate --school demo-sch-1 --class 5А --role parent --format csv"
	if errors.Is(err, invites.ErrOpenCodesExist) {
		return []string{"parent invite codes for class 5А were printed at an earlier start; for new ones run in this folder: " + again}, nil
	}
	if err != nil {
		return nil, err
	}
	out := []string{"parent invite codes for the persona with no SNILS match (parent-no-match):"}
	for _, sl := range slips {
		out = append(out, fmt.Sprintf("  %s — %s, %s", sl.Code, sl.StudentName, sl.Class))
	}
	return append(out, "to replace them, run in this folder: "+again), nil
}

// selfCommand is how to run this binary again from the dev folder: `go run ./cmd/esia-broker`
// when it was started by go run (make dev), else the name it was started by.
func selfCommand() string {
	if exe, err := os.Executable(); err == nil && strings.Contains(filepath.ToSlash(exe), "/go-build") {
		return "go run ./cmd/esia-broker"
	}
	if len(os.Args) > 0 && os.Args[0] != "" && !strings.ContainsAny(os.Args[0], " \t'\"") {
		return os.Args[0]
	}
	return "esia-broker"
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

const (
	devSecretsFile = "secrets.json"
	devServerFile  = "server.json"
)

// devState is what the dev server keeps in ./.esia-broker-dev so that a restart, and the admin
// commands run in the same folder, work on the same data: the secrets the configuration leaves
// empty and the issuer the dev server last ran under.
type devState struct {
	Secrets map[string]string
	Issuer  string
	// DSN is the database the dev server last ran on (its own, unless the environment named
	// another).
	DSN string
}

func readDevState() (*devState, error) {
	st := &devState{Secrets: map[string]string{}}
	path := filepath.Join(devStateDir, devSecretsFile)
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &st.Secrets); err != nil {
			return nil, fmt.Errorf("read %s: %w (delete %s and esia-broker.db to start afresh)", path, err, devStateDir)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	path = filepath.Join(devStateDir, devServerFile)
	if b, err := os.ReadFile(path); err == nil {
		var srv struct {
			Issuer   string `json:"issuer"`
			Database string `json:"database"`
		}
		if err := json.Unmarshal(b, &srv); err != nil {
			return nil, fmt.Errorf("read %s: %w", path, err)
		}
		st.Issuer, st.DSN = srv.Issuer, srv.Database
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return st, nil
}

// apply gives every secret the configuration leaves empty its saved value; with generate, a
// missing one gets a new random value (saved by save), otherwise it is an error.
func (st *devState) apply(cfg *config.Config, generate bool) error {
	for name, dst := range map[string]*string{
		"master_key": &cfg.Secrets.MasterKey, "cookie_key": &cfg.Secrets.CookieKey,
		"snils_pepper": &cfg.Secrets.SNILSPepper, "token_key": &cfg.Secrets.TokenKey,
	} {
		if *dst != "" {
			continue
		}
		if st.Secrets[name] == "" {
			if !generate {
				return fmt.Errorf("%s/%s has no %s: start the dev server once (make dev) or delete %s", devStateDir, devSecretsFile, name, devStateDir)
			}
			b := make([]byte, 32)
			if _, err := rand.Read(b); err != nil {
				return fmt.Errorf("generate dev secret: %w", err)
			}
			st.Secrets[name] = base64.StdEncoding.EncodeToString(b)
		}
		*dst = st.Secrets[name]
	}
	return nil
}

// fromOutside names the secrets that the environment or a configuration file set, so that
// the dev folder's are not used for them.
func (st *devState) fromOutside(cfg *config.Config) []string {
	var names []string
	for _, s := range []struct {
		name, value string
	}{{"master_key", cfg.Secrets.MasterKey}, {"cookie_key", cfg.Secrets.CookieKey}, {"snils_pepper", cfg.Secrets.SNILSPepper}, {"token_key", cfg.Secrets.TokenKey}} {
		if s.value != "" && s.value != st.Secrets[s.name] {
			names = append(names, "secrets."+s.name)
		}
	}
	return names
}

// saveSecrets writes the dev secrets (called once the database has accepted them).
func (st *devState) saveSecrets() error {
	return writeDevFile(devSecretsFile, st.Secrets)
}

// saveServer writes the issuer and database the dev server runs with (called once it listens;
// the folder is the developer's own, 0700).
func (st *devState) saveServer() error {
	return writeDevFile(devServerFile, map[string]string{"issuer": st.Issuer, "database": st.DSN})
}

func writeDevFile(name string, v any) error {
	if err := os.MkdirAll(devStateDir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", devStateDir, err)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	path := filepath.Join(devStateDir, name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
