package broker

import (
	"github.com/gorilla/mux"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	tokens   *prometheus.CounterVec
	logins   *prometheus.CounterVec
	// upstreamRefusals counts logins ESIA refused for the broker's own configuration.
	upstreamRefusals *prometheus.CounterVec
	certExpiry       *prometheus.GaugeVec
}

func newMetrics(reg *prometheus.Registry) *metrics {
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
			Name: "esia_broker_tokens_issued_total", Help: "Token responses issued, by grant type.",
		}, []string{"grant"}),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_logins_total", Help: "Upstream logins by connector and result.",
		}, []string{"connector", "result"}),
		upstreamRefusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "esia_broker_upstream_configuration_errors_total",
			Help: "Logins that ESIA refused because of the broker's configuration (key, certificate, мнемоника, scopes, redirect URI, clock), by ESIA code. Anything above zero needs the operator.",
		}, []string{"code"}),
		certExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "esia_broker_certificate_expiry_timestamp_seconds",
			Help: "When a certificate the broker depends on expires (Unix time): role client is the system's own certificate registered at ESIA, role esia each certificate ESIA signs tokens with.",
		}, []string{"connector", "role", "subject"}),
	}
	reg.MustRegister(m.requests, m.latency, m.tokens, m.logins, m.upstreamRefusals, m.certExpiry)
	return m
}

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
