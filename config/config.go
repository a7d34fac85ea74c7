// Package config loads the broker's configuration from a YAML file, ESIA_BROKER_* environment
// variables and documented defaults, and validates it, reporting every bad key at once.
package config

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/viper"
)

// EnvPrefix is the prefix of every environment variable the broker reads.
const EnvPrefix = "ESIA_BROKER"

// Config is the whole configuration of one broker process.
type Config struct {
	Issuer     string     `mapstructure:"issuer"`
	Listen     string     `mapstructure:"listen"`
	Dev        bool       `mapstructure:"dev"`
	Database   Database   `mapstructure:"database"`
	Secrets    Secrets    `mapstructure:"secrets"`
	Tokens     Tokens     `mapstructure:"tokens"`
	Keys       Keys       `mapstructure:"keys"`
	Session    Session    `mapstructure:"session"`
	HTTP       HTTP       `mapstructure:"http"`
	Log        Log        `mapstructure:"log"`
	Upstream   Upstream   `mapstructure:"upstream"`
	Limits     Limits     `mapstructure:"limits"`
	Linking    Linking    `mapstructure:"linking"`
	Children   Children   `mapstructure:"children"`
	Activation Activation `mapstructure:"activation"`
	Region     Region     `mapstructure:"region"`
	Telemetry  Telemetry  `mapstructure:"telemetry"`
}

// Telemetry configures OpenTelemetry traces: a span per request, with the ESIA calls and SQL
// statements under it, exported by OTLP over HTTP. Off unless OTLPEndpoint is set.
type Telemetry struct {
	// OTLPEndpoint is the collector's OTLP/HTTP URL, e.g. http://otel-collector:4318 (the
	// traces path /v1/traces is added when the URL has none).
	OTLPEndpoint string `mapstructure:"otlp_endpoint"`
	// SampleRatio is the share of requests traced (0–1).
	SampleRatio float64 `mapstructure:"sample_ratio"`
}

// Region is how the pages present the region's diary: name, logo and support contacts.
type Region struct {
	Name         string `mapstructure:"name"`
	LogoFile     string `mapstructure:"logo_file"`
	SupportPhone string `mapstructure:"support_phone"`
	SupportEmail string `mapstructure:"support_email"`
	SupportURL   string `mapstructure:"support_url"`
}

// Children tunes sub-accounts of children under 14.
type Children struct {
	// PasswordAccounts allows the login-and-password sub-accounts that parents make for
	// children under 14. A region that allows only ESIA (access to state systems through ESIA)
	// sets it false: every password path is refused, and existing sub-accounts are disabled at
	// start.
	PasswordAccounts bool `mapstructure:"password_accounts"`
	// UnconfirmedESIAChildren admits a child's own ESIA account that ESIA reports as not
	// confirmed, when the child is under 14 and the account's SNILS and birth date match an
	// active student card; every other unconfirmed account is refused.
	UnconfirmedESIAChildren bool `mapstructure:"unconfirmed_esia_children"`
	// Argon2*: argon2id for the sub-accounts' passwords; outside dev at least OWASP's minimums
	// (Password Storage Cheat Sheet: 46 MiB × 1, 19 MiB × 2, 12 MiB × 3, 9 MiB × 4, 7 MiB × 5).
	Argon2Time       uint32        `mapstructure:"argon2_time"`
	Argon2MemoryKiB  uint32        `mapstructure:"argon2_memory_kib"`
	Argon2Threads    uint8         `mapstructure:"argon2_threads"`
	GraceDays        int           `mapstructure:"grace_days"`
	FailuresPerLogin int           `mapstructure:"failures_per_login"`
	FailuresPerIP    int           `mapstructure:"failures_per_ip"`
	Window           time.Duration `mapstructure:"window"`
	Lockout          time.Duration `mapstructure:"lockout"`
	// FailuresPerLoginAll counts wrong passwords for one login from every source together;
	// past it the login is locked for LoginAllLockout, a short slow-down (the per-source lock is
	// the long one, so a stranger cannot lock a known child out for long).
	FailuresPerLoginAll int           `mapstructure:"failures_per_login_all"`
	LoginAllLockout     time.Duration `mapstructure:"login_all_lockout"`
	// HashMemoryMiB is the memory that password hashing may take at once: it admits
	// HashMemoryMiB / (argon2_memory_kib/1024) computations together; HashQueue more wait up to
	// HashWait, and past that the page asks to try again (503 with Retry-After).
	HashMemoryMiB int           `mapstructure:"hash_memory_mib"`
	HashQueue     int           `mapstructure:"hash_queue"`
	HashWait      time.Duration `mapstructure:"hash_wait"`
}

// ArgonMinMemoryKiB is OWASP's minimum argon2id memory for time cost t (Password Storage Cheat
// Sheet: m=47104 KiB t=1, 19456 t=2, 12288 t=3, 9216 t=4, 7168 t=5, all with p=1); outside dev
// the configuration refuses less.
func ArgonMinMemoryKiB(t uint32) uint32 {
	switch t {
	case 0, 1:
		return 47104
	case 2:
		return 19456
	case 3:
		return 12288
	case 4:
		return 9216
	}
	return 7168
}

// HashConcurrency is how many password hashes may run at once within HashMemoryMiB.
func (c Children) HashConcurrency() int {
	per := int(c.Argon2MemoryKiB / 1024)
	if per < 1 {
		per = 1
	}
	return max(1, c.HashMemoryMiB/per)
}

// Activation tunes the activation keys of the mobile app.
type Activation struct {
	// ClientID is the mobile app's client; keys work only for it. Empty disables keys.
	ClientID      string        `mapstructure:"client_id"`
	KeyTTL        time.Duration `mapstructure:"key_ttl"`
	FailuresPerIP int           `mapstructure:"failures_per_ip"`
	Window        time.Duration `mapstructure:"window"`
	Lockout       time.Duration `mapstructure:"lockout"`
}

// Limits are the attempt limits stored in the database (they hold across replicas).
type Limits struct {
	// PagesPerIPPerMinute limits the login start, callback, code entry and child login per IP.
	PagesPerIPPerMinute int `mapstructure:"pages_per_ip_per_minute"`
	// TokenPerIPPerMinute limits the token endpoint per IP (diary back ends call it for everyone).
	TokenPerIPPerMinute      int           `mapstructure:"token_per_ip_per_minute"`
	InviteFailuresPerAccount int           `mapstructure:"invite_failures_per_account"`
	InviteFailuresPerIP      int           `mapstructure:"invite_failures_per_ip"`
	Window                   time.Duration `mapstructure:"window"`
	Lockout                  time.Duration `mapstructure:"lockout"`
}

// Linking tunes the linking pages.
type Linking struct {
	// ConsentVersion names the consent text; changing it asks everyone again.
	ConsentVersion string `mapstructure:"consent_version"`
	// AlwaysPickStudent lists clients (comma-separated) that always show the student picker.
	AlwaysPickStudent string        `mapstructure:"always_pick_student"`
	LinkIntentTTL     time.Duration `mapstructure:"link_intent_ttl"`
	// EventsRetention is how long the diaries' event feed keeps an event (GET /api/v1/events);
	// a cursor older than that is told so (410).
	EventsRetention time.Duration `mapstructure:"events_retention"`
}

// Upstream configures where people log in: ESIA directly, or a generic OpenID provider.
type Upstream struct {
	ESIA ESIA `mapstructure:"esia"`
	OIDC OIDC `mapstructure:"oidc"`
}

// ESIA configures the direct, GOST-signed ESIA connector.
type ESIA struct {
	Enabled bool `mapstructure:"enabled"`
	// BaseURL is production, test, or an https URL.
	BaseURL     string        `mapstructure:"base_url"`
	ClientID    string        `mapstructure:"client_id"`
	RedirectURI string        `mapstructure:"redirect_uri"`
	Scopes      string        `mapstructure:"scopes"`
	AccessType  string        `mapstructure:"access_type"`
	Timeout     time.Duration `mapstructure:"timeout"`
	// Signer is gost (in process, KeyFile + CertFile) or command (SignerCommand, CertFile).
	Signer        string `mapstructure:"signer"`
	KeyFile       string `mapstructure:"key_file"`
	CertFile      string `mapstructure:"cert_file"`
	SignerCommand string `mapstructure:"signer_command"`
	SignerReverse bool   `mapstructure:"signer_reverse"`
	// TokenIssuer is the iss of ESIA's tokens; empty derives it from BaseURL
	// (http://esia.gosuslugi.ru/ in production, http://esia-portal1.test.gosuslugi.ru/ in ТЕСИА).
	TokenIssuer string `mapstructure:"token_issuer"`
	// VerifyCertFiles are ESIA's certificates (PEM or DER files, comma-separated) for token
	// signature checks. Required outside dev.
	VerifyCertFiles string `mapstructure:"verify_cert_files"`
	// Logout ends ESIA's own session when a person logs out of the broker (default true).
	Logout bool `mapstructure:"logout"`
}

// OIDC configures the generic OpenID Connect upstream.
type OIDC struct {
	Enabled          bool   `mapstructure:"enabled"`
	Issuer           string `mapstructure:"issuer"`
	ClientID         string `mapstructure:"client_id"`
	ClientSecret     string `mapstructure:"client_secret"`
	ClientSecretFile string `mapstructure:"client_secret_file"`
	RedirectURI      string `mapstructure:"redirect_uri"`
	Scopes           string `mapstructure:"scopes"`
	DisplayName      string `mapstructure:"display_name"`
	ClaimSubject     string `mapstructure:"claim_subject"`
	ClaimFamilyName  string `mapstructure:"claim_family_name"`
	ClaimGivenName   string `mapstructure:"claim_given_name"`
	ClaimMiddleName  string `mapstructure:"claim_middle_name"`
	ClaimBirthdate   string `mapstructure:"claim_birthdate"`
	ClaimSNILS       string `mapstructure:"claim_snils"`
	ClaimTrusted     string `mapstructure:"claim_trusted"`
}

// ESIABaseURL resolves production / test to ESIA's hosts.
func (e ESIA) ESIABaseURL() string {
	switch e.BaseURL {
	case "production", "":
		return "https://esia.gosuslugi.ru"
	case "test":
		return "https://esia-portal1.test.gosuslugi.ru"
	}
	return e.BaseURL
}

// Database selects and tunes the store.
type Database struct {
	// DSN is postgres://… for PostgreSQL, sqlite:PATH for the embedded store; empty means
	// sqlite:./esia-broker.db.
	DSN            string `mapstructure:"dsn"`
	MigrateOnStart bool   `mapstructure:"migrate_on_start"`
	MaxOpenConns   int    `mapstructure:"max_open_conns"`
	// PreparedStatements prepares each query once per connection (PostgreSQL); turn it off
	// behind a pooler in transaction mode (PgBouncer), which cannot keep them.
	PreparedStatements bool `mapstructure:"prepared_statements"`
	// ClientCacheTTL keeps registered clients in memory this long (0 turns the cache off).
	ClientCacheTTL time.Duration `mapstructure:"client_cache_ttl"`
}

// Secrets holds key material. Each may be given inline (base64) or as a *_file path.
type Secrets struct {
	MasterKey       string `mapstructure:"master_key"`
	MasterKeyFile   string `mapstructure:"master_key_file"`
	CookieKey       string `mapstructure:"cookie_key"`
	CookieKeyFile   string `mapstructure:"cookie_key_file"`
	SNILSPepper     string `mapstructure:"snils_pepper"`
	SNILSPepperFile string `mapstructure:"snils_pepper_file"`
	TokenKey        string `mapstructure:"token_key"`
	TokenKeyFile    string `mapstructure:"token_key_file"`
}

// Tokens sets lifespans and formats of what the provider issues.
type Tokens struct {
	AccessTokenLifespan  time.Duration `mapstructure:"access_token_lifespan"`
	RefreshTokenLifespan time.Duration `mapstructure:"refresh_token_lifespan"`
	IDTokenLifespan      time.Duration `mapstructure:"id_token_lifespan"`
	AuthCodeLifespan     time.Duration `mapstructure:"auth_code_lifespan"`
	RefreshGracePeriod   time.Duration `mapstructure:"refresh_grace_period"`
	AccessTokenFormat    string        `mapstructure:"access_token_format"`
	AccessTokenAlg       string        `mapstructure:"access_token_alg"`
	IDTokenAlg           string        `mapstructure:"id_token_alg"`
	// Subject is what the sub of an ESIA account's tokens is: uuid (the broker's account id),
	// esia_oid (the ESIA oid itself, for a diary that keys its users by it) or pairwise (a
	// per-sector function of the oid, OpenID Connect Core §8.1). Sub-accounts of children
	// keep their account id.
	Subject string `mapstructure:"subject"`
	// PairwiseSectors groups clients into sectors for pairwise subjects, as
	// "client=sector,client=sector" (the clients of one diary vendor share a sector); a client
	// not listed is its own sector, named by the host of its first redirect URI.
	PairwiseSectors string `mapstructure:"pairwise_sectors"`
}

// OIDUpstream names the connector whose subjects are ESIA oids: esia when the direct ESIA
// connector is on (or none is), else oidc, the gateway to ESIA.
func (c *Config) OIDUpstream() string {
	if c.Upstream.ESIA.Enabled || !c.Upstream.OIDC.Enabled {
		return "esia"
	}
	return "oidc"
}

// SectorMap reads PairwiseSectors: client id → sector.
func (t Tokens) SectorMap() (map[string]string, error) {
	out := map[string]string{}
	for _, pair := range strings.Split(t.PairwiseSectors, ",") {
		pair = strings.TrimSpace(pair)
		if pair == "" {
			continue
		}
		client, sector, ok := strings.Cut(pair, "=")
		client, sector = strings.TrimSpace(client), strings.TrimSpace(sector)
		if !ok || client == "" || sector == "" || len(sector) > 255 {
			return nil, fmt.Errorf("%q: want client=sector, the sector a name of 1 to 255 bytes", pair)
		}
		if _, dup := out[client]; dup {
			return nil, fmt.Errorf("client %q is given twice", client)
		}
		out[client] = sector
	}
	return out, nil
}

// Keys tunes signing-key rotation.
type Keys struct {
	// PublishBeforeUse is how long a new key is in JWKS before it signs.
	PublishBeforeUse time.Duration `mapstructure:"publish_before_use"`
	// ReloadInterval is how often a replica re-reads the key set.
	ReloadInterval time.Duration `mapstructure:"reload_interval"`
}

// Session tunes the browser session.
type Session struct {
	Lifespan   time.Duration `mapstructure:"lifespan"`
	CookieName string        `mapstructure:"cookie_name"`
	// BrowserCookieName names the cookie that binds logins, upstream flows and forms to one
	// browser (its value is issued and MACed by the broker; __Host- is prefixed outside dev).
	BrowserCookieName string        `mapstructure:"browser_cookie_name"`
	SecureCookie      *bool         `mapstructure:"secure_cookie"`
	LoginTimeout      time.Duration `mapstructure:"login_timeout"`
}

// HTTP tunes the server.
type HTTP struct {
	ReadTimeout     time.Duration `mapstructure:"read_timeout"`
	WriteTimeout    time.Duration `mapstructure:"write_timeout"`
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout"`
	MaxBodyBytes    int64         `mapstructure:"max_body_bytes"`
	// TrustedProxies are the CIDRs of load balancers whose X-Forwarded-For names the client.
	TrustedProxies string `mapstructure:"trusted_proxies"`
	// PprofListen, when set, serves Go's profiler (/debug/pprof/) on this loopback address.
	PprofListen string `mapstructure:"pprof_listen"`
	// MetricsListen serves Prometheus /metrics on its own listener, never the public one
	// (loopback by default; "" turns it off).
	MetricsListen string `mapstructure:"metrics_listen"`
}

// TrustedProxyNets parses http.trusted_proxies.
func (h HTTP) TrustedProxyNets() ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, c := range strings.Split(h.TrustedProxies, ",") {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		if !strings.Contains(c, "/") {
			if strings.Contains(c, ":") {
				c += "/128"
			} else {
				c += "/32"
			}
		}
		_, n, err := net.ParseCIDR(c)
		if err != nil {
			return nil, fmt.Errorf("%q is not an IP or CIDR", c)
		}
		out = append(out, n)
	}
	return out, nil
}

// Log selects log level and format.
type Log struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// Defaults lists every key with its default value; the README's configuration table mirrors it.
func Defaults() map[string]any {
	return map[string]any{
		"issuer":                             "http://127.0.0.1:8080",
		"listen":                             "127.0.0.1:8080",
		"dev":                                false,
		"database.dsn":                       "",
		"database.migrate_on_start":          false,
		"database.max_open_conns":            20,
		"database.client_cache_ttl":          "5s",
		"database.prepared_statements":       true,
		"secrets.master_key":                 "",
		"secrets.master_key_file":            "",
		"secrets.cookie_key":                 "",
		"secrets.cookie_key_file":            "",
		"secrets.snils_pepper":               "",
		"secrets.snils_pepper_file":          "",
		"secrets.token_key":                  "",
		"secrets.token_key_file":             "",
		"tokens.access_token_lifespan":       "15m",
		"tokens.refresh_token_lifespan":      "720h",
		"tokens.id_token_lifespan":           "1h",
		"tokens.auth_code_lifespan":          "5m",
		"tokens.refresh_grace_period":        "5s",
		"tokens.access_token_format":         "jwt",
		"tokens.access_token_alg":            "ES256",
		"tokens.id_token_alg":                "RS256",
		"tokens.subject":                     "uuid",
		"tokens.pairwise_sectors":            "",
		"keys.publish_before_use":            "0s",
		"keys.reload_interval":               "30s",
		"session.lifespan":                   "12h",
		"session.cookie_name":                "esia_broker_session",
		"session.browser_cookie_name":        "esia_broker_browser",
		"session.secure_cookie":              nil,
		"session.login_timeout":              "10m",
		"http.read_timeout":                  "15s",
		"http.write_timeout":                 "30s",
		"http.shutdown_timeout":              "20s",
		"http.max_body_bytes":                1 << 20,
		"http.pprof_listen":                  "",
		"http.metrics_listen":                "127.0.0.1:9464",
		"http.trusted_proxies":               "",
		"telemetry.otlp_endpoint":            "",
		"telemetry.sample_ratio":             1.0,
		"log.level":                          "info",
		"log.format":                         "json",
		"limits.pages_per_ip_per_minute":     120,
		"limits.token_per_ip_per_minute":     6000,
		"limits.invite_failures_per_account": 5,
		"limits.invite_failures_per_ip":      20,
		"limits.window":                      "15m",
		"limits.lockout":                     "15m",
		"linking.consent_version":            "2026-11",
		"linking.always_pick_student":        "",
		"linking.link_intent_ttl":            "10m",
		"linking.events_retention":           "720h",
		"children.password_accounts":         true,
		"children.unconfirmed_esia_children": true,
		"children.argon2_time":               1,
		"children.argon2_memory_kib":         65536,
		"children.argon2_threads":            2,
		"children.grace_days":                0,
		"children.failures_per_login":        5,
		"children.failures_per_ip":           30,
		"children.window":                    "15m",
		"children.lockout":                   "15m",
		"children.failures_per_login_all":    20,
		"children.login_all_lockout":         "1m",
		"children.hash_memory_mib":           256,
		"children.hash_queue":                16,
		"children.hash_wait":                 "3s",
		"activation.client_id":               "",
		"activation.key_ttl":                 "5m",
		"activation.failures_per_ip":         10,
		"activation.window":                  "15m",
		"activation.lockout":                 "15m",
		"region.name":                        "Электронный дневник",
		"region.logo_file":                   "",
		"region.support_phone":               "",
		"region.support_email":               "",
		"region.support_url":                 "",
		"upstream.esia.enabled":              false,
		"upstream.esia.base_url":             "production",
		"upstream.esia.client_id":            "",
		"upstream.esia.redirect_uri":         "",
		"upstream.esia.scopes":               "openid fullname birthdate gender snils",
		"upstream.esia.access_type":          "online",
		"upstream.esia.timeout":              "10s",
		"upstream.esia.signer":               "gost",
		"upstream.esia.key_file":             "",
		"upstream.esia.cert_file":            "",
		"upstream.esia.signer_command":       "",
		"upstream.esia.signer_reverse":       false,
		"upstream.esia.token_issuer":         "",
		"upstream.esia.logout":               true,
		"upstream.esia.verify_cert_files":    "",
		"upstream.oidc.enabled":              false,
		"upstream.oidc.issuer":               "",
		"upstream.oidc.client_id":            "",
		"upstream.oidc.client_secret":        "",
		"upstream.oidc.client_secret_file":   "",
		"upstream.oidc.redirect_uri":         "",
		"upstream.oidc.scopes":               "openid profile",
		"upstream.oidc.display_name":         "Войти через Госуслуги",
		"upstream.oidc.claim_subject":        "sub",
		"upstream.oidc.claim_family_name":    "family_name",
		"upstream.oidc.claim_given_name":     "given_name",
		"upstream.oidc.claim_middle_name":    "middle_name",
		"upstream.oidc.claim_birthdate":      "birthdate",
		"upstream.oidc.claim_snils":          "",
		"upstream.oidc.claim_trusted":        "",
	}
}

// Error lists every invalid key of a configuration.
type Error struct {
	Problems []string
}

func (e *Error) Error() string {
	return "invalid configuration:\n  - " + strings.Join(e.Problems, "\n  - ")
}

// FileSets tells whether the configuration file at path sets key itself (not a default).
func FileSets(path, key string) (bool, error) {
	if path == "" {
		return false, nil
	}
	v := viper.New()
	v.SetConfigFile(path)
	v.SetConfigType("yaml")
	if err := v.ReadInConfig(); err != nil {
		return false, fmt.Errorf("config file %s: %w", path, err)
	}
	return v.InConfig(key), nil
}

// Load reads the file at path (if not empty), the environment, and defaults; then validates.
// The returned error is an *Error when the configuration is invalid.
func Load(path string, environ []string) (*Config, error) {
	v := viper.New()
	keys := make([]string, 0, len(Defaults()))
	for k, d := range Defaults() {
		v.SetDefault(k, d)
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if path != "" {
		v.SetConfigFile(path)
		v.SetConfigType("yaml")
		if err := v.ReadInConfig(); err != nil {
			return nil, &Error{Problems: []string{fmt.Sprintf("config file %s: %v", path, err)}}
		}
	}
	env := envMap(environ)
	for _, k := range keys {
		name := EnvName(k)
		if val, ok := env[name]; ok {
			v.Set(k, val)
		}
	}
	var problems []string
	if path != "" {
		known := map[string]bool{}
		for _, k := range keys {
			known[k] = true
		}
		for _, k := range v.AllKeys() {
			if !known[k] {
				problems = append(problems, fmt.Sprintf("%s: unknown key", k))
			}
		}
	}
	var c Config
	if err := v.Unmarshal(&c); err != nil {
		problems = append(problems, fmt.Sprintf("cannot decode: %v", err))
		return nil, &Error{Problems: problems}
	}
	problems = append(problems, c.validate()...)
	if len(problems) > 0 {
		sort.Strings(problems)
		return nil, &Error{Problems: problems}
	}
	return &c, nil
}

// EnvName is the environment variable that overrides a key, e.g. tokens.id_token_alg →
// ESIA_BROKER_TOKENS_ID_TOKEN_ALG.
func EnvName(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

func envMap(environ []string) map[string]string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && strings.HasPrefix(k, EnvPrefix+"_") {
			m[k] = v
		}
	}
	return m
}

func (c *Config) validate() []string {
	var p []string
	bad := func(key, format string, a ...any) { p = append(p, key+": "+fmt.Sprintf(format, a...)) }

	if u, err := url.Parse(c.Issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		bad("issuer", "must be an absolute http(s) URL without query or fragment, got %q", c.Issuer)
	} else if u.Scheme == "http" && !c.Dev && !isLoopback(u.Hostname()) {
		bad("issuer", "must use https outside dev mode (http is allowed only on loopback)")
	} else if u.Path != "" && u.Path != "/" {
		// The broker's routes are at the root of its host: an issuer with a path would
		// publish a discovery document whose endpoints do not exist.
		bad("issuer", "must have no path (the broker serves at the root of its host; put a path-routing proxy's public root here), got %q", u.Path)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "must be host:port, got %q", c.Listen)
	}
	if p := c.HTTP.PprofListen; p != "" {
		if host, _, err := net.SplitHostPort(p); err != nil || !isLoopback(host) {
			bad("http.pprof_listen", "must be a loopback host:port (the profiler is not for the network), got %q", p)
		}
	}
	if m := c.HTTP.MetricsListen; m != "" {
		if _, port, err := net.SplitHostPort(m); err != nil {
			bad("http.metrics_listen", "must be host:port (or empty to turn metrics off), got %q", m)
		} else if m == c.Listen && port != "0" {
			bad("http.metrics_listen", "must differ from listen: metrics are not served on the public listener")
		}
	}
	if d := c.Database.DSN; d != "" && !strings.HasPrefix(d, "postgres://") && !strings.HasPrefix(d, "postgresql://") && !strings.HasPrefix(d, "sqlite:") {
		bad("database.dsn", "must start with postgres://, postgresql:// or sqlite:")
	}
	if c.Database.ClientCacheTTL < 0 || c.Database.ClientCacheTTL > 10*time.Minute {
		bad("database.client_cache_ttl", "must be between 0s and 10m")
	}
	if c.Database.MaxOpenConns < 1 {
		bad("database.max_open_conns", "must be at least 1")
	}
	for _, s := range []struct {
		key         string
		inline, fil *string
		min         int
	}{
		{"secrets.master_key", &c.Secrets.MasterKey, &c.Secrets.MasterKeyFile, 32},
		{"secrets.cookie_key", &c.Secrets.CookieKey, &c.Secrets.CookieKeyFile, 32},
		{"secrets.snils_pepper", &c.Secrets.SNILSPepper, &c.Secrets.SNILSPepperFile, 32},
		{"secrets.token_key", &c.Secrets.TokenKey, &c.Secrets.TokenKeyFile, 32},
	} {
		if *s.fil != "" {
			if *s.inline != "" {
				bad(s.key, "give either %s or %s_file, not both", s.key, s.key)
				continue
			}
			b, err := os.ReadFile(*s.fil)
			if err != nil {
				bad(s.key+"_file", "cannot read: %v", err)
				continue
			}
			*s.inline = strings.TrimSpace(string(b))
		}
		if *s.inline == "" {
			if !c.Dev {
				bad(s.key, "is required (base64 of at least %d random bytes; e.g. `openssl rand -base64 32`)", s.min)
			}
			continue
		}
		if b, err := DecodeSecret(*s.inline); err != nil {
			bad(s.key, "must be base64: %v", err)
		} else if len(b) < s.min {
			bad(s.key, "must decode to at least %d bytes, got %d", s.min, len(b))
		}
	}
	t := c.Tokens
	for _, d := range []struct {
		key string
		v   time.Duration
		min time.Duration
	}{
		{"tokens.access_token_lifespan", t.AccessTokenLifespan, time.Minute},
		{"tokens.refresh_token_lifespan", t.RefreshTokenLifespan, time.Minute},
		{"tokens.id_token_lifespan", t.IDTokenLifespan, time.Minute},
		{"tokens.auth_code_lifespan", t.AuthCodeLifespan, 10 * time.Second},
		{"session.lifespan", c.Session.Lifespan, time.Minute},
		{"session.login_timeout", c.Session.LoginTimeout, 30 * time.Second},
		{"keys.reload_interval", c.Keys.ReloadInterval, time.Second},
		{"http.read_timeout", c.HTTP.ReadTimeout, time.Second},
		{"http.write_timeout", c.HTTP.WriteTimeout, time.Second},
		{"http.shutdown_timeout", c.HTTP.ShutdownTimeout, time.Second},
	} {
		if d.v < d.min {
			bad(d.key, "must be at least %s, got %s", d.min, d.v)
		}
	}
	if t.AuthCodeLifespan > 10*time.Minute {
		bad("tokens.auth_code_lifespan", "must be at most 10m (RFC 6749 §4.1.2), got %s", t.AuthCodeLifespan)
	}
	if t.RefreshGracePeriod < 0 || t.RefreshGracePeriod > time.Minute {
		bad("tokens.refresh_grace_period", "must be between 0s and 1m, got %s", t.RefreshGracePeriod)
	}
	if c.Keys.PublishBeforeUse < 0 {
		bad("keys.publish_before_use", "must not be negative")
	}
	if t.Subject != "uuid" && t.Subject != "esia_oid" && t.Subject != "pairwise" {
		bad("tokens.subject", "must be uuid, esia_oid or pairwise, got %q", t.Subject)
	}
	if _, err := t.SectorMap(); err != nil {
		bad("tokens.pairwise_sectors", "%v", err)
	}
	if t.AccessTokenFormat != "jwt" && t.AccessTokenFormat != "opaque" {
		bad("tokens.access_token_format", "must be jwt or opaque, got %q", t.AccessTokenFormat)
	}
	for key, alg := range map[string]string{"tokens.access_token_alg": t.AccessTokenAlg, "tokens.id_token_alg": t.IDTokenAlg} {
		if alg != "RS256" && alg != "ES256" {
			bad(key, "must be RS256 or ES256, got %q", alg)
		}
	}
	if c.Session.CookieName == "" || strings.ContainsAny(c.Session.CookieName, " ;,=\t") {
		bad("session.cookie_name", "must be a non-empty cookie name")
	}
	if n := c.Session.BrowserCookieName; n == "" || n == c.Session.CookieName || strings.ContainsAny(n, " ;,=\t") {
		bad("session.browser_cookie_name", "must be a non-empty cookie name that differs from session.cookie_name")
	}
	if _, err := c.HTTP.TrustedProxyNets(); err != nil {
		bad("http.trusted_proxies", "%v", err)
	}
	if c.HTTP.MaxBodyBytes < 1024 {
		bad("http.max_body_bytes", "must be at least 1024")
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "must be debug, info, warn or error, got %q", c.Log.Level)
	}
	if c.Log.Format != "json" && c.Log.Format != "text" {
		bad("log.format", "must be json or text, got %q", c.Log.Format)
	}
	if e := c.Telemetry.OTLPEndpoint; e != "" && !strings.HasPrefix(e, "http://") && !strings.HasPrefix(e, "https://") {
		bad("telemetry.otlp_endpoint", "must be an http(s) URL of an OTLP/HTTP collector, got %q", e)
	}
	if r := c.Telemetry.SampleRatio; r < 0 || r > 1 {
		bad("telemetry.sample_ratio", "must be between 0 and 1, got %v", r)
	}
	p = append(p, c.Upstream.validate()...)
	if e := c.Upstream.ESIA; e.Enabled && !c.Dev && strings.TrimSpace(e.VerifyCertFiles) == "" {
		p = append(p, "upstream.esia.verify_cert_files: is required: ESIA's certificates (PEM, or DER .cer as ESIA publishes them), so that the broker verifies ESIA's tokens")
	}
	if c.Limits.PagesPerIPPerMinute < 0 || c.Limits.TokenPerIPPerMinute < 0 {
		bad("limits", "pages_per_ip_per_minute and token_per_ip_per_minute must not be negative (0 turns them off)")
	}
	if c.Limits.InviteFailuresPerAccount < 1 || c.Limits.InviteFailuresPerIP < 1 {
		bad("limits", "invite_failures_per_account and invite_failures_per_ip must be at least 1")
	}
	if c.Limits.Window < time.Second || c.Limits.Lockout < time.Second {
		bad("limits", "window and lockout must be at least 1s")
	}
	ch := c.Children
	if ch.Argon2Time < 1 || ch.Argon2Time > 20 || ch.Argon2MemoryKiB < 7*1024 || ch.Argon2MemoryKiB > 1<<21 || ch.Argon2Threads < 1 || ch.Argon2Threads > 16 {
		bad("children.argon2_*", "time 1-20, memory 7168-2097152 KiB, threads 1-16")
	} else if !c.Dev && ch.Argon2MemoryKiB < ArgonMinMemoryKiB(ch.Argon2Time) {
		bad("children.argon2_*", "time %d with %d KiB is below OWASP's minimum for argon2id (Password Storage Cheat Sheet): at least %d KiB with time %d (46 MiB × 1, 19 MiB × 2, 12 MiB × 3, 9 MiB × 4, 7 MiB × 5 or more)",
			ch.Argon2Time, ch.Argon2MemoryKiB, ArgonMinMemoryKiB(ch.Argon2Time), ch.Argon2Time)
	}
	if ch.FailuresPerLoginAll < 1 || ch.LoginAllLockout < time.Second {
		bad("children.failures_per_login_all", "must be at least 1, and login_all_lockout at least 1s")
	}
	if ch.HashMemoryMiB < 8 || ch.HashQueue < 0 || ch.HashWait < 100*time.Millisecond || ch.HashWait > time.Minute {
		bad("children.hash_*", "hash_memory_mib at least 8, hash_queue not negative, hash_wait between 100ms and 1m")
	}
	if ch.GraceDays < 0 || ch.GraceDays > 365 {
		bad("children.grace_days", "must be between 0 and 365")
	}
	if ch.FailuresPerLogin < 1 || ch.FailuresPerIP < 1 || ch.Window < time.Second || ch.Lockout < time.Second {
		bad("children", "failure limits must be at least 1 and window / lockout at least 1s")
	}
	if a := c.Activation; a.KeyTTL < 30*time.Second || a.KeyTTL > time.Hour || a.FailuresPerIP < 1 || a.Window < time.Second || a.Lockout < time.Second {
		bad("activation", "key_ttl must be between 30s and 1h, failures_per_ip at least 1, window / lockout at least 1s")
	}
	if strings.TrimSpace(c.Region.Name) == "" || len([]rune(c.Region.Name)) > 80 {
		bad("region.name", "must be 1-80 characters")
	}
	if c.Region.LogoFile != "" {
		if b, err := os.ReadFile(c.Region.LogoFile); err != nil {
			bad("region.logo_file", "cannot read: %v", err)
		} else if len(b) > 512<<10 {
			bad("region.logo_file", "must be at most 512 KiB")
		}
	}
	if u := c.Region.SupportURL; u != "" && !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
		bad("region.support_url", "must be an http(s) URL")
	}
	if c.Linking.ConsentVersion == "" {
		bad("linking.consent_version", "must not be empty")
	}
	if c.Linking.LinkIntentTTL < 30*time.Second || c.Linking.LinkIntentTTL > time.Hour {
		bad("linking.link_intent_ttl", "must be between 30s and 1h")
	}
	if c.Linking.EventsRetention < time.Hour || c.Linking.EventsRetention > 8760*time.Hour {
		bad("linking.events_retention", "must be between 1h and 8760h (a year)")
	}
	return p
}

// SecureCookies tells whether cookies get the Secure attribute: the explicit setting, or true
// outside dev mode.
func (c *Config) SecureCookies() bool {
	if c.Session.SecureCookie != nil {
		return *c.Session.SecureCookie
	}
	return !c.Dev
}

// DecodeSecret decodes a base64 (standard or URL, padded or not) secret.
func DecodeSecret(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not valid base64")
}

// SecretFingerprints returns, for each secret by its key, a fingerprint that identifies it
// without revealing it: the first 128 bits of SHA-256 over a label, the key and the secret's
// bytes. (Not an HMAC keyed by the secret: HMAC hashes a key longer than its block first, so a
// long secret and its SHA-256 would share a fingerprint.) An empty secret (dev mode without a
// dev folder) has a fingerprint too, different from any real one.
func (c *Config) SecretFingerprints() map[string]string {
	fp := func(name, secret string) string {
		key, err := DecodeSecret(secret)
		if err != nil {
			key = []byte(secret)
		}
		h := sha256.New()
		h.Write([]byte("esia-broker secret fingerprint v2\x00" + name + "\x00"))
		h.Write(key)
		return "v2:" + hex.EncodeToString(h.Sum(nil)[:16])
	}
	s := c.Secrets
	return map[string]string{
		"secrets.master_key":   fp("secrets.master_key", s.MasterKey),
		"secrets.cookie_key":   fp("secrets.cookie_key", s.CookieKey),
		"secrets.snils_pepper": fp("secrets.snils_pepper", s.SNILSPepper),
		"secrets.token_key":    fp("secrets.token_key", s.TokenKey),
	}
}

// LegacySecretFingerprints returns the fingerprints earlier releases recorded (v1: an HMAC keyed
// by the secret), so that a database they first used is still recognised, with its fingerprints
// left as they are for replicas not yet upgraded.
func (c *Config) LegacySecretFingerprints() map[string]string {
	fp := func(secret string) string {
		key, err := DecodeSecret(secret)
		if err != nil {
			key = []byte(secret)
		}
		m := hmac.New(sha256.New, key)
		m.Write([]byte("esia-broker secret fingerprint v1"))
		return hex.EncodeToString(m.Sum(nil)[:16])
	}
	s := c.Secrets
	return map[string]string{
		"secrets.master_key":   fp(s.MasterKey),
		"secrets.cookie_key":   fp(s.CookieKey),
		"secrets.snils_pepper": fp(s.SNILSPepper),
		"secrets.token_key":    fp(s.TokenKey),
	}
}

// SecretRotatable tells whether a change of the secret loses only sessions or tokens, never
// data, so that an operator may accept a new one (esia-broker secrets accept): the cookie and
// token keys. The master key encrypts the signing keys and the pepper keys every stored SNILS
// digest and invite code: changing either makes the stored data unusable.
func SecretRotatable(name string) bool {
	return name == "secrets.cookie_key" || name == "secrets.token_key"
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (u *Upstream) validate() []string {
	var p []string
	bad := func(key, format string, a ...any) { p = append(p, key+": "+fmt.Sprintf(format, a...)) }
	e := &u.ESIA
	if e.Enabled {
		if b := e.ESIABaseURL(); !strings.HasPrefix(b, "https://") && !strings.HasPrefix(b, "http://") {
			bad("upstream.esia.base_url", "must be production, test or an http(s) URL, got %q", e.BaseURL)
		}
		if e.ClientID == "" {
			bad("upstream.esia.client_id", "is required (the system's мнемоника)")
		}
		if e.AccessType != "online" && e.AccessType != "offline" {
			bad("upstream.esia.access_type", "must be online or offline")
		}
		if e.Timeout < time.Second {
			bad("upstream.esia.timeout", "must be at least 1s")
		}
		if e.CertFile == "" {
			bad("upstream.esia.cert_file", "is required (the certificate registered at ESIA, PEM or DER)")
		}
		switch e.Signer {
		case "gost":
			if e.KeyFile == "" {
				bad("upstream.esia.key_file", "is required with signer gost (PKCS#8 PEM, as openssl genpkey -engine gost writes)")
			}
		case "command":
			if strings.TrimSpace(e.SignerCommand) == "" {
				bad("upstream.esia.signer_command", "is required with signer command")
			}
		default:
			bad("upstream.esia.signer", "must be gost or command, got %q", e.Signer)
		}
		if strings.TrimSpace(e.Scopes) == "" {
			bad("upstream.esia.scopes", "must not be empty")
		}
	}
	o := &u.OIDC
	if o.Enabled {
		if !strings.HasPrefix(o.Issuer, "https://") && !strings.HasPrefix(o.Issuer, "http://") {
			bad("upstream.oidc.issuer", "must be an http(s) URL")
		}
		if o.ClientID == "" {
			bad("upstream.oidc.client_id", "is required")
		}
		if o.ClientSecretFile != "" {
			b, err := os.ReadFile(o.ClientSecretFile)
			if err != nil {
				bad("upstream.oidc.client_secret_file", "cannot read: %v", err)
			} else {
				o.ClientSecret = strings.TrimSpace(string(b))
			}
		}
	}
	return p
}
