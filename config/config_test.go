package config

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

var key32 = base64.StdEncoding.EncodeToString([]byte(strings.Repeat("x", 32)))

func prodEnv() []string {
	return []string{
		"ESIA_BROKER_ISSUER=https://id.school.example",
		"ESIA_BROKER_SECRETS_MASTER_KEY=" + key32,
		"ESIA_BROKER_SECRETS_COOKIE_KEY=" + key32,
		"ESIA_BROKER_SECRETS_SNILS_PEPPER=" + key32,
		"ESIA_BROKER_SECRETS_TOKEN_KEY=" + key32,
	}
}

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name     string
		file     string
		env      []string
		wantErrs []string
		check    func(t *testing.T, c *Config)
	}{
		{
			name: "production env is valid with defaults",
			env:  prodEnv(),
			check: func(t *testing.T, c *Config) {
				if c.Tokens.AccessTokenLifespan != 15*time.Minute || c.Tokens.IDTokenAlg != "RS256" || c.Tokens.AccessTokenAlg != "ES256" || !c.SecureCookies() {
					t.Errorf("defaults: %+v", c.Tokens)
				}
				if c.Database.ClientCacheTTL != 5*time.Second {
					t.Errorf("database.client_cache_ttl default %s, want the documented 5s", c.Database.ClientCacheTTL)
				}
				if !c.Database.PreparedStatements {
					t.Error("database.prepared_statements is off by default")
				}
			},
		},
		{
			name: "ESIA outside dev needs ESIA's certificates; the issuer follows the environment",
			env: append(prodEnv(), "ESIA_BROKER_UPSTREAM_ESIA_ENABLED=true", "ESIA_BROKER_UPSTREAM_ESIA_CLIENT_ID=X",
				"ESIA_BROKER_UPSTREAM_ESIA_CERT_FILE=/c", "ESIA_BROKER_UPSTREAM_ESIA_KEY_FILE=/k"),
			wantErrs: []string{"upstream.esia.verify_cert_files: is required"},
		},
		{
			name: "ESIA with its certificates",
			env: append(prodEnv(), "ESIA_BROKER_UPSTREAM_ESIA_ENABLED=true", "ESIA_BROKER_UPSTREAM_ESIA_CLIENT_ID=X", "ESIA_BROKER_UPSTREAM_ESIA_BASE_URL=test",
				"ESIA_BROKER_UPSTREAM_ESIA_CERT_FILE=/c", "ESIA_BROKER_UPSTREAM_ESIA_KEY_FILE=/k", "ESIA_BROKER_UPSTREAM_ESIA_VERIFY_CERT_FILES=/e.cer"),
			check: func(t *testing.T, c *Config) {
				e := c.Upstream.ESIA
				if e.TokenIssuer != "" || !e.Logout || e.ESIABaseURL() != "https://esia-portal1.test.gosuslugi.ru" {
					t.Errorf("token_issuer %q (want empty: derived), logout %v (want on), base %s", e.TokenIssuer, e.Logout, e.ESIABaseURL())
				}
			},
		},
		{
			name:     "argon2id below OWASP's minimums is refused outside dev",
			env:      append(prodEnv(), "ESIA_BROKER_CHILDREN_ARGON2_TIME=1", "ESIA_BROKER_CHILDREN_ARGON2_MEMORY_KIB=8192"),
			wantErrs: []string{"children.argon2_*: time 1 with 8192 KiB is below OWASP's minimum", "at least 47104 KiB"},
		},
		{
			name:     "argon2id 19 MiB with two passes is refused at 18 MiB",
			env:      append(prodEnv(), "ESIA_BROKER_CHILDREN_ARGON2_TIME=2", "ESIA_BROKER_CHILDREN_ARGON2_MEMORY_KIB=18432"),
			wantErrs: []string{"at least 19456 KiB with time 2"},
		},
		{
			name: "argon2id at OWASP's minimums is taken",
			env:  append(prodEnv(), "ESIA_BROKER_CHILDREN_ARGON2_TIME=5", "ESIA_BROKER_CHILDREN_ARGON2_MEMORY_KIB=7168", "ESIA_BROKER_CHILDREN_ARGON2_THREADS=1"),
			check: func(t *testing.T, c *Config) {
				if c.Children.Argon2Time != 5 || c.Children.Argon2MemoryKiB != 7168 || !c.Children.PasswordAccounts || !c.Children.UnconfirmedESIAChildren {
					t.Errorf("children %+v", c.Children)
				}
			},
		},
		{
			name: "dev mode needs no secrets",
			env:  []string{"ESIA_BROKER_DEV=true"},
			check: func(t *testing.T, c *Config) {
				if c.SecureCookies() {
					t.Error("dev mode sets Secure cookies")
				}
			},
		},
		{
			name:     "every missing secret is listed at once",
			env:      []string{"ESIA_BROKER_ISSUER=https://id.example"},
			wantErrs: []string{"secrets.master_key: is required", "secrets.cookie_key: is required", "secrets.snils_pepper: is required", "secrets.token_key: is required"},
		},
		{
			name: "file values, env overrides file",
			file: "issuer: https://file.example\ntokens:\n  access_token_lifespan: 5m\n  id_token_alg: ES256\n",
			env:  append(prodEnv()[1:], "ESIA_BROKER_TOKENS_ID_TOKEN_ALG=RS256"),
			check: func(t *testing.T, c *Config) {
				if c.Issuer != "https://file.example" || c.Tokens.AccessTokenLifespan != 5*time.Minute || c.Tokens.IDTokenAlg != "RS256" {
					t.Errorf("got issuer %s, lifespan %s, alg %s", c.Issuer, c.Tokens.AccessTokenLifespan, c.Tokens.IDTokenAlg)
				}
			},
		},
		{
			name:     "bad values each reported",
			file:     "issuer: ftp://x\nlisten: nope\ntokens:\n  access_token_alg: HS256\n  auth_code_lifespan: 1h\n  refresh_grace_period: 5m\n  access_token_format: weird\nlog:\n  level: loud\n",
			env:      prodEnv()[1:],
			wantErrs: []string{"issuer:", "listen:", "tokens.access_token_alg:", "tokens.auth_code_lifespan:", "tokens.refresh_grace_period:", "tokens.access_token_format:", "log.level:"},
		},
		{
			name:     "unknown key in file",
			file:     "isuer: https://typo.example\n",
			env:      prodEnv(),
			wantErrs: []string{"isuer: unknown key"},
		},
		{
			name: "client cache set from the environment",
			env:  append(prodEnv(), "ESIA_BROKER_DATABASE_CLIENT_CACHE_TTL=0s"),
			check: func(t *testing.T, c *Config) {
				if c.Database.ClientCacheTTL != 0 {
					t.Errorf("client_cache_ttl %s, want 0 from the environment", c.Database.ClientCacheTTL)
				}
			},
		},
		{
			name: "trusted proxies from the environment",
			env:  append(prodEnv(), "ESIA_BROKER_HTTP_TRUSTED_PROXIES=10.0.0.0/8"),
			check: func(t *testing.T, c *Config) {
				if c.HTTP.TrustedProxies != "10.0.0.0/8" {
					t.Errorf("trusted_proxies %q", c.HTTP.TrustedProxies)
				}
			},
		},
		{
			name:     "profiler only on loopback",
			env:      append(prodEnv(), "ESIA_BROKER_HTTP_PPROF_LISTEN=0.0.0.0:6060"),
			wantErrs: []string{"http.pprof_listen: must be a loopback host:port"},
		},
		{
			name: "profiler on loopback accepted",
			env:  append(prodEnv(), "ESIA_BROKER_HTTP_PPROF_LISTEN=127.0.0.1:6060"),
			check: func(t *testing.T, c *Config) {
				if c.HTTP.PprofListen != "127.0.0.1:6060" {
					t.Errorf("pprof_listen %q", c.HTTP.PprofListen)
				}
			},
		},
		{
			name:     "unparsable duration",
			env:      append(prodEnv(), "ESIA_BROKER_TOKENS_ACCESS_TOKEN_LIFESPAN=forever"),
			wantErrs: []string{"cannot decode"},
		},
		{
			name:     "short secret",
			env:      append(prodEnv(), "ESIA_BROKER_SECRETS_MASTER_KEY="+base64.StdEncoding.EncodeToString([]byte("short"))),
			wantErrs: []string{"secrets.master_key: must decode to at least 32 bytes"},
		},
		{
			name:     "an issuer with a path",
			file:     "issuer: https://broker.example/esia\n",
			wantErrs: []string{"issuer: must have no path"},
		},
		{
			name:     "http issuer outside dev and loopback",
			env:      append(prodEnv(), "ESIA_BROKER_ISSUER=http://id.example"),
			wantErrs: []string{"issuer: must use https"},
		},
		{
			name:     "malformed yaml",
			file:     "issuer: [unclosed\n",
			env:      prodEnv(),
			wantErrs: []string{"config file"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			if tc.file != "" {
				path = writeFile(t, tc.file)
			}
			c, err := Load(path, tc.env)
			if len(tc.wantErrs) > 0 {
				var ce *Error
				if !errors.As(err, &ce) {
					t.Fatalf("err = %v, want *Error", err)
				}
				for _, w := range tc.wantErrs {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error lacks %q:\n%v", w, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}

func TestSecretsFromFiles(t *testing.T) {
	env := []string{
		"ESIA_BROKER_ISSUER=https://id.example",
		"ESIA_BROKER_SECRETS_MASTER_KEY_FILE=" + writeFile(t, key32+"\n"),
		"ESIA_BROKER_SECRETS_COOKIE_KEY=" + key32,
		"ESIA_BROKER_SECRETS_SNILS_PEPPER=" + key32,
		"ESIA_BROKER_SECRETS_TOKEN_KEY=" + key32,
	}
	c, err := Load("", env)
	if err != nil {
		t.Fatal(err)
	}
	if c.Secrets.MasterKey != key32 {
		t.Errorf("master key from file = %q", c.Secrets.MasterKey)
	}
	_, err = Load("", append(env, "ESIA_BROKER_SECRETS_MASTER_KEY="+key32))
	if err == nil || !strings.Contains(err.Error(), "not both") {
		t.Errorf("inline and file together: %v", err)
	}
	_, err = Load("", append(env[1:], "ESIA_BROKER_SECRETS_MASTER_KEY_FILE=/nonexistent/x"))
	if err == nil || !strings.Contains(err.Error(), "secrets.master_key_file: cannot read") {
		t.Errorf("missing file: %v", err)
	}
}

func TestEnvName(t *testing.T) {
	if got := EnvName("tokens.id_token_alg"); got != "ESIA_BROKER_TOKENS_ID_TOKEN_ALG" {
		t.Errorf("EnvName = %s", got)
	}
}

// TestExampleConfig: the shipped example configuration loads (no unknown or invalid key) once
// the secrets it leaves to files or the environment are given.
func TestExampleConfig(t *testing.T) {
	c, err := Load("../deploy/config.example.yaml", prodEnv())
	if err != nil {
		t.Fatalf("deploy/config.example.yaml: %v", err)
	}
	if !c.Database.PreparedStatements || c.Database.MaxOpenConns != 20 {
		t.Errorf("example database settings not read: %+v", c.Database)
	}
}

// TestEveryKeyHasADefault: a key missing from Defaults can be set neither in the file (unknown
// key) nor in the environment, so every field of Config must have one.
func TestEveryKeyHasADefault(t *testing.T) {
	defaults := Defaults()
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := range typ.NumField() {
			f := typ.Field(i)
			tag := f.Tag.Get("mapstructure")
			if tag == "" || tag == "-" || !f.IsExported() {
				continue
			}
			key := prefix + tag
			if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(time.Time{}) {
				walk(key+".", f.Type)
				continue
			}
			if _, ok := defaults[key]; !ok {
				t.Errorf("%s has no default: it cannot be set from the file or the environment", key)
			}
		}
	}
	walk("", reflect.TypeOf(Config{}))
}

// TestFileSets: a key the file names is told apart from one only defaulted.
func TestFileSets(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		body string
		want bool
	}{
		{"http:\n  metrics_listen: 127.0.0.1:9999\n", true},
		{"http:\n  metrics_listen: \"\"\n", true},
		{"http:\n  read_timeout: 5s\n", false},
		{"issuer: https://id.example\n", false},
	} {
		p := filepath.Join(dir, "c.yaml")
		if err := os.WriteFile(p, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := FileSets(p, "http.metrics_listen"); err != nil || got != tc.want {
			t.Errorf("%q: %v %v, want %v", tc.body, got, err, tc.want)
		}
	}
	if got, err := FileSets("", "http.metrics_listen"); err != nil || got {
		t.Errorf("no file: %v %v", got, err)
	}
}
