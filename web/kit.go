// Package web is the HTTP plumbing every handler of the broker shares: the middleware stack
// (request id, security headers, body limit, timeout, tracing, access log), metrics, the
// per-address rate limit, the client's address behind trusted proxies, the browser cookies
// with their CSRF tokens, and pages and errors rendered once.
package web

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/gorilla/mux"
	"go.opentelemetry.io/otel/trace"

	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/pages"
)

// hitCounter counts requests in fixed windows, across replicas (the store).
type hitCounter interface {
	Hit(ctx context.Context, key string, window time.Duration) (int, time.Time, error)
}

// Options are what a Kit is built from.
type Options struct {
	Config  *config.Config
	Hits    hitCounter
	Logger  *slog.Logger
	Metrics *Metrics
	Pages   *pages.Set
	// CookieKey keys the MACs of the browser id, the CSRF tokens and the known-device cookie.
	CookieKey []byte
	Proxies   []*net.IPNet
	Tracer    trace.Tracer
}

// Kit is the plumbing the handlers share; each area's handler embeds it.
type Kit struct {
	cfg       *config.Config
	hits      hitCounter
	log       *slog.Logger
	Metrics   *Metrics
	pages     *pages.Set
	cookieKey []byte
	proxies   []*net.IPNet
	tracer    trace.Tracer
}

// New makes a Kit.
func New(o Options) *Kit {
	return &Kit{cfg: o.Config, hits: o.Hits, log: o.Logger, Metrics: o.Metrics, pages: o.Pages, cookieKey: o.CookieKey, proxies: o.Proxies, tracer: o.Tracer}
}

// Brand is the region's presentation the pages carry.
func (k *Kit) Brand() pages.Brand { return k.pages.Brand() }

// Router mounts an area's routes, each counted and timed under its name.
type Router struct {
	r *mux.Router
	k *Kit
}

// NewRouter wraps r.
func (k *Kit) NewRouter(r *mux.Router) Router { return Router{r: r, k: k} }

// Handle mounts h on path for methods, instrumented as name.
func (rt Router) Handle(path, name string, h http.HandlerFunc, methods ...string) {
	rt.r.Handle(path, rt.k.Instrument(name, h)).Methods(methods...)
}

// Limited mounts h as Handle does, behind the per-address rate limit max (per minute).
func (rt Router) Limited(path, name string, max func() int, h http.HandlerFunc, methods ...string) {
	rt.Handle(path, name, rt.k.Limited(name, max, h), methods...)
}

// Form mounts the POST handler of a browser form, behind the per-address rate limit max (nil:
// none). The form's CSRF token is checked before h runs, so no form can forget it.
func (rt Router) Form(path, name string, max func() int, h http.HandlerFunc) {
	checked := func(w http.ResponseWriter, r *http.Request) {
		if rt.k.CSRFRefused(w, r) {
			return
		}
		h(w, r)
	}
	if max == nil {
		rt.Handle(path, name, checked, http.MethodPost)
		return
	}
	rt.Limited(path, name, max, checked, http.MethodPost)
}
