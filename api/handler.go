// Package api is the diary API (/api/v1): rosters, link intents, invite codes, links and the
// event feed, for diaries that call it with a client-credentials token carrying the call's scope.
// Every call with a token is audited.
package api

import (
	"net/http"

	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/invites"
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
	Linker   *linking.Service
	Invites  *invites.Service
}

// Handler serves the diary API.
type Handler struct {
	*web.Kit
	cfg      *config.Config
	store    *storage.Store
	provider *provider.Provider
	linker   *linking.Service
	invites  *invites.Service
}

// New makes a Handler.
func New(o Options) *Handler {
	return &Handler{Kit: o.Kit, cfg: o.Config, store: o.Store, provider: o.Provider, linker: o.Linker, invites: o.Invites}
}

// Mount mounts the API's routes.
func (a *Handler) Mount(rt web.Router) {
	route := func(path, name string, h http.HandlerFunc, methods ...string) {
		rt.Handle(path, name, a.audited(name, h), methods...)
	}
	route("/api/v1/students/batch", "api_students_batch", a.apiPutStudents, http.MethodPost)
	route("/api/v1/students/{id}", "api_student_put", a.apiPutStudent, http.MethodPut)
	route("/api/v1/students/{id}", "api_student_delete", a.apiDeactivateStudent, http.MethodDelete)
	route("/api/v1/link-intents", "api_link_intents", a.apiCreateLinkIntent, http.MethodPost)
	route("/api/v1/invites", "api_invites_issue", a.apiIssueInvites, http.MethodPost)
	route("/api/v1/invites", "api_invites_list", a.apiListInvites, http.MethodGet)
	route("/api/v1/invites/sheet", "api_invites_sheet", a.apiInviteSheet, http.MethodPost)
	route("/api/v1/invites/{id}", "api_invite_revoke", a.apiRevokeInvite, http.MethodDelete)
	route("/api/v1/students/{id}/links", "api_student_links", a.apiStudentLinks, http.MethodGet)
	route("/api/v1/links/{id}", "api_link_end", a.apiEndLink, http.MethodDelete)
	route("/api/v1/events", "api_events", a.apiEvents, http.MethodGet)
	rt.Handle("/api/v1/openapi.json", "api_openapi", a.apiDocument, http.MethodGet, http.MethodHead)
}

// Unrouted answers an API address or method that no route serves, and audits the call when it
// carries a token.
func (a *Handler) Unrouted(w http.ResponseWriter, r *http.Request, status int) {
	a.auditUnrouted(r, status)
	if status == http.StatusMethodNotAllowed {
		apiError(w, status, "method_not_allowed", "This API address does not take "+r.Method+": see /api/v1/openapi.json.")
		return
	}
	apiError(w, status, "not_found", "No such API call: see /api/v1/openapi.json.")
}
