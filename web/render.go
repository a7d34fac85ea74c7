package web

import (
	"errors"
	"net/http"

	"github.com/esia-broker/esia-broker/esia"
	"github.com/esia-broker/esia-broker/pages"
)

// Render writes page with d and status; a page that cannot be drawn is logged and answered 500.
func (k *Kit) Render(w http.ResponseWriter, r *http.Request, status int, p pages.Page) {
	if err := k.pages.Render(w, status, p); err != nil {
		k.Logger(r.Context()).Error("render page", "err", err)
		http.Error(w, pages.InternalPlain, http.StatusInternalServerError)
	}
}

// RenderError shows err on the error page: a *UserError as it says, anything else as a generic
// server error (logged, never shown).
func (k *Kit) RenderError(w http.ResponseWriter, r *http.Request, err error) {
	var ue *pages.UserError
	switch {
	case !errors.As(err, &ue) && IsUnavailable(err):
		k.Logger(r.Context()).Warn("dependency unavailable", "err", err)
		w.Header().Set("Retry-After", "30")
		ue = pages.Unavailable
	case ue == nil:
		k.Logger(r.Context()).Error("request failed", "err", err)
		ue = pages.Internal
	case ue.Operator != "":
		k.Metrics.UpstreamRefusals.WithLabelValues(ue.OperatorCode).Inc()
		k.Logger(r.Context()).Error("upstream refuses the broker's configuration", "upstream", ue.Upstream, "esia_code", ue.OperatorCode, "fix", ue.Operator, "err", ue.Err)
	case ue.Err != nil || ue.Upstream != "":
		// A failed login's line: the request id (from the logger), the upstream and ESIA's code,
		// the status and the error in English; never the person.
		k.Logger(r.Context()).Warn("request refused", "status", ue.Status, "upstream", ue.Upstream, "esia_code", esia.ErrorCode(ue.Err), "err", ue.Err)
	}
	status := ue.Status
	if status == 0 {
		status = http.StatusBadRequest
	}
	k.Render(w, r, status, &pages.Error{Frame: pages.Frame{Title: ue.Title}, Message: ue.Message, Retry: ue.Retry, RequestID: RequestID(r.Context()), Calm: ue.Calm, HelpURL: ue.HelpURL, HelpText: ue.HelpText})
}

// CSRFRefused answers a form without this browser's CSRF token with a page, and says so.
func (k *Kit) CSRFRefused(w http.ResponseWriter, r *http.Request) bool {
	if k.CheckCSRF(r) {
		return false
	}
	k.RenderError(w, r, pages.FormExpired)
	return true
}

// RenderBusy answers a request that found every password check slot taken: 503 with
// Retry-After, and a page that says to try again in a moment.
func (k *Kit) RenderBusy(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "5")
	k.RenderError(w, r, pages.Busy)
}
