// Package devenv is the dev server's environment: its folder of generated secrets and settings
// (./.esia-broker-dev), the ESIA emulator it mounts, and the demo clients and roster it seeds.
package devenv

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
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/esia/esiatest"
	"github.com/esia-broker/esia-broker/esia/gost"
	"github.com/esia-broker/esia-broker/invites"
	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/storage"
)

// StateDir is the dev server's folder, in the directory it runs in.
const StateDir = ".esia-broker-dev"

// DeriveIssuer makes the issuer follow the listen address when only the address was
// changed: the dev server, its demo relying party and the emulator then agree on one origin.
func DeriveIssuer(cfg *config.Config) error {
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

func PersonaNames() string {
	var ids []string
	for _, p := range esiatest.DefaultPersonas() {
		ids = append(ids, p.ID)
	}
	return strings.Join(ids, ", ")
}

// Emulator points the ESIA connector at the emulator mounted on the dev server: GOST client
// key and certificate are generated into ./.esia-broker-dev at first start, the emulator
// registers that certificate, and its tokens are GOST-signed, so the whole flow runs signed and
// verified as in production. A configuration that enables ESIA itself is left alone.
func Emulator(cfg *config.Config, population int, skipSig bool, tokenAlg string) (*esiatest.Server, error) {
	issuer := strings.TrimSuffix(cfg.Issuer, "/")
	keyPath, certPath := filepath.Join(StateDir, "esia-client-key.pem"), filepath.Join(StateDir, "esia-client-cert.pem")
	if _, err := os.Stat(certPath); errors.Is(err, os.ErrNotExist) {
		key, cert, err := esiatest.NewClientCredentials("ESIA_BROKER_DEV")
		if err != nil {
			return nil, err
		}
		der, err := gost.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(StateDir, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", StateDir, err)
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
		return nil, fmt.Errorf("%s: %w (delete %s to start afresh)", certPath, err, StateDir)
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

// SeedRoster loads the demo schools and cards that match the emulator's personas, and issues
// parent codes for the cards without guardian SNILS (for the persona with no match) when none
// are open. It returns the lines to print: the codes exist only in that output.
func SeedRoster(ctx context.Context, s *storage.Store, link *linking.Service, inv *invites.Service) ([]string, error) {
	for id, name := range map[string]string{"demo-sch-1": "МБОУ СШ № 1 (демо)", "demo-sch-2": "Гимназия № 2 (демо)"} {
		if err := s.UpsertSchool(ctx, id, name); err != nil {
			return nil, err
		}
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

func DescribeDSN(dsn string) string {
	if dsn == "" {
		return "sqlite:" + storage.DefaultSQLitePath
	}
	if strings.HasPrefix(dsn, "sqlite:") {
		return dsn
	}
	return "postgres"
}

func RegisterDemo(ctx context.Context, s *storage.Store, c *storage.Client) error {
	err := s.CreateClient(ctx, c)
	if errors.Is(err, storage.ErrConflict) {
		return s.UpdateClient(ctx, c)
	}
	return err
}

const (
	SecretsFile = "secrets.json"
	ServerFile  = "server.json"
)

// State is what the dev server keeps in ./.esia-broker-dev so that a restart, and the admin
// commands run in the same folder, work on the same data: the secrets the configuration leaves
// empty and the issuer the dev server last ran under.
type State struct {
	Secrets map[string]string
	Issuer  string
	// DSN is the database the dev server last ran on (its own, unless the environment named
	// another).
	DSN string
}

func ReadState() (*State, error) {
	st := &State{Secrets: map[string]string{}}
	path := filepath.Join(StateDir, SecretsFile)
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &st.Secrets); err != nil {
			return nil, fmt.Errorf("read %s: %w (delete %s and esia-broker.db to start afresh)", path, err, StateDir)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	path = filepath.Join(StateDir, ServerFile)
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

// Apply gives every secret the configuration leaves empty its saved value; with generate, a
// missing one gets a new random value (saved by save), otherwise it is an error.
func (st *State) Apply(cfg *config.Config, generate bool) error {
	for name, dst := range map[string]*string{
		"master_key": &cfg.Secrets.MasterKey, "cookie_key": &cfg.Secrets.CookieKey,
		"snils_pepper": &cfg.Secrets.SNILSPepper, "token_key": &cfg.Secrets.TokenKey,
	} {
		if *dst != "" {
			continue
		}
		if st.Secrets[name] == "" {
			if !generate {
				return fmt.Errorf("%s/%s has no %s: start the dev server once (make dev) or delete %s", StateDir, SecretsFile, name, StateDir)
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

// FromOutside names the secrets that the environment or a configuration file set, so that
// the dev folder's are not used for them.
func (st *State) FromOutside(cfg *config.Config) []string {
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

// SaveSecrets writes the dev secrets (called once the database has accepted them).
func (st *State) SaveSecrets() error {
	return writeDevFile(SecretsFile, st.Secrets)
}

// SaveServer writes the issuer and database the dev server runs with (called once it listens;
// the folder is the developer's own, 0700).
func (st *State) SaveServer() error {
	return writeDevFile(ServerFile, map[string]string{"issuer": st.Issuer, "database": st.DSN})
}

func writeDevFile(name string, v any) error {
	if err := os.MkdirAll(StateDir, 0o700); err != nil {
		return fmt.Errorf("create %s: %w", StateDir, err)
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	path := filepath.Join(StateDir, name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
