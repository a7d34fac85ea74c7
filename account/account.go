// Package account serves a person's own pages: the start page, the account page with the
// children's logins and the mobile app's keys, and the login of a child's sub-account.
package account

import (
	"net/http"
	"time"

	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/flow"
	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/provider"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/web"
)

// Options are what a Handler is built from.
type Options struct {
	Kit      *web.Kit
	Config   *config.Config
	Store    *storage.Store
	Provider *provider.Provider
	Flow     *flow.Flow
	Linker   *linking.Service
	// KeyDigestKey keys the digests of activation keys.
	KeyDigestKey []byte
	// Calendar is the day ages are reckoned on.
	Calendar func() time.Time
}

// Handler serves the account pages.
type Handler struct {
	*web.Kit
	cfg          *config.Config
	store        *storage.Store
	provider     *provider.Provider
	flow         *flow.Flow
	linker       *linking.Service
	keyDigestKey []byte
	calendar     func() time.Time
}

// New makes a Handler.
func New(o Options) *Handler {
	h := &Handler{Kit: o.Kit, cfg: o.Config, store: o.Store, provider: o.Provider, flow: o.Flow, linker: o.Linker, keyDigestKey: o.KeyDigestKey, calendar: o.Calendar}
	if h.calendar == nil {
		h.calendar = time.Now
	}
	return h
}

// Mount mounts the account pages.
func (h *Handler) Mount(rt web.Router) {
	pages := func() int { return h.cfg.Limits.PagesPerIPPerMinute }
	rt.Handle("/", "home", h.home, http.MethodGet, http.MethodHead)
	rt.Form("/account/login", "account_login", pages, h.accountLogin)
	rt.Handle("/account", "account", h.flow.WithAccount(h.accountPage), http.MethodGet)
	rt.Form("/account/child", "account_child", nil, h.flow.WithAccount(h.accountChild))
	rt.Form("/account/key", "account_key", nil, h.flow.WithAccount(h.generateKey))
	rt.Form("/account/devices/revoke", "account_device_revoke", nil, h.flow.WithAccount(h.revokeDevice))
	rt.Handle("/child/login", "child_login", h.childLoginPage, http.MethodGet)
	rt.Form("/child/login", "child_login_post", pages, h.childLogin)
}
