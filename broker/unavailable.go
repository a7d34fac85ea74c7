package broker

import (
	"context"
	"database/sql/driver"
	"errors"
	"github.com/esia-broker/esia-broker/clientip"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ory/fosite"

	"github.com/esia-broker/esia-broker/storage"
)

// isUnavailable tells whether err means the database (or another dependency) cannot be reached
// right now — as opposed to a bad request or a bug. fosite wraps storage errors (a client lookup
// that fails becomes invalid_client), so the whole chain is searched.
func isUnavailable(err error) bool {
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
		return isUnavailable(rfc.Unwrap())
	}
	return false
}

var errUnavailablePage = &UserError{Status: http.StatusServiceUnavailable, Title: "Сервис временно недоступен",
	Message: "Вход сейчас недоступен из-за технических работ или сбоя. Подождите минуту и обновите страницу — всё, что вы уже сделали, сохранено или будет начато заново безопасно."}

// writeUnavailableJSON answers an API or token request during an outage.
func writeUnavailableJSON(w http.ResponseWriter) {
	w.Header().Set("Retry-After", "30")
	writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "temporarily_unavailable", "error_description": "The service is temporarily unavailable; retry later."})
}

// limited counts requests per route and IP in one-minute windows stored in the database, so the
// limit holds across replicas; past max the answer is 429 with Retry-After. A database that
// cannot count does not block the request: the handler then meets the outage itself.
func (b *Broker) limited(route string, max func() int, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		m := max()
		if m <= 0 {
			h(w, r)
			return
		}
		n, reset, err := b.store.Hit(r.Context(), "rl:"+route+":"+clientip.Key(b.clientIP(r)), time.Minute)
		if err != nil || n <= m {
			h(w, r)
			return
		}
		secs := int(time.Until(reset).Seconds()) + 1
		w.Header().Set("Retry-After", strconv.Itoa(secs))
		b.metrics.rateLimited.WithLabelValues(route).Inc()
		if route == "token" {
			writeJSON(w, http.StatusTooManyRequests, map[string]string{"error": "temporarily_unavailable", "error_description": "Too many requests from this address; retry after " + strconv.Itoa(secs) + " s."})
			return
		}
		b.renderError(w, r, &UserError{Status: http.StatusTooManyRequests, Title: "Слишком много запросов",
			Message: "С вашего адреса пришло слишком много запросов. Подождите " + strconv.Itoa(secs) + " с и попробуйте снова."})
	}
}
