package broker

import (
	"database/sql"
	"net/http"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/esia-broker/esia-broker/esia"
)

type metrics struct {
	reg *prometheus.Registry
	// all is every collector registered, for MetricNames.
	all      []prometheus.Collector
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	tokens   *prometheus.CounterVec
	logins   *prometheus.CounterVec
	// upstreamRefusals counts logins ESIA refused for the broker's own configuration.
	upstreamRefusals *prometheus.CounterVec
	certExpiry       *prometheus.GaugeVec
	certIssued       *prometheus.GaugeVec
	// callbackErrors counts ESIA error codes on the redirect back (through the browser).
	callbackErrors *prometheus.CounterVec
	// Calls to the upstreams (ESIA): latency, and how each ended.
	upstreamLatency *prometheus.HistogramVec
	upstreamResults *prometheus.CounterVec
	// The business: links made and ended, invite redemptions, rate limits and lock-outs,
	// activation keys, consent.
	links       *prometheus.CounterVec
	invites     *prometheus.CounterVec
	rateLimited *prometheus.CounterVec
	lockouts    *prometheus.CounterVec
	// logouts counts back-channel logout attempts; logoutsPending is the queue's length.
	logouts        *prometheus.CounterVec
	logoutsPending prometheus.Gauge
	keys           *prometheus.CounterVec
	consents       *prometheus.CounterVec
}

// poolStats is what the metrics read of the database pool.
type poolStats interface{ Stats() sql.DBStats }

// newMetrics registers the broker's metrics, the Go runtime's and the process's, the database
// pool's (db, when not nil) and the build's on reg. Every label takes values from a small fixed
// set: routes, connectors, results, ESIA codes of esia.Codes, registered clients; never a
// person, a student or a code.
func newMetrics(reg *prometheus.Registry, db poolStats) *metrics {
	m := &metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "esia_broker_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_tokens_issued_total", Help: "Token responses issued, by grant type and client.",
		}, []string{"grant", "client"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_logins_total", Help: "Logins by connector (esia, oidc, child) and result.",
		}, []string{"connector", "result"}),
		upstreamRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_upstream_configuration_errors_total",
			Help: "Logins that ESIA refused because of the broker's configuration (key, certificate, мнемоника, scopes, redirect URI, clock), by ESIA code. Anything above zero needs the operator.",
		}, []string{"code"}),
		certExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "esia_broker_certificate_expiry_timestamp_seconds",
			Help: "When a certificate the broker depends on expires (Unix time): role client is the system's own certificate registered at ESIA, role esia each certificate ESIA signs tokens with.",
		}, []string{"connector", "role", "subject"}),
		certIssued: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "esia_broker_certificate_not_before_timestamp_seconds",
			Help: "When a certificate the broker depends on became valid (Unix time): its age is time() minus this.",
		}, []string{"connector", "role", "subject"}),
		callbackErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_upstream_callback_errors_total",
			Help: "Errors the upstream put on the redirect back, by ESIA code (one of esia.Codes, other, or empty). They pass through the browser and can be forged: configuration faults are confirmed by a probe before esia_broker_upstream_configuration_errors_total counts them.",
		}, []string{"upstream", "code"}),
		upstreamLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "esia_broker_upstream_request_duration_seconds", Help: "Calls to the upstream (ESIA) by call: authorize (signing the redirect), token, person, contacts, kids, probe.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"upstream", "call"}),
		upstreamResults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_upstream_requests_total",
			Help: "Calls to the upstream by call and result (ok, timeout, connection, http_5xx, unavailable, bad_response, esia_error, other), and ESIA's error code for esia_error.",
		}, []string{"upstream", "call", "result", "code"}),
		links: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_links_total", Help: "Links between accounts and students made (added) and ended (revoked) by the broker's own flows, by method: snils, invite, diary.",
		}, []string{"method", "change"}),
		invites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_invite_redemptions_total", Help: "Invite code redemptions by result.",
		}, []string{"result"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_rate_limited_total", Help: "Requests refused by the per-address rate limits, by route.",
		}, []string{"route"}),
		lockouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_lockouts_total", Help: "Attempts refused because a login, an address or an account is locked out, by kind: child, invite, activation.",
		}, []string{"kind"}),
		keys: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_activation_keys_total", Help: "Activation keys of the mobile app: issued, used, refused.",
		}, []string{"result"}),
		consents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_consents_total", Help: "Consent pages: shown, given, refused.",
		}, []string{"result"}),
		logouts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_backchannel_logouts_total", Help: "Back-channel logout attempts by result: delivered, failed (retried later), abandoned (past the 24 h window).",
		}, []string{"result"}),
		logoutsPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "esia_broker_backchannel_logouts_pending", Help: "Back-channel logouts queued and not yet delivered.",
		}),
	}
	m.all = []prometheus.Collector{m.requests, m.latency, m.tokens, m.logins, m.upstreamRefusals, m.certExpiry, m.certIssued, m.callbackErrors,
		m.upstreamLatency, m.upstreamResults, m.links, m.invites, m.rateLimited, m.lockouts, m.keys, m.consents,
		m.logouts, m.logoutsPending, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), buildInfo()}
	if db != nil {
		m.all = append(m.all, poolCollector{db})
	}
	reg.MustRegister(m.all...)
	return m
}

// observeUpstream is the esia client's Observe for connector id.
func (m *metrics) observeUpstream(id string) func(call string, took time.Duration, err error) {
	return func(call string, took time.Duration, err error) {
		m.upstreamLatency.WithLabelValues(id, call).Observe(took.Seconds())
		m.upstreamResults.WithLabelValues(id, call, esia.Result(err), boundedCode(esia.ErrorCode(err))).Inc()
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

// MetricNames lists the names of every metric family the broker exports (its own, the
// runtime's, the process's, the pool's): what dashboards and alert rules may name.
func (b *Broker) MetricNames() []string {
	ch := make(chan *prometheus.Desc)
	go func() {
		for _, c := range b.metrics.all {
			c.Describe(ch)
		}
		close(ch)
	}()
	var out []string
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

// fqName reads a metric's name out of prometheus.Desc's String.
var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// instrument counts and times requests to one named route.
func (b *Broker) instrument(route string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		if p, ok := r.Context().Value(routeKey{}).(*string); ok {
			if t, err := mux.CurrentRoute(r).GetPathTemplate(); err == nil {
				*p = t
			}
		}
		sw := &statusWriter{ResponseWriter: w}
		h(sw, r)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		b.metrics.requests.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
		b.metrics.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}
