package flow

import (
	"net/http"
	"strings"
	"time"

	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/provider"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/upstream"
	"github.com/esia-broker/esia-broker/web"
)

// Options are what a Flow is built from.
type Options struct {
	Kit        *web.Kit
	Config     *config.Config
	Store      *storage.Store
	Provider   *provider.Provider
	Linker     *linking.Service
	Connectors []upstream.Connector
	// Calendar is the day ages are reckoned on.
	Calendar func() time.Time
}

// Flow serves the browser's way through a login.
type Flow struct {
	*web.Kit
	cfg        *config.Config
	store      *storage.Store
	provider   *provider.Provider
	subjects   *provider.Subjects
	linker     *linking.Service
	connectors map[string]upstream.Connector
	connOrder  []upstream.Connector
	calendar   func() time.Time
	// alwaysPick are the clients that ask for the student picker at every login.
	alwaysPick map[string]bool
}

// New makes a Flow; the connectors' ids must be unique (the broker checks).
func New(o Options) *Flow {
	f := &Flow{Kit: o.Kit, cfg: o.Config, store: o.Store, provider: o.Provider, subjects: o.Provider.Subjects(), linker: o.Linker,
		connectors: map[string]upstream.Connector{}, connOrder: o.Connectors, calendar: o.Calendar}
	for _, c := range o.Connectors {
		f.connectors[c.ID()] = c
	}
	f.alwaysPick = clientSet(o.Config.Linking.AlwaysPickStudent)
	if f.calendar == nil {
		f.calendar = time.Now
	}
	return f
}

// Connectors are the ways to log in, in the order the start page shows them.
func (f *Flow) Connectors() []upstream.Connector { return f.connOrder }

// Connector is the connector with id, if there is one.
func (f *Flow) Connector(id string) (upstream.Connector, bool) {
	c, ok := f.connectors[id]
	return c, ok
}

// Mount mounts the login's routes.
func (f *Flow) Mount(rt web.Router) {
	pages := func() int { return f.cfg.Limits.PagesPerIPPerMinute }
	rt.Limited("/oauth2/authorize", "authorize", pages, f.authorize, http.MethodGet, http.MethodPost)
	rt.Handle("/oauth2/authorize/resume", "authorize_resume", f.resume, http.MethodGet)
	rt.Handle("/oauth2/logout", "logout", f.logout, http.MethodGet, http.MethodPost)
	rt.Handle("/oauth2/logout/done", "logout_done", f.logoutDone, http.MethodGet)
	rt.Limited("/login/{connector}", "login", pages, f.loginStart, http.MethodGet)
	for _, c := range f.connOrder {
		id := c.ID()
		rt.Limited("/"+id+"/callback", "callback", pages, func(w http.ResponseWriter, r *http.Request) { f.callback(w, r, id) }, http.MethodGet)
	}
	rt.Handle("/link/role", "link_role", f.WithAccount(f.rolePage), http.MethodGet)
	rt.Handle("/link/code", "link_code", f.WithAccount(f.codePage), http.MethodGet)
	rt.Form("/link/code", "link_code_post", pages, f.WithAccount(f.redeemCode))
	rt.Handle("/link/{intent}", "link_intent", f.linkIntentPage, http.MethodGet)
	rt.Form("/link/{intent}", "link_intent_start", pages, f.linkIntentStart)
	rt.Form("/consent", "consent", nil, f.consent)
	rt.Form("/select", "select", nil, f.selectStudent)
}

// clientSet reads a comma-separated list of client ids (linking.always_pick_student).
func clientSet(list string) map[string]bool {
	set := map[string]bool{}
	for _, c := range strings.Split(list, ",") {
		if c = strings.TrimSpace(c); c != "" {
			set[c] = true
		}
	}
	return set
}
