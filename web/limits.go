package web

import (
	"context"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/esia-broker/esia-broker/clientip"
	"github.com/esia-broker/esia-broker/esia"
	"github.com/esia-broker/esia-broker/pages"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/ory/fosite"
)

// IsUnavailable tells whether err means the database (or another dependency) cannot be reached
// right now — as opposed to a bad request or a bug. fosite wraps storage errors (a client lookup
// that fails becomes invalid_client), so the whole chain is searched.
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	var oe *net.OpError
	switch {
	case errors.As(err, &oe), errors.As(err, &ne),
		errors.Is(err, driver.ErrBadConn), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, io.EOF): // lib/pq reports a connection the server closed as a bare EOF
		return true
	}
	if storage.IsUnavailable(err) {
		return true
	}
	// fosite keeps some storage errors only as text (in its debug field): these are the
	// connection failures' texts, for them.
	msg := err.Error()
	for _, s := range []string{"connection refused", "bad connection", "broken pipe", "connection reset", "unexpected EOF", "driver: bad connection", "the database system is shutting down", "the database system is starting up", "database is locked"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	var rfc *fosite.RFC6749Error
	if errors.As(err, &rfc) && rfc.Unwrap() != nil && rfc.Unwrap() != err {
		return IsUnavailable(rfc.Unwrap())
	}
	return false
}

// WriteUnavailableJSON answers an API or token request during an outage.
func WriteUnavailableJSON(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "30")
	WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable", "error_description": "The service is temporarily unavailable; retry later."})
}

// Limited counts requests per route and IP in one-minute windows stored in the database, so the
// limit holds across replicas; past max the answer is 429 with Retry-After. A database that
// cannot count does not block the request: the handler then meets the outage itself.
func (k *Kit) Limited(route string, max func() int, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m := max()
		if m <= 0 {
			h(w, r)
			return
		}
		n, reset, err := k.hits.Hit(r.Context(), "rl:"+route+":"+clientip.Key(k.ClientIP(r)), time.Minute)
		if err != nil || n <= m {
			h(w, r)
			return
		}
		secs := int(time.Until(reset).Seconds()) + 1
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		k.Metrics.RateLimited.WithLabelValues(route).Inc()
		if route == "token" {
			WriteJSON(w, http.StatusTooManyRequests, map[string]string{"error": "temporarily_unavailable", "error_description": "Too many requests from this address; retry after " + strconv.Itoa(secs) + " s."})
			return
		}
		k.RenderError(w, r, pages.TooManyRequests(secs))
	}
}

// WriteJSON answers v as JSON with status, never cached.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// ClientIP is the address the request came from (the limits count per IP): the peer, or —
// when the peer is a trusted load balancer — the last address in X-Forwarded-For that is not
// itself a trusted proxy.
func (k *Kit) ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	trusted := func(s string) bool {
		ip := net.ParseIP(strings.TrimSpace(s))
		if ip == nil {
			return false
		}
		for _, n := range k.proxies {
			if n.Contains(ip) {
				return true
			}
		}
		return false
	}
	if !trusted(host) {
		return host
	}
	parts := strings.Split(r.Header.Get("X-Forwarded-For"), ",")
	for i := len(parts) - 1; i >= 0; i-- {
		p := strings.TrimSpace(parts[i])
		if net.ParseIP(p) == nil {
			break
		}
		if !trusted(p) {
			return p
		}
	}
	return host
}

// BoundedCode is an ESIA code for a metric label: one of esia.Codes, "other", or "".
func BoundedCode(code string) string {
	if code == "" {
		return ""
	}
	if _, ok := esia.LookupCode(code); ok {
		return code
	}
	return "other"
}
