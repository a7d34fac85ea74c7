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

	"github.com/esia-broker/esia-broker/pages"
	"github.com/esia-broker/esia-broker/provider"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/web"
	"github.com/google/uuid"
	"github.com/ory/fosite"
)

// authorize is the authorization endpoint. A request without a (fresh enough) browser session
// is stored as a login request and the start page is shown.
func (f *Flow) authorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !provider.FormEncoded(r) {
		// A multipart body would be read by fosite after the checks below, past them.
		f.authorizeError(w, r, nil, fosite.ErrInvalidRequest.WithHint("A POST to the authorization endpoint must be application/x-www-form-urlencoded."))
		return
	}
	if err := r.ParseForm(); err != nil {
		f.authorizeError(w, r, nil, fosite.ErrInvalidRequest.WithHint("The request could not be read."))
		return
	}
	pushed := strings.HasPrefix(r.Form.Get("request_uri"), provider.PARURIPrefix)
	if r.Form.Get("request_uri") != "" && !pushed {
		f.authorizeError(w, r, nil, fosite.ErrRequestURINotSupported.WithHint("Only request_uri values from the pushed authorization request endpoint are accepted."))
		return
	}
	if _, ok := r.Form["request"]; ok {
		// Request objects are not supported (discovery says so): fosite would take an unsigned
		// one from a client with a JWKS and let it override what the client sent.
		f.authorizeError(w, r, nil, fosite.ErrRequestNotSupported.WithHint("Request objects are not supported; use a pushed authorization request."))
		return
	}
	req := r
	if pushed {
		// RFC 9126 §4: the pushed parameters are the request. Whatever else the browser brings
		// (a nonce, a state, another redirect_uri) is dropped, not merged: fosite gets a request
		// of its own that holds nothing else, query or body.
		req = r.Clone(ctx)
		req.Method, req.Body, req.ContentLength = http.MethodGet, http.NoBody, 0
		req.URL.RawQuery = url.Values{"client_id": r.Form["client_id"], "request_uri": r.Form["request_uri"]}.Encode()
		req.Header.Del("Content-Type")
		req.Form, req.PostForm, req.MultipartForm = nil, nil, nil
	}
	ar, err := f.provider.NewAuthorizeRequest(ctx, req)
	if err != nil {
		f.authorizeError(w, r, ar, err)
		return
	}
	if c, ok := storage.ClientOf(ar.GetClient()); ok && c.RequirePAR && !pushed {
		// The request's parameters came through the browser, where anyone on the way could
		// change them: this client registered that it pushes its requests (RFC 9126 §6).
		f.authorizeError(w, r, ar, fosite.ErrInvalidRequest.WithHint("This client must use pushed authorization requests (RFC 9126)."))
		return
	}
	if err := provider.CheckExactRedirect(ar); err != nil {
		f.authorizeError(w, r, nil, err)
		return
	}
	if err := provider.CheckPKCE(ar); err != nil {
		f.authorizeError(w, r, ar, err)
		return
	}
	for _, sc := range provider.MachineScopes {
		if ar.GetRequestedScopes().Has(sc) {
			f.authorizeError(w, r, ar, fosite.ErrInvalidScope.WithHintf("Scope %s is the diary API's: a client asks for it with client credentials, never through a person's login.", sc))
			return
		}
	}
	prompt := fosite.RemoveEmpty(strings.Split(ar.GetRequestForm().Get("prompt"), " "))
	bs, account, err := f.CurrentSession(ctx, r)
	if err != nil {
		f.RenderError(w, r, err)
		return
	}
	needLogin := bs == nil || slices.Contains(prompt, "login")
	if bs != nil {
		if maxAge, err := strconv.ParseInt(ar.GetRequestForm().Get("max_age"), 10, 64); err == nil && maxAge >= 0 &&
			bs.AuthTime.Add(time.Duration(maxAge)*time.Second).Before(time.Now()) {
			needLogin = true
		}
		if hint := ar.GetRequestForm().Get("id_token_hint"); hint != "" {
			if sub := f.hintSubject(ctx, hint); sub != "" && !f.subjects.Had(account, ar.GetClient().GetID(), ar.GetClient().GetRedirectURIs(), sub) {
				needLogin = true
			}
		}
	}
	if needLogin {
		if slices.Contains(prompt, "none") {
			f.authorizeError(w, r, ar, fosite.ErrLoginRequired.WithHint("The user is not logged in."))
			return
		}
		f.startLogin(w, r, ar)
		return
	}
	// A live session: the rest of the way (role, consent, picker) goes through a login request
	// bound to this browser and this session, as after a fresh login.
	lr := &storage.LoginRequest{ID: uuid.NewString(), AuthorizeQuery: provider.AuthorizeQuery(ar), BrowserHash: web.HashToken(f.BrowserID(w, r)),
		SessionHash: bs.IDHash, ExpiresAt: time.Now().Add(f.cfg.Session.LoginTimeout)}
	if err := f.store.CreateLoginRequest(ctx, lr); err != nil {
		f.RenderError(w, r, err)
		return
	}
	f.proceed(w, r, lr, bs, account, nil)
}

// resume continues an authorization request after the login, code entry, consent or picker it
// waited for.
func (f *Flow) resume(w http.ResponseWriter, r *http.Request) {
	lr, bs, account, ok := f.loginInProgress(w, r, r.URL.Query().Get("login"))
	if !ok {
		return
	}
	f.proceed(w, r, lr, bs, account, nil)
}

// loginInProgress loads a login request and checks that it belongs to this browser and its
// current session; on failure it has written the page.
func (f *Flow) loginInProgress(w http.ResponseWriter, r *http.Request, id string) (*storage.LoginRequest, *storage.BrowserSession, *storage.Account, bool) {
	ctx := r.Context()
	lr, err := f.store.LoginRequest(ctx, id)
	if err != nil {
		f.RenderError(w, r, pages.ExpiredLogin(err))
		return nil, nil, nil, false
	}
	bs, account, err := f.CurrentSession(ctx, r)
	if err != nil {
		f.RenderError(w, r, err)
		return nil, nil, nil, false
	}
	if bs == nil || !f.SameBrowser(r, lr.BrowserHash) || lr.SessionHash == "" || lr.SessionHash != bs.IDHash {
		f.RenderError(w, r, pages.OtherBrowser)
		return nil, nil, nil, false
	}
	return lr, bs, account, true
}

// loginState is what the login callback already read in its transaction, so that proceed need
// not read it again: the account's links and its consent for the client (nil: none).
type loginState struct {
	linked  []storage.LinkedStudent
	consent *storage.Consent
}

// stepKind is what a logged-in authorization request needs next.
type stepKind int

const (
	stepFinish    stepKind = iota // issue the code
	stepPageError                 // show err as a page
	stepAuthError                 // send err to the client (authorizeError)
	stepRole                      // nothing linked: role choice and invite code
	stepConsent                   // first-login consent
	stepPicker                    // the student picker
)

// step is nextStep's decision, with what it read to make it.
type step struct {
	kind   stepKind
	err    error
	ar     fosite.AuthorizeRequester
	client *storage.Client
	scopes fosite.Arguments
	linked []storage.LinkedStudent
}

// nextStep decides, without writing anything, what a logged-in authorization request still
// needs — role and invite code when nothing is linked, first-login consent, the student picker —
// or that the code can be issued. With prompt=none a needed step is an OAuth error. With pre
// (from the login callback) nothing is read again.
func (f *Flow) nextStep(ctx context.Context, lr *storage.LoginRequest, account *storage.Account, pre *loginState) step {
	if lr.AuthorizeQuery == "" {
		return step{kind: stepPageError, err: pages.ExpiredLogin(errors.New("login request without an authorization request"))}
	}
	if account.Status != "active" {
		return step{kind: stepPageError, err: pages.AccountDisabled}
	}
	ar, err := f.provider.ReplayAuthorize(ctx, lr.AuthorizeQuery)
	if err != nil {
		return step{kind: stepAuthError, err: err, ar: ar}
	}
	client, ok := storage.ClientOf(ar.GetClient())
	if !ok {
		return step{kind: stepPageError, err: errors.New("authorize: unexpected client type")}
	}
	st := step{ar: ar, client: client, scopes: ar.GetRequestedScopes()}
	prompt := fosite.RemoveEmpty(strings.Split(ar.GetRequestForm().Get("prompt"), " "))
	if pre != nil {
		st.linked = pre.linked
	} else if st.linked, err = f.store.LinkedStudents(ctx, account.ID); err != nil {
		st.kind, st.err = stepPageError, err
		return st
	}
	st.kind, st.err = decide(situation{
		child: account.Kind == "child", scopes: st.scopes, linked: len(st.linked), prompt: prompt,
		consented: lr.Consented, picked: lr.StudentID != "", alwaysPick: f.alwaysPick[client.ID],
		consentCurrent: func() (bool, error) {
			if pre != nil {
				return f.consentMatches(pre.consent, st.scopes, st.linked), nil
			}
			return f.consentCurrent(ctx, account.ID, client.ID, st.scopes, st.linked)
		},
	})
	return st
}

// situation is what decides the next step of a logged-in authorization request.
type situation struct {
	child  bool // a child's login-and-password sub-account
	scopes fosite.Arguments
	linked int // students linked to the account
	prompt []string
	// consented: consent was given in this login; picked: a student was picked in it.
	consented, picked bool
	alwaysPick        bool // the client asks for the picker at every login
	// consentCurrent tells whether a stored consent covers the request; asked only when needed.
	consentCurrent func() (bool, error)
}

// decide is the login's state machine after the upstream: role and invite code when the
// request wants students and none is linked, first-login consent, the student picker, or the
// code. With prompt=none a step that needs the person is the OAuth error instead. It reads
// nothing but s (consentCurrent is called only when consent matters).
func decide(s situation) (stepKind, error) {
	has := func(p string) bool { return slices.Contains(s.prompt, p) }
	none := has("none")
	if s.scopes.Has("students") && s.linked == 0 && !s.child {
		if none {
			return stepAuthError, fosite.ErrInteractionRequired.WithHint("No student is linked to the account yet.")
		}
		return stepRole, nil
	}
	// A child under 14 does not consent: the parent who made the sub-account did.
	if !s.consented && !s.child {
		current, err := s.consentCurrent()
		if err != nil {
			return stepPageError, err
		}
		// prompt=consent asks again, however current the consent (OpenID Connect Core §3.1.2.1).
		if !current || has("consent") {
			if none {
				return stepAuthError, fosite.ErrConsentRequired.WithHint("The user has not consented to this client yet.")
			}
			return stepConsent, nil
		}
	}
	if !s.picked && s.linked > 1 && s.scopes.Has("students") && (has("select_account") || s.alwaysPick) {
		if none {
			return stepAuthError, provider.ErrAccountSelectionRequired.WithHint("The user must pick a student.")
		}
		return stepPicker, nil
	}
	return stepFinish, nil
}

// proceed takes a logged-in authorization request to its next step and answers with it.
func (f *Flow) proceed(w http.ResponseWriter, r *http.Request, lr *storage.LoginRequest, bs *storage.BrowserSession, account *storage.Account, pre *loginState) {
	f.act(w, r, f.nextStep(r.Context(), lr, account, pre), lr, bs, account, pre != nil)
}

// act answers with a step. After the login callback (fromCallback) a step that needs a page
// redirects to the resume address, so that the page has an address of its own.
func (f *Flow) act(w http.ResponseWriter, r *http.Request, st step, lr *storage.LoginRequest, bs *storage.BrowserSession, account *storage.Account, fromCallback bool) {
	resumeURL := "/oauth2/authorize/resume?login=" + url.QueryEscape(lr.ID)
	switch st.kind {
	case stepPageError:
		f.RenderError(w, r, st.err)
	case stepAuthError:
		f.authorizeError(w, r, st.ar, st.err)
	case stepRole:
		http.Redirect(w, r, "/link/role?login="+url.QueryEscape(lr.ID), http.StatusFound)
	case stepConsent:
		if fromCallback {
			http.Redirect(w, r, resumeURL, http.StatusFound)
			return
		}
		f.renderConsent(w, r, lr, st.client, st.scopes, st.linked)
	case stepPicker:
		if fromCallback {
			http.Redirect(w, r, resumeURL, http.StatusFound)
			return
		}
		f.renderPicker(w, r, lr, st.linked)
	default:
		f.finishAuthorize(w, r, st.ar, bs, account, st.client, lr, st.linked)
	}
}

// finishAuthorize spends the login request and issues the code in one transaction: the code,
// PKCE and OpenID Connect rows are written together, or none is.
func (f *Flow) finishAuthorize(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, bs *storage.BrowserSession, account *storage.Account, client *storage.Client, lr *storage.LoginRequest, linked []storage.LinkedStudent) {
	ctx := r.Context()
	var resp fosite.AuthorizeResponder
	var authErr error
	err := f.store.InTx(ctx, func(ctx context.Context) error {
		var err error
		resp, authErr, err = f.provider.IssueCode(ctx, ar, bs, account, client, lr, linked)
		if err != nil {
			return err
		}
		return authErr
	})
	switch {
	case authErr != nil:
		f.authorizeError(w, r, ar, authErr)
		return
	case err != nil:
		f.RenderError(w, r, err)
		return
	}
	f.provider.WriteAuthorizeResponse(ctx, f.provider.AuthorizeWriter(w), ar, resp)
}

// authorizeError redirects the error to the client only when its redirect URI is verified;
// otherwise it shows a page, so that the broker never redirects to an unregistered address.
func (f *Flow) authorizeError(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, err error) {
	if web.IsUnavailable(err) {
		f.RenderError(w, r, err)
		return
	}
	rfc := fosite.ErrorToRFC6749Error(err)
	f.Logger(r.Context()).Info("authorization request refused", "error", rfc.ErrorField, "hint", rfc.HintField)
	if ar != nil && ar.IsRedirectURIValid() {
		f.provider.WriteAuthorizeError(r.Context(), f.provider.AuthorizeWriter(w), ar, err)
		return
	}
	aboutRedirect := rfc.ErrorField == fosite.ErrInvalidRequest.ErrorField && strings.Contains(strings.ToLower(rfc.HintField), "redirect")
	f.Render(w, r, http.StatusBadRequest, pages.AuthorizeRefusal(rfc.ErrorField, aboutRedirect, web.RequestID(r.Context())))
}

// CurrentSession returns the browser's live session and its account, or nils.
func (f *Flow) CurrentSession(ctx context.Context, r *http.Request) (*storage.BrowserSession, *storage.Account, error) {
	raw := f.SessionCookie(r)
	if raw == "" {
		return nil, nil, nil
	}
	bs, a, err := f.store.SessionWithAccount(ctx, web.HashToken(raw))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if a.Kind == "child" {
		// A sub-account whose right ended has no session any more.
		if err := f.provider.AccountMayUse(ctx, a); errors.Is(err, provider.ErrNoRight) {
			if err := f.store.RevokeTokensOf(ctx, a.ID); err != nil {
				return nil, nil, err
			}
			return nil, nil, nil
		} else if err != nil {
			return nil, nil, err
		}
	}
	return bs, a, nil
}

// hintSubject returns the sub of an ID token this broker signed, expired or not; "" when it did
// not sign it.
func (f *Flow) hintSubject(ctx context.Context, token string) string {
	c, err := f.provider.DecodeIDToken(ctx, token)
	if err != nil {
		return ""
	}
	sub, _ := c["sub"].(string)
	return sub
}

func (f *Flow) startLogin(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester) {
	ctx := r.Context()
	browser := f.BrowserID(w, r)
	// The whole request is kept, prompt included: fosite checks auth_time against the request
	// time for prompt=login, and select_account still asks for the picker.
	lr := &storage.LoginRequest{ID: uuid.NewString(), AuthorizeQuery: provider.AuthorizeQuery(ar), BrowserHash: web.HashToken(browser), ExpiresAt: time.Now().Add(f.cfg.Session.LoginTimeout)}
	// With idp naming a connector the browser goes straight to the upstream: the login request
	// and the upstream flow are written together and no start page is shown.
	if conn, ok := f.connectors[ar.GetRequestForm().Get("idp")]; ok {
		if to := f.upstreamLogoutFirst(w, r, conn, lr); to != "" {
			if err := f.store.CreateLoginRequest(ctx, lr); err != nil {
				f.RenderError(w, r, err)
				return
			}
			http.Redirect(w, r, to, http.StatusFound)
			return
		}
		target, uf, err := f.upstreamTrip(ctx, conn, lr)
		if err != nil {
			// Keep the login request so that «Повторить» can start the trip again.
			if serr := f.store.CreateLoginRequest(ctx, lr); serr != nil {
				err = serr
			}
			f.RenderError(w, r, err)
			return
		}
		if err := f.store.CreateLoginWithFlow(ctx, lr, uf); err != nil {
			f.RenderError(w, r, err)
			return
		}
		http.Redirect(w, r, target, http.StatusFound)
		return
	}
	if err := f.store.CreateLoginRequest(ctx, lr); err != nil {
		f.RenderError(w, r, err)
		return
	}
	links := make([]pages.Connector, 0, len(f.connOrder))
	for _, c := range f.connOrder {
		links = append(links, pages.Connector{ID: c.ID(), Name: c.DisplayName()})
	}
	f.Render(w, r, http.StatusOK, &pages.Start{LoginID: lr.ID, Connectors: links, ChildLogin: f.cfg.Children.PasswordAccounts})
}

// AccountOnly tells whether a login request came from the start page (no diary's authorization,
// no diary's link intent).
func AccountOnly(lr *storage.LoginRequest) bool {
	return lr.AuthorizeQuery == "" && lr.LinkIntent == ""
}
