package flow

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/esia-broker/esia-broker/esia"
	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/pages"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/upstream"
	"github.com/esia-broker/esia-broker/web"
	"github.com/google/uuid"
	"github.com/gorilla/mux"
	"github.com/ory/fosite"
)

// loginStart begins the trip to an upstream: a single-use flow bound to this browser.
func (f *Flow) loginStart(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	conn, ok := f.connectors[mux.Vars(r)["connector"]]
	if !ok {
		f.RenderError(w, r, pages.NoSuchConnector)
		return
	}
	lr, err := f.store.LoginRequest(ctx, r.URL.Query().Get("login"))
	if err != nil {
		f.RenderError(w, r, pages.ExpiredLogin(err))
		return
	}
	f.BrowserID(w, r)
	if !f.SameBrowser(r, lr.BrowserHash) {
		f.RenderError(w, r, pages.OtherBrowser)
		return
	}
	if r.URL.Query().Get("fresh") == "" {
		if to := f.upstreamLogoutFirst(w, r, conn, lr); to != "" {
			http.Redirect(w, r, to, http.StatusFound)
			return
		}
	}
	target, uf, err := f.upstreamTrip(ctx, conn, lr)
	if err != nil {
		f.RenderError(w, r, err)
		return
	}
	if err := f.store.CreateUpstreamFlow(ctx, uf); err != nil {
		f.RenderError(w, r, err)
		return
	}
	http.Redirect(w, r, target, http.StatusFound)
}

// upstreamLogoutFirst returns where to send the browser before a trip to conn for lr, or "".
// ESIA's own session outlives the broker's. Before a trip that must not reuse it — this
// browser's logout did not get through ESIA's logout, or the diary asks for a fresh login
// (prompt=login, max_age) — the browser goes through ESIA's logout first and comes back to
// /login/{conn} with fresh=1.
func (f *Flow) upstreamLogoutFirst(w http.ResponseWriter, r *http.Request, conn upstream.Connector, lr *storage.LoginRequest) string {
	lo, ok := conn.(upstream.Logout)
	if !ok || !f.mustEndUpstreamSession(r, lr) {
		return ""
	}
	to := lo.UpstreamLogoutURL(f.provider.Issuer() + "/oauth2/logout/done")
	if to != "" {
		f.SetCookie(w, logoutCookie, logoutReturn{Login: lr.ID, Connector: conn.ID(), At: time.Now()}.encode(), logoutPending)
	}
	return to
}

// upstreamTrip asks conn where to send the browser for login request lr, and returns the
// single-use flow to store before sending it there. A failure comes back as the page to show,
// its «Повторить» starting the trip again.
func (f *Flow) upstreamTrip(ctx context.Context, conn upstream.Connector, lr *storage.LoginRequest) (string, *storage.UpstreamFlow, error) {
	state := uuid.NewString()
	target, data, err := conn.LoginURL(ctx, state)
	if err != nil {
		f.Metrics.Logins.WithLabelValues(conn.ID(), "upstream_error").Inc()
		ue := *asUserError(err).(*pages.UserError)
		ue.Retry = "/login/" + url.PathEscape(conn.ID()) + "?login=" + url.QueryEscape(lr.ID)
		return "", nil, &ue
	}
	return target, &storage.UpstreamFlow{State: state, Connector: conn.ID(), LoginRequestID: lr.ID, BrowserHash: lr.BrowserHash,
		Data: data, ExpiresAt: time.Now().Add(f.cfg.Session.LoginTimeout)}, nil
}

func asUserError(err error) error {
	var ue *pages.UserError
	if errors.As(err, &ue) {
		return ue
	}
	return pages.Unreachable(err)
}

// callback completes the upstream login: the flow is consumed once, checked against this
// browser, the account is created or updated, and a new session id is issued.
func (f *Flow) callback(w http.ResponseWriter, r *http.Request, connID string) {
	ctx := r.Context()
	conn := f.connectors[connID]
	flow, err := f.store.ConsumeUpstreamFlow(ctx, r.URL.Query().Get("state"))
	if err != nil {
		f.Metrics.Logins.WithLabelValues(connID, "bad_state").Inc()
		ue := *asUserError(pages.ExpiredLogin(err)).(*pages.UserError)
		ue.Upstream = connID
		f.RenderError(w, r, &ue)
		return
	}
	if flow.Connector != connID || !f.SameBrowser(r, flow.BrowserHash) {
		f.Metrics.Logins.WithLabelValues(connID, "foreign_browser").Inc()
		f.RenderError(w, r, pages.ForeignCallback(connID))
		return
	}
	id, err := conn.HandleCallback(ctx, r, flow.Data)
	if err != nil {
		f.Metrics.Logins.WithLabelValues(connID, loginFailure(err)).Inc()
		if r.URL.Query().Get("error") != "" {
			f.Metrics.CallbackErrors.WithLabelValues(connID, web.BoundedCode(esia.ErrorCode(err))).Inc()
		}
		ue := asUserError(pages.Upstream(connID, err)).(*pages.UserError)
		retry := *ue
		retry.Retry = "/login/" + url.PathEscape(connID) + "?login=" + url.QueryEscape(flow.LoginRequestID)
		retry.Upstream = connID
		f.RenderError(w, r, &retry)
		return
	}
	// Only a keyed digest of the SNILS is kept; a SNILS that does not parse is dropped.
	snilsDigest := ""
	if id.SNILS != "" {
		if d, err := f.linker.Digester().SNILS(id.SNILS); err == nil {
			snilsDigest = d
		}
	}
	if id.Unconfirmed {
		if err := f.admitUnconfirmed(ctx, connID, id, snilsDigest); err != nil {
			f.Metrics.Logins.WithLabelValues(connID, "unconfirmed").Inc()
			retry := *asUserError(err).(*pages.UserError)
			retry.Retry = "/login/" + url.PathEscape(connID) + "?login=" + url.QueryEscape(flow.LoginRequestID)
			retry.Upstream = connID
			f.RenderError(w, r, &retry)
			return
		}
	}
	raw := web.RandomToken()
	amr := id.AMR
	if len(amr) == 0 {
		amr = []string{connID}
	}
	bs := &storage.BrowserSession{IDHash: web.HashToken(raw), AuthTime: time.Now().UTC(), ACR: id.ACR, ExpiresAt: time.Now().Add(f.cfg.Session.Lifespan)}
	// A new browser id at every login: one known or planted before it is worth nothing after.
	browser := f.NewBrowserValue()
	o, err := f.completeLogin(ctx, completion{r: r, connID: connID, flow: flow, id: id, snilsDigest: snilsDigest, session: bs, amr: amr,
		oldSession: f.SessionCookie(r), browser: browser})
	account, lr, intent, next, issued := o.account, o.lr, o.intent, o.next, o.issued
	if o.authErr != nil {
		f.authorizeError(w, r, next.ar, o.authErr)
		return
	}
	if err != nil {
		f.RenderError(w, r, err)
		return
	}
	f.Metrics.Logins.WithLabelValues(connID, "ok").Inc()
	f.Metrics.Links.WithLabelValues("snils", "added").Add(float64(o.snilsChanges.Added))
	f.Metrics.Links.WithLabelValues("snils", "revoked").Add(float64(o.snilsChanges.Revoked))
	f.Metrics.Links.WithLabelValues("diary", "added").Add(float64(o.diaryLinks))
	f.SetCookie(w, f.cfg.Session.CookieName, raw, f.cfg.Session.Lifespan)
	f.SetBrowser(w, r, browser)
	if AccountOnly(lr) {
		// A login from the start page: on to the account page.
		_, _ = f.store.ConsumeLoginRequest(ctx, lr.ID)
		http.Redirect(w, r, "/account", http.StatusSeeOther)
		return
	}
	if intent != nil {
		_, _ = f.store.ConsumeLoginRequest(ctx, lr.ID)
		linked, _ := f.store.LinkedStudents(ctx, account.ID)
		f.Render(w, r, http.StatusOK, &pages.CodeDone{Frame: pages.Frame{Title: pages.IntentDoneTitle},
			Message: pages.IntentDone, Linked: pages.Linked{Students: pages.Students(linked)}, ReturnURI: intent.ReturnURI})
		return
	}
	// The authorization goes on in this response: straight back to the client with the code
	// when nothing else was needed, or to the page of the step that is.
	if issued != nil {
		f.provider.WriteAuthorizeResponse(ctx, f.provider.AuthorizeWriter(w), next.ar, issued)
		return
	}
	f.act(w, r, next, lr, bs, account, true)
}

// completion is what completeLogin writes: who the upstream says logged in, through which flow,
// and the new session and browser id.
type completion struct {
	r           *http.Request
	connID      string
	flow        *storage.UpstreamFlow
	id          *upstream.Identity
	snilsDigest string
	session     *storage.BrowserSession
	amr         []string
	oldSession  string // the browser's session id before this login ("" when none)
	browser     string // the browser id given at this login
}

// outcome is where a completed login goes on: the account, its login request, a diary's link
// intent it took, and — for a diary's login — the next step, with the code when the step was
// to issue it (or the OAuth error that refused it).
type outcome struct {
	account *storage.Account
	lr      *storage.LoginRequest
	intent  *storage.LinkIntent
	next    step
	issued  fosite.AuthorizeResponder
	authErr error
	// What the login changed in the links, counted once it is committed.
	snilsChanges linking.Changes
	diaryLinks   int
}

// completeLogin does the work of the upstream's callback in one transaction — the account, the
// new session, the login request, the first-login settlement of imported links, the links by
// SNILS, a diary's link intent, the audit line, and (when nothing else is needed) the code: a
// failure leaves none of it. It writes no answer.
func (f *Flow) completeLogin(ctx context.Context, c completion) (outcome, error) {
	var o outcome
	var pre loginState
	sub := c.id.Subject
	err := f.store.InTx(ctx, func(ctx context.Context) error {
		var err error
		o.account, err = f.store.UpsertUpstreamAccount(ctx, &storage.Account{
			Kind: "esia", Upstream: c.connID, UpstreamSub: &sub, SNILSDigest: c.snilsDigest, Unconfirmed: c.id.Unconfirmed,
			FamilyName: c.id.FamilyName, GivenName: c.id.GivenName, MiddleName: c.id.MiddleName, Birthdate: c.id.Birthdate,
		})
		if err != nil {
			return err
		}
		if o.account.Status != "active" {
			f.Metrics.Logins.WithLabelValues(c.connID, "disabled").Inc()
			return pages.AccountDisabled
		}
		// A new session id at every login: whatever id the browser held before is dropped.
		if old := c.oldSession; old != "" {
			if err := f.store.DeleteBrowserSession(ctx, web.HashToken(old)); err != nil {
				return err
			}
		}
		c.session.AccountID = o.account.ID
		if err := f.store.CreateBrowserSession(ctx, c.session, c.amr); err != nil {
			return err
		}
		// The login request is marked as logged in by the new session, and read, at once.
		if o.lr, err = f.store.CompleteLoginRequest(ctx, c.flow.LoginRequestID, c.session.IDHash, web.HashToken(c.browser)); err != nil {
			return pages.ExpiredLogin(err)
		}
		// A login that had to be fresh: refused (all of it rolled back) when the upstream
		// answered from an older session of its own.
		if err := f.checkFresh(c.r, c.connID, o.lr, c.id); err != nil {
			return err
		}
		// The first login of an account a region's link import made: its imported links
		// become normal ones, each checked now that ESIA has said who logged in.
		if _, _, err := f.linker.SettleImported(ctx, o.account); err != nil {
			return err
		}
		// Links by SNILS are re-checked at every login.
		if o.snilsChanges, err = f.linker.ResolveAccount(ctx, o.account, c.id.SNILS); err != nil {
			return err
		}
		if o.lr.LinkIntent != "" {
			if o.intent, err = f.store.ConsumeLinkIntent(ctx, o.lr.LinkIntent); err != nil {
				return pages.IntentGone(err)
			}
			if o.diaryLinks, err = f.linker.ApplyIntent(ctx, o.account.ID, o.intent.ClientID, o.intent.Relation, o.intent.Students()); err != nil {
				return intentRefused(err)
			}
		}
		if err := f.store.Audit(ctx, "account:"+o.account.ID, "login", c.connID, map[string]any{"amr": c.amr}); err != nil {
			return err
		}
		if o.intent != nil || AccountOnly(o.lr) {
			return nil
		}
		// What the authorization needs next is read here, in the same transaction.
		if pre.linked, err = f.store.LinkedStudents(ctx, o.account.ID); err != nil {
			return err
		}
		q, _ := url.ParseQuery(o.lr.AuthorizeQuery)
		pre.consent, err = f.store.Consent(ctx, o.account.ID, q.Get("client_id"))
		if errors.Is(err, storage.ErrNotFound) {
			err = nil
		}
		if err != nil {
			return err
		}
		// When nothing else is needed the code is issued here too: one transaction for the
		// whole return from the upstream.
		o.next = f.nextStep(ctx, o.lr, o.account, &pre)
		if o.next.kind != stepFinish {
			return nil
		}
		o.issued, o.authErr, err = f.provider.IssueCode(ctx, o.next.ar, c.session, o.account, o.next.client, o.lr, o.next.linked)
		if err != nil {
			return err
		}
		return o.authErr
	})
	return o, err
}

// intentRefused explains why the account that logged in may not take the intent's links.
func intentRefused(err error) error {
	reason := ""
	switch {
	case errors.Is(err, linking.ErrNotThisStudent):
		reason = pages.LinkNotThisStudent
	case errors.Is(err, linking.ErrNotAdult):
		reason = pages.LinkNotAdult
	case errors.Is(err, linking.ErrNoBirthdate):
		reason = pages.LinkNoBirthdate
	case errors.Is(err, linking.ErrChildAccount), errors.Is(err, linking.ErrAccountOff):
		reason = pages.LinkNotThisAccount
	default:
		return err
	}
	return pages.LinkRefused(reason, err)
}

// linkIntentPage shows a diary's link intent: the students it links, before anyone goes to ESIA.
// Opening it binds nothing (a link-preview bot or a mail scanner opens links too); the person's
// «Войти через Госуслуги» (linkIntentStart) binds it to their browser.
func (f *Flow) linkIntentPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	browser := f.BrowserID(w, r)
	intent, ok := f.openIntent(w, r, browser)
	if !ok {
		return
	}
	var students []storage.LinkedStudent
	for _, id := range intent.Students() {
		st, err := f.store.Student(ctx, id)
		if err != nil || !st.Active {
			continue
		}
		students = append(students, storage.LinkedStudent{StudentID: st.ID, Class: st.Class, Family: st.FamilyName, Given: st.GivenName, Middle: st.MiddleName})
	}
	if len(students) == 0 {
		f.RenderError(w, r, pages.IntentGone(errors.New("no active student in the intent")))
		return
	}
	name := intent.ClientID
	if c, err := f.store.Client(ctx, intent.ClientID); err == nil && c.Name != "" {
		name = c.Name
	}
	conn := f.intentConnector()
	f.Render(w, r, http.StatusOK, &pages.Intent{ClientName: name, CSRF: f.CSRFToken(browser),
		Students: pages.Students(students), ForStudent: intent.Relation == "self", Connectors: []pages.Connector{{ID: conn.ID(), Name: conn.DisplayName()}}})
}

// linkIntentStart binds the intent to this browser (the first that asks keeps it) and starts
// the ESIA trip that completes it.
func (f *Flow) linkIntentStart(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	browser := f.Browser(r)
	raw := mux.Vars(r)["intent"]
	if _, err := f.store.BindLinkIntent(ctx, web.HashToken(raw), web.HashToken(browser)); err != nil {
		f.RenderError(w, r, intentError(err))
		return
	}
	conn := f.intentConnector()
	lr := &storage.LoginRequest{ID: uuid.NewString(), BrowserHash: web.HashToken(browser), LinkIntent: web.HashToken(raw), ExpiresAt: time.Now().Add(f.cfg.Session.LoginTimeout)}
	if err := f.store.CreateLoginRequest(ctx, lr); err != nil {
		f.RenderError(w, r, err)
		return
	}
	http.Redirect(w, r, "/login/"+url.PathEscape(conn.ID())+"?login="+url.QueryEscape(lr.ID), http.StatusSeeOther)
}

// openIntent reads the intent of the path; one bound to another browser, gone or expired is a
// page.
func (f *Flow) openIntent(w http.ResponseWriter, r *http.Request, browser string) (*storage.LinkIntent, bool) {
	if len(f.connOrder) == 0 {
		f.RenderError(w, r, pages.NoConnectors)
		return nil, false
	}
	intent, err := f.store.LinkIntent(r.Context(), web.HashToken(mux.Vars(r)["intent"]))
	if err == nil && intent.BrowserHash != "" && intent.BrowserHash != web.HashToken(browser) {
		err = storage.ErrIntentElsewhere
	}
	if err != nil {
		f.RenderError(w, r, intentError(err))
		return nil, false
	}
	return intent, true
}

func intentError(err error) error {
	if errors.Is(err, storage.ErrIntentElsewhere) {
		return pages.IntentElsewhere(err)
	}
	return pages.IntentGone(err)
}

// intentConnector is the upstream that completes a link intent: ESIA when configured.
func (f *Flow) intentConnector() upstream.Connector {
	if c, ok := f.connectors["esia"]; ok {
		return c
	}
	return f.connOrder[0]
}

// admitUnconfirmed decides on an account the upstream reports as not confirmed: it gets in
// only as a child's own account — under 14 by the birth date the upstream gave, with a SNILS
// and birth date that match an active student card — and only while
// children.unconfirmed_esia_children allows it. What the upstream sent for such an account
// (the field names, no values) is logged, so operators see the real shape.
func (f *Flow) admitUnconfirmed(ctx context.Context, connID string, id *upstream.Identity, snilsDigest string) error {
	reason, err := f.provider.UnconfirmedRefusal(ctx, id.Birthdate, snilsDigest)
	if err != nil {
		return err
	}
	f.Logger(ctx).Info("unconfirmed upstream account", "connector", connID, "admitted", reason == "", "reason", reason, "fields", id.Fields)
	if reason != "" {
		return pages.Unconfirmed(errors.New("the upstream account is not confirmed: " + reason))
	}
	return nil
}

// freshLeeway allows for the clocks of the broker and the upstream.
const freshLeeway = 30 * time.Second

// checkFresh refuses a login that had to be fresh but was answered from an older upstream
// session: ESIA's single sign-on answers without asking, and only the ID token's auth_time
// tells. A login must be fresh when the relying party asked (prompt=login: after the request
// began; max_age: within it) or a logout of this browser has not come back from ESIA yet (after
// the logout began). The fresh=1 of the continued login only skips the trip through ESIA's
// logout; this check does not depend on anything the browser says.
func (f *Flow) checkFresh(r *http.Request, connID string, lr *storage.LoginRequest, id *upstream.Identity) error {
	if _, ok := f.connectors[connID].(upstream.Logout); !ok {
		return nil // only ESIA keeps a session of its own that the broker ends and checks
	}
	var since time.Time
	later := func(t time.Time) {
		if t.After(since) {
			since = t
		}
	}
	q, _ := url.ParseQuery(lr.AuthorizeQuery)
	if slices.Contains(strings.Fields(q.Get("prompt")), "login") {
		later(lr.CreatedAt)
	}
	if n, err := strconv.ParseInt(q.Get("max_age"), 10, 64); err == nil && n >= 0 {
		later(time.Now().Add(-time.Duration(n) * time.Second))
	}
	if c, err := r.Cookie(f.CookieName(logoutCookie)); err == nil {
		if back, ok := decodeLogoutReturn(c.Value); ok {
			later(back.At)
		}
	}
	if since.IsZero() {
		return nil
	}
	if id.AuthTimeErr != nil {
		f.Logger(r.Context()).Warn("the upstream's ID token did not check out: its auth_time is unknown", "connector", connID, "err", id.AuthTimeErr)
	}
	if !id.AuthTime.IsZero() && !id.AuthTime.Before(since.Add(-freshLeeway)) {
		return nil
	}
	f.Metrics.Logins.WithLabelValues(connID, "not_fresh").Inc()
	return pages.NotFresh(connID, "/login/"+url.PathEscape(connID)+"?login="+url.QueryEscape(lr.ID))
}

// loginFailure names why an upstream login failed, for the metric: cancelled (the person
// refused at ESIA), unconfirmed, expired, upstream_refused (the broker's configuration),
// upstream_unavailable, or upstream_error. Only the last three are the service's failures.
func loginFailure(err error) string {
	var ue *upstream.Error
	if errors.As(err, &ue) {
		switch ue.Kind {
		case upstream.Cancelled:
			return "cancelled"
		case upstream.Unconfirmed:
			return "unconfirmed"
		case upstream.Expired:
			return "expired"
		case upstream.Misconfigured:
			return "upstream_refused"
		case upstream.Unavailable:
			return "upstream_unavailable"
		}
	}
	// A refusal not confirmed by a probe, or an answer that did not check out: ESIA's own code
	// still tells what it was.
	switch esia.Classify(err) {
	case esia.ClassCancelled:
		return "cancelled"
	case esia.ClassUnconfirmed:
		return "unconfirmed"
	case esia.ClassExpired:
		return "expired"
	case esia.ClassConfiguration:
		return "upstream_refused"
	case esia.ClassUnavailable:
		return "upstream_unavailable"
	}
	return "upstream_error"
}
