package web

import (
	"database/sql"
	"net/http"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/esia-broker/esia-broker/esia"
	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the broker's Prometheus metrics.
type Metrics struct {
	reg *prometheus.Registry
	// all is every collector registered, for MetricNames.
	all      []prometheus.Collector
	Requests *prometheus.CounterVec
	Latency  *prometheus.HistogramVec
	Tokens   *prometheus.CounterVec
	Logins   *prometheus.CounterVec
	// upstreamRefusals counts logins ESIA refused for the broker's own configuration.
	UpstreamRefusals *prometheus.CounterVec
	CertExpiry       *prometheus.GaugeVec
	CertIssued       *prometheus.GaugeVec
	// callbackErrors counts ESIA error codes on the redirect back (through the browser).
	CallbackErrors *prometheus.CounterVec
	// Calls to the upstreams (ESIA): latency, and how each ended.
	UpstreamLatency *prometheus.HistogramVec
	UpstreamResults *prometheus.CounterVec
	// The business: links made and ended, invite redemptions, rate limits and lock-outs,
	// activation keys, consent.
	Links       *prometheus.CounterVec
	Invites     *prometheus.CounterVec
	RateLimited *prometheus.CounterVec
	Lockouts    *prometheus.CounterVec
	// logouts counts back-channel logout attempts; logoutsPending is the queue's length.
	Logouts        *prometheus.CounterVec
	LogoutsPending prometheus.Gauge
	Keys           *prometheus.CounterVec
	Consents       *prometheus.CounterVec
}

// poolStats is what the metrics read of the database pool.
type poolStats interface{ Stats() sql.DBStats }

// NewMetrics registers the broker's metrics, the Go runtime's and the process's, the database
// pool's (db, when not nil) and the build's on reg. Every label takes values from a small fixed
// set: routes, connectors, results, ESIA codes of esia.Codes, registered clients; never a
// person, a student or a code.
func NewMetrics(reg *prometheus.Registry, db poolStats) *Metrics {
	m := &Metrics{
		reg: reg,
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		Latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "esia_broker_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
		Tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_tokens_issued_total", Help: "Token responses issued, by grant type and client.",
		}, []string{"grant", "client"}),
		Logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_logins_total", Help: "Logins by connector (esia, oidc, child) and result.",
		}, []string{"connector", "result"}),
		UpstreamRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_upstream_configuration_errors_total",
			Help: "Logins that ESIA refused because of the broker's configuration (key, certificate, мнемоника, scopes, redirect URI, clock), by ESIA code. Anything above zero needs the operator.",
		}, []string{"code"}),
		CertExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "esia_broker_certificate_expiry_timestamp_seconds",
			Help: "When a certificate the broker depends on expires (Unix time): role client is the system's own certificate registered at ESIA, role esia each certificate ESIA signs tokens with.",
		}, []string{"connector", "role", "subject"}),
		CertIssued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "esia_broker_certificate_not_before_timestamp_seconds",
			Help: "When a certificate the broker depends on became valid (Unix time): its age is time() minus this.",
		}, []string{"connector", "role", "subject"}),
		CallbackErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_upstream_callback_errors_total",
			Help: "Errors the upstream put on the redirect back, by ESIA code (one of esia.Codes, other, or empty). They pass through the browser and can be forged: configuration faults are confirmed by a probe before esia_broker_upstream_configuration_errors_total counts them.",
		}, []string{"upstream", "code"}),
		UpstreamLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "esia_broker_upstream_request_duration_seconds", Help: "Calls to the upstream (ESIA) by call: authorize (signing the redirect), token, person, contacts, kids, probe.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"upstream", "call"}),
		UpstreamResults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_upstream_requests_total",
			Help: "Calls to the upstream by call and result (ok, timeout, connection, http_5xx, unavailable, bad_response, esia_error, other), and ESIA's error code for esia_error.",
		}, []string{"upstream", "call", "result", "code"}),
		Links: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_links_total", Help: "Links between accounts and students made (added) and ended (revoked) by the broker's own flows, by method: snils, invite, diary.",
		}, []string{"method", "change"}),
		Invites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_invite_redemptions_total", Help: "Invite code redemptions by result.",
		}, []string{"result"}),
		RateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_rate_limited_total", Help: "Requests refused by the per-address rate limits, by route.",
		}, []string{"route"}),
		Lockouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_lockouts_total", Help: "Attempts refused because a login, an address or an account is locked out, by kind: child, invite, activation.",
		}, []string{"kind"}),
		Keys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_activation_keys_total", Help: "Activation keys of the mobile app: issued, used, refused.",
		}, []string{"result"}),
		Consents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_consents_total", Help: "Consent pages: shown, given, refused.",
		}, []string{"result"}),
		Logouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_backchannel_logouts_total", Help: "Back-channel logout attempts by result: delivered, failed (retried later), abandoned (past the 24 h window).",
		}, []string{"result"}),
		LogoutsPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "esia_broker_backchannel_logouts_pending", Help: "Back-channel logouts queued and not yet delivered.",
		}),
	}
	m.all = []prometheus.Collector{m.Requests, m.Latency, m.Tokens, m.Logins, m.UpstreamRefusals, m.CertExpiry, m.CertIssued, m.CallbackErrors,
		m.UpstreamLatency, m.UpstreamResults, m.Links, m.Invites, m.RateLimited, m.Lockouts, m.Keys, m.Consents,
		m.Logouts, m.LogoutsPending, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo()}
	if db != nil {
		m.all = append(m.all, poolCollector{db})
	}
	reg.MustRegister(m.all...)
	return m
}

// ObserveUpstream is the esia client's Observe for connector id.
func (m *Metrics) ObserveUpstream(id string) func(call string, took time.Duration, err error) {
	return func(call string, took time.Duration, err error) {
		m.UpstreamLatency.WithLabelValues(id, call).Observe(took.Seconds())
		m.UpstreamResults.WithLabelValues(id, call, esia.Result(err), BoundedCode(esia.ErrorCode(err))).Inc()
	}
}

// buildInfo is esia_broker_build_info{version, revision, go_version} 1.
func buildInfo() prometheus.Collector {
	version, revision, goVersion := "unknown", "unknown", runtime.Version()
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				revision = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "esia_broker_build_info", Help: "The running build: version, VCS revision, Go version.",
		ConstLabels: prometheus.Labels{"version": version, "revision": revision, "go_version": goVersion}})
	g.Set(1)
	return g
}

// poolCollector exports the database pool's statistics.
type poolCollector struct{ db poolStats }

var (
	poolOpen     = prometheus.NewDesc("esia_broker_db_open_connections", "Open connections to the database (in use and idle).", nil, nil)
	poolInUse    = prometheus.NewDesc("esia_broker_db_in_use_connections", "Connections in use.", nil, nil)
	poolIdle     = prometheus.NewDesc("esia_broker_db_idle_connections", "Idle connections.", nil, nil)
	poolMax      = prometheus.NewDesc("esia_broker_db_max_open_connections", "The pool's limit (database.max_open_conns).", nil, nil)
	poolWaits    = prometheus.NewDesc("esia_broker_db_wait_count_total", "Times a request waited for a free connection.", nil, nil)
	poolWaitTime = prometheus.NewDesc("esia_broker_db_wait_duration_seconds_total", "Time spent waiting for a free connection.", nil, nil)
)

// Describe implements prometheus.Collector.
func (p poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolOpen, poolInUse, poolIdle, poolMax, poolWaits, poolWaitTime} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (p poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := p.db.Stats()
	ch <- prometheus.MustNewConstMetric(poolOpen, prometheus.GaugeValue, float64(s.OpenConnections))
	ch <- prometheus.MustNewConstMetric(poolInUse, prometheus.GaugeValue, float64(s.InUse))
	ch <- prometheus.MustNewConstMetric(poolIdle, prometheus.GaugeValue, float64(s.Idle))
	ch <- prometheus.MustNewConstMetric(poolMax, prometheus.GaugeValue, float64(s.MaxOpenConnections))
	ch <- prometheus.MustNewConstMetric(poolWaits, prometheus.CounterValue, float64(s.WaitCount))
	ch <- prometheus.MustNewConstMetric(poolWaitTime, prometheus.CounterValue, s.WaitDuration.Seconds())
}

// fqName reads a metric's name out of prometheus.Desc's String.
var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

// Handler serves the metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// StatusWriter remembers the status code a handler wrote.
type StatusWriter struct {
	http.ResponseWriter
	Code int
}

// WriteHeader records the first status code.
func (s *StatusWriter) WriteHeader(code int) {
	if s.Code == 0 {
		s.Code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

// Write records 200 when nothing was written before.
func (s *StatusWriter) Write(b []byte) (int, error) {
	if s.Code == 0 {
		s.Code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

// Unwrap gives the writer underneath (http.ResponseController).
func (s *StatusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// Instrument counts and times requests to one named route.
func (k *Kit) Instrument(route string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if p, ok := r.Context().Value(routeKey{}).(*string); ok {
			if t, err := mux.CurrentRoute(r).GetPathTemplate(); err == nil {
				*p = t
			}
		}
		sw := &StatusWriter{ResponseWriter: w}
		h(sw, r)
		if sw.Code == 0 {
			sw.Code = http.StatusOK
		}
		k.Metrics.Requests.WithLabelValues(route, strconv.Itoa(sw.Code)).Inc()
		k.Metrics.Latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

// Register adds c to the registry and to the names of Names.
func (m *Metrics) Register(c prometheus.Collector) {
	m.reg.MustRegister(c)
	m.all = append(m.all, c)
}

// Names lists the names of every metric family the broker exports (its own, the runtime's, the
// process's, the pool's): what dashboards and alert rules may name.
func (m *Metrics) Names() []string {
	ch := make(chan *prometheus.Desc)
	go func() {
		for _, c := range m.all {
			c.Describe(ch)
		}
		close(ch)
	}()
	var out []string
	for d := range ch {
		if n := fqName.FindStringSubmatch(d.String()); n != nil {
			out = append(out, n[1])
		}
	}
	return out
}
