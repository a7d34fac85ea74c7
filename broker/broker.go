// Package broker assembles the broker: it builds every area (provider, flow, account, api,
// backchannel) from the configuration, mounts their routes under one middleware stack, serves
// health, readiness and the static files, and runs the background work.
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/esia-broker/esia-broker/account"
	"github.com/esia-broker/esia-broker/api"
	"github.com/esia-broker/esia-broker/backchannel"
	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/flow"
	"github.com/esia-broker/esia-broker/invites"
	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/pages"
	"github.com/esia-broker/esia-broker/provider"
	"github.com/esia-broker/esia-broker/signing"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/upstream"
	"github.com/esia-broker/esia-broker/web"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

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

// Broker is one provider process: the areas wired together, and the background work.
type Broker struct {
	*web.Kit
	cfg       *config.Config
	store     *storage.Store
	keys      *signing.KeySet
	provider  *provider.Provider
	flow      *flow.Flow
	account   *account.Handler
	api       *api.Handler
	logouts   *backchannel.Sender
	linker    *linking.Service
	log       *slog.Logger
	metrics   *web.Metrics
	logo      []byte
	brand     pages.Brand
	mount     func(r *mux.Router)
	connOrder []upstream.Connector
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
	linker, inv, err := Services(cfg, o.Store)
	if err != nil {
		return nil, err
	}
	digester := linker.Digester()
	o.Store.RefreshGrace = cfg.Tokens.RefreshGracePeriod
	o.Store.ClientCacheTTL = cfg.Database.ClientCacheTTL
	overlap := max(cfg.Tokens.AccessTokenLifespan, cfg.Tokens.IDTokenLifespan) + 5*time.Minute
	keys, err := signing.NewKeySet(o.Store, signing.KeySetOptions{MasterKey: master, Reload: cfg.Keys.ReloadInterval, Overlap: overlap, PublishBeforeUse: cfg.Keys.PublishBeforeUse})
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

	b := &Broker{cfg: cfg, store: o.Store, keys: keys, log: o.Logger, mount: o.Mount, metrics: web.NewMetrics(o.Registry, o.Store)}
	b.brand = pages.Brand{Name: cfg.Region.Name, SupportPhone: cfg.Region.SupportPhone, SupportEmail: cfg.Region.SupportEmail, SupportURL: cfg.Region.SupportURL}
	if cfg.Region.LogoFile != "" {
		if b.logo, err = os.ReadFile(cfg.Region.LogoFile); err != nil {
			return nil, fmt.Errorf("region.logo_file: %w", err)
		}
		b.brand.Logo = true
	}
	pageSet, err := pages.Parse(b.brand)
	if err != nil {
		return nil, err
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
	b.metrics.Register(readyGauge)
	tp := o.Tracer
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	proxies, err := cfg.HTTP.TrustedProxyNets()
	if err != nil {
		return nil, fmt.Errorf("http.trusted_proxies: %w", err)
	}
	b.Kit = web.New(web.Options{Config: cfg, Hits: o.Store, Logger: o.Logger, Metrics: b.metrics, Pages: pageSet, CookieKey: cookieKey,
		Proxies: proxies, Tracer: tp.Tracer("github.com/esia-broker/esia-broker/broker")})
	calendar := time.Now
	b.linker = linker
	if o.Calendar != nil {
		calendar = o.Calendar
		b.linker.SetClock(o.Calendar)
	}
	subjects, err := provider.NewSubjects(cfg.Tokens, cfg.OIDUpstream(), b.linker.Digester())
	if err != nil {
		return nil, err
	}
	// The admin commands follow the server's setting (accounts forget queues logouts by it).
	if err := subjects.Record(ctx, o.Store); err != nil {
		return nil, err
	}
	for _, id := range subjects.SectorClients() {
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
	subjects.Install(o.Store)
	b.linker.SetChildOptions(ChildOptions(cfg))
	seen := map[string]bool{}
	for _, c := range o.Connectors {
		if seen[c.ID()] {
			return nil, fmt.Errorf("two connectors with id %q", c.ID())
		}
		seen[c.ID()] = true
		b.connOrder = append(b.connOrder, c)
		if ch, ok := c.(upstream.CertificateHolder); ok {
			b.watchCertificates(c.ID(), ch.Certificates())
		}
		if ob, ok := c.(upstream.Observer); ok {
			ob.ObserveUpstream(b.metrics.ObserveUpstream(c.ID()))
		}
		if tc, ok := c.(upstream.Tracer); ok {
			tc.TraceUpstream(tp)
		}
	}
	if b.provider, err = provider.New(provider.Options{Kit: b.Kit, Config: cfg, Store: o.Store, Keys: keys, Linker: b.linker, Subjects: subjects,
		TokenKey: tokenKey, KeyDigestKey: digester.InviteKey(), Calendar: calendar}); err != nil {
		return nil, err
	}
	b.flow = flow.New(flow.Options{Kit: b.Kit, Config: cfg, Store: o.Store, Provider: b.provider, Linker: b.linker, Connectors: b.connOrder, Calendar: calendar})
	b.account = account.New(account.Options{Kit: b.Kit, Config: cfg, Store: o.Store, Provider: b.provider, Flow: b.flow, Linker: b.linker,
		KeyDigestKey: digester.InviteKey(), Calendar: calendar})
	b.api = api.New(api.Options{Kit: b.Kit, Config: cfg, Store: o.Store, Provider: b.provider, Linker: b.linker, Invites: inv})
	b.logouts = backchannel.New(o.Store, b.provider, cfg.Issuer, o.Logger, b.metrics)
	return b, nil
}

// watchCertificates logs when each certificate expires and exports it as a metric: ESIA
// replaces its test certificate every year, and a lapsed certificate stops every login.
func (b *Broker) watchCertificates(connector string, certs []upstream.CertificateInfo) {
	now := time.Now()
	for _, c := range certs {
		b.metrics.CertExpiry.WithLabelValues(connector, c.Role, c.Subject).Set(float64(c.NotAfter.Unix()))
		if !c.NotBefore.IsZero() {
			b.metrics.CertIssued.WithLabelValues(connector, c.Role, c.Subject).Set(float64(c.NotBefore.Unix()))
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
func (b *Broker) Keys() *signing.KeySet { return b.keys }

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
			if _, err := b.logouts.DeliverLogouts(ctx); err != nil && ctx.Err() == nil {
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
func (b *Broker) Handler() http.Handler { return b.Middleware(b.router()) }

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
			b.api.Unrouted(w, r, http.StatusNotFound)
			return
		}
		b.RenderError(w, r, pages.NotFound)
	})
	r.MethodNotAllowedHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/api/") {
			b.api.Unrouted(w, r, http.StatusMethodNotAllowed)
			return
		}
		b.RenderError(w, r, pages.MethodNotAllowed)
	})
	rt := b.NewRouter(r)
	b.provider.Mount(rt)
	b.flow.Mount(rt)
	b.account.Mount(rt)
	b.api.Mount(rt)
	rt.Handle("/healthz", "healthz", b.healthz, http.MethodGet, http.MethodHead)
	rt.Handle("/readyz", "readyz", b.readyz, http.MethodGet, http.MethodHead)
	r.HandleFunc("/brand/logo", b.serveLogo).Methods(http.MethodGet, http.MethodHead)
	// Browsers ask for /favicon.ico on their own: the region's logo when configured, else ours.
	r.HandleFunc("/favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		to := "/static/favicon.svg"
		if b.brand.Logo {
			to = "/brand/logo"
		}
		http.Redirect(w, r, to, http.StatusMovedPermanently)
	}).Methods(http.MethodGet, http.MethodHead)
	r.PathPrefix("/static/").Handler(http.StripPrefix("/static/", noListing(http.FileServer(http.FS(pages.Static()))))).Methods(http.MethodGet, http.MethodHead)
	if b.mount != nil {
		b.mount(r)
	}
	return r
}

// MetricsHandler serves Prometheus metrics; serve mounts it on http.metrics_listen, never on the
// public listener.
func (b *Broker) MetricsHandler() http.Handler { return b.metrics.Handler() }

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
		b.Logger(ctx).Warn("not ready", "err", err)
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

// MetricNames lists the names of every metric family the broker exports (its own, the
// runtime's, the process's, the pool's): what dashboards and alert rules may name.
func (b *Broker) MetricNames() []string { return b.metrics.Names() }

// DeliverLogouts sends the back-channel logouts that are due (Run does it every two seconds).
func (b *Broker) DeliverLogouts(ctx context.Context) (int, error) {
	return b.logouts.DeliverLogouts(ctx)
}

// Services builds the linking and invites services over s from the configuration: the server
// and the admin commands share them.
func Services(cfg *config.Config, s *storage.Store) (*linking.Service, *invites.Service, error) {
	pepper, err := config.DecodeSecret(cfg.Secrets.SNILSPepper)
	if err != nil {
		return nil, nil, fmt.Errorf("secrets.snils_pepper: %w", err)
	}
	d := linking.NewDigester(pepper)
	l := cfg.Limits
	inv := invites.NewService(s, d.InviteKey(), invites.Limits{
		PerAccount: storage.AttemptLimit{Max: l.InviteFailuresPerAccount, Window: l.Window, Lockout: l.Lockout},
		PerIP:      storage.AttemptLimit{Max: l.InviteFailuresPerIP, Window: l.Window, Lockout: l.Lockout},
	})
	return linking.NewService(s, d, inv), inv, nil
}

// ChildOptions are the rules of children's login-and-password sub-accounts the configuration
// sets (children.*): the server's and the children import's.
func ChildOptions(cfg *config.Config) linking.ChildOptions {
	ch := cfg.Children
	return linking.ChildOptions{
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
	}
}
