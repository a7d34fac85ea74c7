package web

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"regexp"
	"runtime/debug"
	"time"

	"github.com/esia-broker/esia-broker/pages"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

type requestIDKey struct{}

// routeKey carries a *string that the matched route fills with its path template, so that the
// access log names the route ("/link/{intent}") and never a secret that sits in a path.
type routeKey struct{}

var requestIDPattern = regexp.MustCompile(`^[A-Za-z0-9._-]{8,64}$`)

func newRequestID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// RequestID is the request id the middleware gave the request ("" outside one).
func RequestID(ctx context.Context) string {
	id, _ := ctx.Value(requestIDKey{}).(string)
	return id
}

// Logger is the broker's logger with the request id of ctx.
func (k *Kit) Logger(ctx context.Context) *slog.Logger {
	if id := RequestID(ctx); id != "" {
		return k.log.With("request_id", id)
	}
	return k.log
}

// Middleware adds the request id, security headers, body limit, panic recovery and an access
// log line without personal data or secrets: the route's template, never the path or query
// (they carry link intents, codes and hints).
func (k *Kit) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !requestIDPattern.MatchString(id) {
			id = newRequestID()
		}
		// Every request, its database calls included, ends before the server's write timeout, so
		// an unreachable dependency gives a page instead of a hung connection.
		ctx, cancel := context.WithTimeout(r.Context(), k.requestTimeout())
		defer cancel()
		ctx = context.WithValue(ctx, requestIDKey{}, id)
		route := "other"
		ctx = context.WithValue(ctx, routeKey{}, &route)
		// One span per request (OpenTelemetry; a no-op unless telemetry.otlp_endpoint is set),
		// the ESIA calls and SQL statements under it. No URL: paths and queries carry codes,
		// link intents and hints; the route's template is set when known.
		method := spanMethod(r.Method)
		ctx, span := k.tracer.Start(ctx, "http "+method, trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("http.request.method", method), attribute.String("request.id", id)))
		r = r.WithContext(ctx)
		h := w.Header()
		h.Set("X-Request-Id", id)
		h.Set("Content-Security-Policy", ContentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		if k.cfg.SecureCookies() {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		r.Body = http.MaxBytesReader(w, r.Body, k.cfg.HTTP.MaxBodyBytes)
		sw := &StatusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				k.Logger(ctx).Error("panic", "panic", p, "stack", string(debug.Stack()))
				if sw.Code == 0 {
					k.RenderError(sw, r, pages.Internal)
				}
			}
			code := sw.Code
			if code == 0 {
				code = http.StatusOK
			}
			k.Logger(ctx).Info("request", "method", r.Method, "route", route, "status", code, "duration_ms", float64(time.Since(start).Microseconds())/1000)
			span.SetName("http " + method + " " + route)
			span.SetAttributes(attribute.String("http.route", route), attribute.Int("http.response.status_code", code))
			if code >= 500 {
				span.SetStatus(codes.Error, http.StatusText(code))
			}
			span.End()
		}()
		next.ServeHTTP(sw, r)
	})
}

func (k *Kit) requestTimeout() time.Duration {
	if t := k.cfg.HTTP.WriteTimeout - time.Second; t > time.Second {
		return t
	}
	return time.Second
}

// spanMethod is the HTTP method for a span's name: a standard one, or _OTHER (OpenTelemetry's
// convention), so that made-up methods do not make up span names.
func spanMethod(m string) string {
	switch m {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodHead, http.MethodOptions:
		return m
	}
	return "_OTHER"
}

// RequestIDProcessor is an OpenTelemetry span processor that puts the request id on every span
// started within a request (the ESIA calls and SQL statements too), so that a parent's «код
// обращения» finds the whole trace.
type RequestIDProcessor struct{}

// OnStart implements sdktrace.SpanProcessor.
func (RequestIDProcessor) OnStart(ctx context.Context, s sdktrace.ReadWriteSpan) {
	if id := RequestID(ctx); id != "" {
		s.SetAttributes(attribute.String("request.id", id))
	}
}

// OnEnd implements sdktrace.SpanProcessor.
func (RequestIDProcessor) OnEnd(sdktrace.ReadOnlySpan) {}

// Shutdown implements sdktrace.SpanProcessor.
func (RequestIDProcessor) Shutdown(context.Context) error { return nil }

// ForceFlush implements sdktrace.SpanProcessor.
func (RequestIDProcessor) ForceFlush(context.Context) error { return nil }

// ContentSecurityPolicy is every page's policy; the «Вы вышли» page of a front-channel logout
// adds the diaries' origins as frame-src.
const ContentSecurityPolicy = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
