// Package broker is the OpenID Connect provider: fosite composed over the storage package, the
// HTTP routes, the browser session, the pages people see, and the signing keys.
package broker

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/hmac"
	"github.com/ory/fosite/token/jwt"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/invites"
	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/upstream"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Options are what a Broker is built from.
type Options struct {
	Config     *config.Config
	Store      *storage.Store
	Connectors []upstream.Connector
	Logger     *slog.Logger
	// Registry receives the broker's metrics; nil makes a private one.
	Registry *prometheus.Registry
	// Extra routes mounted on the broker's router (the dev server's demo RP and emulator).
	Mount func(r *mux.Router)
	// Calendar is the day on which ages are reckoned (the 14th birthday's cut-offs, who is an
	// adult); nil is time.Now. Tests pin it, so that no test depends on today's date.
	Calendar func() time.Time
	// Tracer traces requests and the connectors' upstream calls (OpenTelemetry); nil traces
	// nothing. The store is traced by its own SetTracer.
	Tracer trace.TracerProvider
}

// Broker is one provider process.
type Broker struct {
	cfg        *config.Config
	store      *storage.Store
	keys       *KeySet
	provider   fosite.OAuth2Provider
	idSigner   *tokenSigner
	connectors map[string]upstream.Connector
	connOrder  []upstream.Connector
	log        *slog.Logger
	pages      map[string]*template.Template
	metrics    *metrics
	cookieKey  []byte
	brand      brand
	logo       []byte
	mount      func(r *mux.Router)
	linker     *linking.Service
	clientAuth clientAuthentication
	invites    *invites.Service
	// keyDigestKey keys the digests of activation keys.
	keyDigestKey []byte
	proxies      []*net.IPNet
	subjects     *Subjects // the sub each diary sees (tokens.subject)
	calendar     func() time.Time
	tracer       trace.Tracer
	// logoutClient posts back-channel logout tokens.
	logoutClient *http.Client
}

// New composes the provider. It loads the signing keys (creating the first ones when there are
// none) and fails when the store's migrations are not current.
func New(ctx context.Context, o Options) (*Broker, error) {
	cfg := o.Config
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if ok, err := o.Store.MigrationsCurrent(ctx); err != nil {
		return nil, fmt.Errorf("check migrations: %w", err)
	} else if !ok {
		return nil, errors.New("database schema is not current: run `esia-broker migrate up` (or set database.migrate_on_start)")
	}
	// On a database in use with no fingerprints yet (upgraded), they are recorded once the
	// master key has decrypted the signing keys.
	fingerprints := cfg.SecretFingerprints()
	recordAfterKeys := false
	if err := o.Store.VerifySecrets(ctx, fingerprints, storage.RecordWhenEmpty, cfg.LegacySecretFingerprints()); err != nil {
		var unrecorded *storage.SecretsUnrecordedError
		if !errors.As(err, &unrecorded) {
			return nil, err
		}
		recordAfterKeys = true
	}
	master, err := config.DecodeSecret(cfg.Secrets.MasterKey)
	if err != nil {
		return nil, fmt.Errorf("secrets.master_key: %w", err)
	}
	tokenKey, err := config.DecodeSecret(cfg.Secrets.TokenKey)
	if err != nil {
		return nil, fmt.Errorf("secrets.token_key: %w", err)
	}
	cookieKey, err := config.DecodeSecret(cfg.Secrets.CookieKey)
	if err != nil {
		return nil, fmt.Errorf("secrets.cookie_key: %w", err)
	}
	pepper, err := config.DecodeSecret(cfg.Secrets.SNILSPepper)
	if err != nil {
		return nil, fmt.Errorf("secrets.snils_pepper: %w", err)
	}
	digester := linking.NewDigester(pepper)
	lim := cfg.Limits
	inv := invites.NewService(o.Store, digester.InviteKey(), invites.Limits{
		PerAccount: storage.AttemptLimit{Max: lim.InviteFailuresPerAccount, Window: lim.Window, Lockout: lim.Lockout},
		PerIP:      storage.AttemptLimit{Max: lim.InviteFailuresPerIP, Window: lim.Window, Lockout: lim.Lockout},
	})
	o.Store.RefreshGrace = cfg.Tokens.RefreshGracePeriod
	o.Store.ClientCacheTTL = cfg.Database.ClientCacheTTL
	overlap := max(cfg.Tokens.AccessTokenLifespan, cfg.Tokens.IDTokenLifespan) + 5*time.Minute
	keys, err := NewKeySet(o.Store, KeySetOptions{MasterKey: master, Reload: cfg.Keys.ReloadInterval, Overlap: overlap, PublishBeforeUse: cfg.Keys.PublishBeforeUse})
	if err != nil {
		return nil, err
	}
	if err := keys.Ensure(ctx, "RS256", "ES256"); err != nil {
		return nil, err
	}
	if recordAfterKeys {
		if err := o.Store.VerifySecrets(ctx, fingerprints, storage.RecordMissing, cfg.LegacySecretFingerprints()); err != nil {
			return nil, err
		}
		o.Logger.InfoContext(ctx, "recorded the fingerprints of the secrets after decrypting the signing keys")
	}

	issuer := strings.TrimSuffix(cfg.Issuer, "/")
	fc := &fosite.Config{
		AccessTokenLifespan:            cfg.Tokens.AccessTokenLifespan,
		RefreshTokenLifespan:           cfg.Tokens.RefreshTokenLifespan,
		AuthorizeCodeLifespan:          cfg.Tokens.AuthCodeLifespan,
		IDTokenLifespan:                cfg.Tokens.IDTokenLifespan,
		IDTokenIssuer:                  issuer,
		AccessTokenIssuer:              issuer,
		TokenURL:                       issuer + "/oauth2/token",
		GlobalSecret:                   tokenKey,
		EnforcePKCEForPublicClients:    true,
		EnablePKCEPlainChallengeMethod: false,
		ScopeStrategy:                  fosite.ExactScopeStrategy,
		AudienceMatchingStrategy:       fosite.DefaultAudienceMatchingStrategy,
		JWTScopeClaimKey:               jwt.JWTScopeFieldString,
		ClientSecretsHasher:            sha256Hasher{},
		SendDebugMessagesToClients:     false,
		MinParameterEntropy:            8,
		RefreshTokenScopes:             []string{"offline_access"},
		TokenEntropy:                   32,
		// RFC 9126: a pushed request lives 90 s and is used once (the store deletes it).
		PushedAuthorizeRequestURIPrefix: parURIPrefix,
		PushedAuthorizeContextLifespan:  90 * time.Second,
	}
	hmacStrategy := oauth2.NewHMACSHAStrategy(&hmac.HMACStrategy{Config: fc}, fc)
	var core oauth2.CoreStrategy = hmacStrategy
	if cfg.Tokens.AccessTokenFormat == "jwt" {
		core = &oauth2.DefaultJWTStrategy{Signer: &tokenSigner{keys: keys, defaultAlg: cfg.Tokens.AccessTokenAlg}, HMACSHAStrategy: hmacStrategy, Config: fc}
	}
	idSigner := &tokenSigner{keys: keys, defaultAlg: cfg.Tokens.IDTokenAlg}
	strategy := &compose.CommonStrategy{
		CoreStrategy:               core,
		OpenIDConnectTokenStrategy: &openid.DefaultStrategy{Signer: idSigner, Config: fc},
		Signer:                     idSigner,
	}
	b := &Broker{}
	keyGrant := func(config fosite.Configurator, _ any, _ any) any {
		return &keyGrantHandler{b: b, strategy: core, storage: o.Store, config: config}
	}
	provider := compose.Compose(fc, o.Store, strategy,
		keyGrant,
		compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2ClientCredentialsGrantFactory,
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OAuth2TokenIntrospectionFactory,
		compose.OAuth2TokenRevocationFactory,
		compose.OAuth2PKCEFactory,
		compose.OpenIDConnectExplicitFactory,
		compose.OpenIDConnectRefreshFactory,
		compose.PushedAuthorizeHandlerFactory,
	)
	// A client's private_key_jwt assertion names the broker as its audience by the token
	// endpoint (OpenID Connect Core §9) or by the issuer (RFC 7523 §3; what FAPI 2 and most
	// libraries send): both are accepted, at every endpoint that authenticates clients.
	f, ok := provider.(*fosite.Fosite)
	if !ok {
		return nil, errNoFosite
	}
	f.Config = assertionAudiences{Config: fc, urls: []string{issuer + "/oauth2/token", issuer}}
	clientAuth := clientAuthentication{f: f, now: time.Now}
	fc.ClientAuthenticationStrategy = clientAuth.authenticate

	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	*b = Broker{
		cfg: cfg, store: o.Store, keys: keys, provider: provider, idSigner: idSigner,
		connectors: map[string]upstream.Connector{}, log: o.Logger, pages: pages,
		metrics: newMetrics(o.Registry, o.Store), cookieKey: cookieKey, mount: o.Mount, logoutClient: newLogoutClient(issuer),
		linker: linking.NewService(o.Store, digester, inv), invites: inv, keyDigestKey: digester.InviteKey(), clientAuth: clientAuth,
	}
	b.brand = brand{Name: cfg.Region.Name, SupportPhone: cfg.Region.SupportPhone, SupportEmail: cfg.Region.SupportEmail, SupportURL: cfg.Region.SupportURL}
	if cfg.Region.LogoFile != "" {
		if b.logo, err = os.ReadFile(cfg.Region.LogoFile); err != nil {
			return nil, fmt.Errorf("region.logo_file: %w", err)
		}
		b.brand.Logo = true
	}
	readyGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "esia_broker_ready",
		Help: "1 when this replica can serve (database reachable, migrations current), as /readyz says; checked at every scrape."},
		func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if b.ready(ctx) != nil {
				return 0
			}
			return 1
		})
	b.metrics.reg.MustRegister(readyGauge)
	b.metrics.all = append(b.metrics.all, readyGauge)
	tp := o.Tracer
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	b.tracer = tp.Tracer("github.com/esia-broker/esia-broker/broker")
	b.calendar = time.Now
	if o.Calendar != nil {
		b.calendar = o.Calendar
		b.linker.SetClock(o.Calendar)
	}
	if b.subjects, err = NewSubjects(cfg.Tokens, cfg.OIDUpstream(), b.linker.Digester()); err != nil {
		return nil, err
	}
	// The admin commands follow the server's setting (accounts forget queues logouts by it).
	if err := b.subjects.Record(ctx, o.Store); err != nil {
		return nil, err
	}
	for id := range b.subjects.sectors {
		// A typo here would silently give a client a sub of its own: said at start.
		if cfg.Tokens.Subject != "pairwise" {
			b.log.Warn("tokens.pairwise_sectors is set but tokens.subject is not pairwise: it has no effect")
			break
		}
		if _, err := o.Store.Client(ctx, id); errors.Is(err, storage.ErrNotFound) {
			b.log.Warn("tokens.pairwise_sectors names a client that is not registered", "client_id", id)
		}
	}
	// Logouts carry the sub the diary saw, made when they are queued: an account forgotten has
	// no oid left by the time its logouts are sent.
	b.subjects.Install(o.Store)
	if b.proxies, err = cfg.HTTP.TrustedProxyNets(); err != nil {
		return nil, fmt.Errorf("http.trusted_proxies: %w", err)
	}
	ch := cfg.Children
	b.linker.SetChildOptions(linking.ChildOptions{
		PasswordAccountsOff: !ch.PasswordAccounts,
		Argon2:              linking.Argon2Params{Time: ch.Argon2Time, MemoryKiB: ch.Argon2MemoryKiB, Threads: ch.Argon2Threads},
		GraceDays:           ch.GraceDays,
		PerLogin:            storage.AttemptLimit{Max: ch.FailuresPerLogin, Window: ch.Window, Lockout: ch.Lockout},
		PerIP:               storage.AttemptLimit{Max: ch.FailuresPerIP, Window: ch.Window, Lockout: ch.Lockout},
		PerLoginAll:         storage.AttemptLimit{Max: ch.FailuresPerLoginAll, Window: ch.Window, Lockout: ch.LoginAllLockout},
		HashConcurrency:     ch.HashConcurrency(),
		HashQueue:           ch.HashQueue,
		HashWait:            ch.HashWait,
		CreatePerAccount:    linking.DefaultChildOptions().CreatePerAccount,
	})
	for _, c := range o.Connectors {
		if _, dup := b.connectors[c.ID()]; dup {
			return nil, fmt.Errorf("two connectors with id %q", c.ID())
		}
		b.connectors[c.ID()] = c
		b.connOrder = append(b.connOrder, c)
		if ch, ok := c.(upstream.CertificateHolder); ok {
			b.watchCertificates(c.ID(), ch.Certificates())
		}
		if ob, ok := c.(upstream.Observer); ok {
			ob.ObserveUpstream(b.metrics.observeUpstream(c.ID()))
		}
		if tc, ok := c.(upstream.Tracer); ok {
			tc.TraceUpstream(tp)
		}
	}
	return b, nil
}

// watchCertificates logs when each certificate expires and exports it as a metric: ESIA
// replaces its test certificate every year, and a lapsed certificate stops every login.
func (b *Broker) watchCertificates(connector string, certs []upstream.CertificateInfo) {
	now := time.Now()
	for _, c := range certs {
		b.metrics.certExpiry.WithLabelValues(connector, c.Role, c.Subject).Set(float64(c.NotAfter.Unix()))
		if !c.NotBefore.IsZero() {
			b.metrics.certIssued.WithLabelValues(connector, c.Role, c.Subject).Set(float64(c.NotBefore.Unix()))
		}
		days := int(c.NotAfter.Sub(now).Hours() / 24)
		attrs := []any{"connector", connector, "role", c.Role, "subject", c.Subject, "not_after", c.NotAfter.UTC().Format(time.RFC3339), "days_left", days}
		switch {
		case !now.Before(c.NotAfter):
			b.log.Error("certificate has expired", attrs...)
		case days < 30:
			b.log.Warn("certificate expires soon", attrs...)
		default:
			b.log.Info("certificate", attrs...)
		}
	}
}

// DisablePasswordAccounts disables every login-and-password sub-account, each with an audit
// line: serve calls it at start when children.password_accounts is false.
func (b *Broker) DisablePasswordAccounts(ctx context.Context) (int, error) {
	return b.linker.DisablePasswordAccounts(ctx, "system:children.password_accounts")
}

// Keys gives the broker's signing key set (for the CLI and tests).
func (b *Broker) Keys() *KeySet { return b.keys }

// Run does the background work until ctx ends: reloading keys, removing expired rows and
// delivering back-channel logouts.
func (b *Broker) Run(ctx context.Context) {
	go b.keys.Run(ctx)
	t := time.NewTicker(5 * time.Minute)
	defer t.Stop()
	logouts := time.NewTicker(2 * time.Second)
	defer logouts.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.cleanup(ctx)
		case <-logouts.C:
			if _, err := b.DeliverLogouts(ctx); err != nil && ctx.Err() == nil {
				b.log.Error("deliver back-channel logouts", "err", err)
			}
		}
	}
}

// cleanupJob is the advisory-lock id of the expired-rows cleanup.
const cleanupJob = 0x65736963 // "esic"

// cleanup removes expired codes, tokens, flows, sessions and login requests; with several
// replicas on PostgreSQL only one runs it at a time.
func (b *Broker) cleanup(ctx context.Context) {
	var n int64
	ran, err := b.store.RunExclusive(ctx, cleanupJob, func(ctx context.Context) error {
		var err error
		if n, err = b.store.DeleteExpired(ctx); err != nil {
			return err
		}
		if keep := b.cfg.Linking.EventsRetention; keep > 0 {
			pruned, err := b.store.PruneEvents(ctx, keep)
			n += pruned
			return err
		}
		return nil
	})
	switch {
	case err != nil:
		b.log.Error("delete expired rows", "err", err)
	case ran && n > 0:
		b.log.Info("deleted expired rows", "rows", n)
	}
}

// Handler returns the broker's HTTP handler with every route and middleware.
func (b *Broker) Handler() http.Handler { return b.middleware(b.router()) }

// Route is one route of the broker: a path template and its methods.
type Route struct {
	Path    string
	Methods []string
}

// Routes lists the broker's routes (the API description is checked against them).
func (b *Broker) Routes() []Route {
	var out []Route
	_ = b.router().Walk(func(rt *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		p, err := rt.GetPathTemplate()
		if err != nil {
			return nil
		}
		m, _ := rt.GetMethods()
		out = append(out, Route{Path: p, Methods: m})
		return nil
	})
	return out
}

// router builds the routes, without the middleware.
func (b *Broker) router() *mux.Router {
	r := mux.NewRouter()
	r.NotFoundHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			b.auditUnrouted(r, http.StatusNotFound)
			apiError(w, http.StatusNotFound, "not_found", "No such API call: see /api/v1/openapi.json.")
			return
		}
		b.renderError(w, r, &UserError{Status: http.StatusNotFound, Title: "Страница не найдена", Message: "Такой страницы нет. Проверьте адрес или вернитесь в электронный дневник."})
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			b.auditUnrouted(r, http.StatusMethodNotAllowed)
			apiError(w, http.StatusMethodNotAllowed, "method_not_allowed", "This API address does not take "+r.Method+": see /api/v1/openapi.json.")
			return
		}
		b.renderError(w, r, &UserError{Status: http.StatusMethodNotAllowed, Title: "Действие недоступно", Message: "Этот адрес не принимает такой запрос. Вернитесь в электронный дневник и попробуйте снова."})
	})
	route := func(path, name string, h http.HandlerFunc, methods ...string) {
		r.Handle(path, b.instrument(name, h)).Methods(methods...)
	}
	route("/.well-known/openid-configuration", "discovery", b.discovery, http.MethodGet, http.MethodHead)
	route("/oauth2/jwks", "jwks", b.jwks, http.MethodGet, http.MethodHead)
	pages := func() int { return b.cfg.Limits.PagesPerIPPerMinute }
	route("/oauth2/authorize", "authorize", b.limited("authorize", pages, b.authorize), http.MethodGet, http.MethodPost)
	route("/oauth2/authorize/resume", "authorize_resume", b.resume, http.MethodGet)
	route("/oauth2/par", "par", b.limited("par", pages, b.pushedAuthorize), http.MethodPost)
	route("/oauth2/token", "token", b.limited("token", func() int { return b.cfg.Limits.TokenPerIPPerMinute }, b.token), http.MethodPost)
	route("/oauth2/revoke", "revoke", b.revoke, http.MethodPost)
	route("/oauth2/introspect", "introspect", b.introspect, http.MethodPost)
	route("/oauth2/userinfo", "userinfo", b.userinfo, http.MethodGet, http.MethodPost)
	route("/oauth2/logout", "logout", b.logout, http.MethodGet, http.MethodPost)
	route("/oauth2/logout/done", "logout_done", b.logoutDone, http.MethodGet)
	route("/login/{connector}", "login", b.limited("login", pages, b.loginStart), http.MethodGet)
	for _, c := range b.connOrder {
		id := c.ID()
		route("/"+id+"/callback", "callback", b.limited("callback", pages, func(w http.ResponseWriter, r *http.Request) { b.callback(w, r, id) }), http.MethodGet)
	}
	route("/link/role", "link_role", b.rolePage, http.MethodGet)
	route("/link/code", "link_code", b.codePage, http.MethodGet)
	route("/link/code", "link_code_post", b.limited("link_code_post", pages, b.redeemCode), http.MethodPost)
	route("/link/{intent}", "link_intent", b.linkIntentPage, http.MethodGet)
	route("/link/{intent}", "link_intent_start", b.limited("link_intent_start", pages, b.linkIntentStart), http.MethodPost)
	route("/consent", "consent", b.consent, http.MethodPost)
	route("/select", "select", b.selectStudent, http.MethodPost)
	route("/account", "account", b.accountPage, http.MethodGet)
	route("/account/child", "account_child", b.accountChild, http.MethodPost)
	route("/account/key", "account_key", b.generateKey, http.MethodPost)
	route("/account/devices/revoke", "account_device_revoke", b.revokeDevice, http.MethodPost)
	route("/child/login", "child_login", b.childLoginPage, http.MethodGet)
	route("/child/login", "child_login_post", b.limited("child_login_post", pages, b.childLogin), http.MethodPost)
	route("/api/v1/students/batch", "api_students_batch", b.audited("api_students_batch", b.apiPutStudents), http.MethodPost)
	route("/api/v1/students/{id}", "api_student_put", b.audited("api_student_put", b.apiPutStudent), http.MethodPut)
	route("/api/v1/students/{id}", "api_student_delete", b.audited("api_student_delete", b.apiDeactivateStudent), http.MethodDelete)
	route("/api/v1/link-intents", "api_link_intents", b.audited("api_link_intents", b.apiCreateLinkIntent), http.MethodPost)
	route("/api/v1/invites", "api_invites_issue", b.audited("api_invites_issue", b.apiIssueInvites), http.MethodPost)
	route("/api/v1/invites", "api_invites_list", b.audited("api_invites_list", b.apiListInvites), http.MethodGet)
	route("/api/v1/invites/sheet", "api_invites_sheet", b.audited("api_invites_sheet", b.apiInviteSheet), http.MethodPost)
	route("/api/v1/invites/{id}", "api_invite_revoke", b.audited("api_invite_revoke", b.apiRevokeInvite), http.MethodDelete)
	route("/api/v1/students/{id}/links", "api_student_links", b.audited("api_student_links", b.apiStudentLinks), http.MethodGet)
	route("/api/v1/links/{id}", "api_link_end", b.audited("api_link_end", b.apiEndLink), http.MethodDelete)
	route("/api/v1/events", "api_events", b.audited("api_events", b.apiEvents), http.MethodGet)
	route("/api/v1/openapi.json", "api_openapi", b.apiDocument, http.MethodGet, http.MethodHead)
	route("/", "home", b.home, http.MethodGet, http.MethodHead)
	route("/account/login", "account_login", b.limited("account_login", pages, b.accountLogin), http.MethodPost)
	route("/healthz", "healthz", b.healthz, http.MethodGet, http.MethodHead)
	route("/readyz", "readyz", b.readyz, http.MethodGet, http.MethodHead)
	r.HandleFunc("/brand/logo", b.serveLogo).Methods(http.MethodGet, http.MethodHead)
	// Browsers ask for /favicon.ico on their own: the region's logo when configured, else ours.
	r.HandleFunc("/favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		to := "/static/favicon.svg"
		if b.brand.Logo {
			to = "/brand/logo"
		}
		http.Redirect(w, r, to, http.StatusMovedPermanently)
	}).Methods(http.MethodGet, http.MethodHead)
	static, _ := fs.Sub(staticFS, "static")
	r.PathPrefix("/static/").Handler(http.StripPrefix("/static/", noListing(http.FileServer(http.FS(static))))).Methods(http.MethodGet, http.MethodHead)
	if b.mount != nil {
		b.mount(r)
	}
	return r
}

// MetricsHandler serves Prometheus metrics; serve mounts it on http.metrics_listen, never on the
// public listener.
func (b *Broker) MetricsHandler() http.Handler { return b.metrics.handler() }

// noListing refuses directory paths, so that the file server never lists a folder.
func noListing(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "" || strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
}

func (b *Broker) serveLogo(w http.ResponseWriter, r *http.Request) {
	if len(b.logo) == 0 {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", http.DetectContentType(b.logo))
	w.Header().Set("Cache-Control", "public, max-age=3600")
	_, _ = w.Write(b.logo)
}

func (b *Broker) healthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

func (b *Broker) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if err := b.ready(ctx); err != nil {
		b.logger(ctx).Warn("not ready", "err", err)
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// ready tells whether this replica can serve: the database reachable and its migrations
// current. /readyz and the esia_broker_ready gauge ask it.
func (b *Broker) ready(ctx context.Context) error {
	if err := b.store.Ping(ctx); err != nil {
		return fmt.Errorf("database unreachable: %w", err)
	}
	if ok, err := b.store.MigrationsCurrent(ctx); err != nil {
		return fmt.Errorf("migrations: %w", err)
	} else if !ok {
		return errors.New("migrations not current")
	}
	return nil
}

// sha256Hasher hashes client secrets. Secrets are 256-bit random values the broker generates, so
// a fast hash is as safe as bcrypt here and keeps the token endpoint cheap.
type sha256Hasher struct{}

func (sha256Hasher) Hash(_ context.Context, data []byte) ([]byte, error) {
	return []byte(HashClientSecret(string(data))), nil
}

func (sha256Hasher) Compare(_ context.Context, hash, data []byte) error {
	if subtle.ConstantTimeCompare(hash, []byte(HashClientSecret(string(data)))) != 1 {
		return errors.New("client secret does not match")
	}
	return nil
}

// HashClientSecret is the stored form of a client secret.
func HashClientSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return "sha256$" + hex.EncodeToString(sum[:])
}

// assertionAudiences is fosite's configuration with the audiences a client assertion may name.
type assertionAudiences struct {
	*fosite.Config
	urls []string
}

func (a assertionAudiences) GetTokenURLs(context.Context) []string { return a.urls }
