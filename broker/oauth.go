package broker

import (
	"context"
	"encoding/json"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/ory/fosite"

	"github.com/esia-broker/esia-broker/storage"
)

// SupportedScopes are the scopes the broker knows; a client may request those it is registered
// for.
var SupportedScopes = []string{"openid", "profile", "offline_access", "students", "esia", "roster:write", "links:write",
	"links:read", "invites:write", "events:read"}

func (b *Broker) issuer() string { return strings.TrimSuffix(b.cfg.Issuer, "/") }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (b *Broker) discovery(w http.ResponseWriter, _ *http.Request) {
	iss := b.issuer()
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeJSON(w, http.StatusOK, map[string]any{
		"issuer":                 iss,
		"authorization_endpoint": iss + "/oauth2/authorize",
		"token_endpoint":         iss + "/oauth2/token",
		"userinfo_endpoint":      iss + "/oauth2/userinfo",
		"jwks_uri":               iss + "/oauth2/jwks",
		"revocation_endpoint":    iss + "/oauth2/revoke",
		"introspection_endpoint": iss + "/oauth2/introspect",
		"end_session_endpoint":   iss + "/oauth2/logout",
		"authorization_response_iss_parameter_supported":           true,
		"backchannel_logout_supported":                             true,
		"backchannel_logout_session_supported":                     true,
		"frontchannel_logout_supported":                            true,
		"frontchannel_logout_session_supported":                    true,
		"scopes_supported":                                         SupportedScopes,
		"response_types_supported":                                 []string{"code"},
		"response_modes_supported":                                 []string{"query"},
		"grant_types_supported":                                    []string{"authorization_code", "refresh_token", "client_credentials", GrantTypeActivationKey},
		"subject_types_supported":                                  []string{subjectType(b.cfg.Tokens.Subject)},
		"id_token_signing_alg_values_supported":                    []string{"RS256", "ES256"},
		"code_challenge_methods_supported":                         []string{"S256"},
		"token_endpoint_auth_methods_supported":                    []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "none"},
		"introspection_endpoint_auth_methods_supported":            []string{"client_secret_basic", "client_secret_post", "private_key_jwt"},
		"revocation_endpoint_auth_methods_supported":               []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "none"},
		"token_endpoint_auth_signing_alg_values_supported":         assertionAlgs,
		"introspection_endpoint_auth_signing_alg_values_supported": assertionAlgs,
		"revocation_endpoint_auth_signing_alg_values_supported":    assertionAlgs,
		"pushed_authorization_request_endpoint":                    iss + "/oauth2/par",
		"require_pushed_authorization_requests":                    false,
		"claims_supported":                                         []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "amr", "acr", "name", "family_name", "given_name", "middle_name", "birthdate", "roles", "students", "student_id", "esia_oid"},
		"prompt_values_supported":                                  []string{"none", "login", "consent", "select_account"},
		"claims_parameter_supported":                               false,
		"request_parameter_supported":                              false,
		"request_uri_parameter_supported":                          false,
	})
}

// assertionAlgs are the algorithms of private_key_jwt client assertions (the client's JWKS
// holds RS256 or P-256 keys).
var assertionAlgs = []string{"RS256", "ES256"}

func (b *Broker) jwks(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=60")
	writeJSON(w, http.StatusOK, b.keys.JWKS(r.Context()))
}

// authorize is the authorization endpoint. A request without a (fresh enough) browser session
// is stored as a login request and the start page is shown.
func (b *Broker) authorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !formEncoded(r) {
		// A multipart body would be read by fosite after the checks below, past them.
		b.authorizeError(w, r, nil, fosite.ErrInvalidRequest.WithHint("A POST to the authorization endpoint must be application/x-www-form-urlencoded."))
		return
	}
	if err := r.ParseForm(); err != nil {
		b.authorizeError(w, r, nil, fosite.ErrInvalidRequest.WithHint("The request could not be read."))
		return
	}
	pushed := strings.HasPrefix(r.Form.Get("request_uri"), parURIPrefix)
	if r.Form.Get("request_uri") != "" && !pushed {
		b.authorizeError(w, r, nil, fosite.ErrRequestURINotSupported.WithHint("Only request_uri values from the pushed authorization request endpoint are accepted."))
		return
	}
	if _, ok := r.Form["request"]; ok {
		// Request objects are not supported (discovery says so): fosite would take an unsigned
		// one from a client with a JWKS and let it override what the client sent.
		b.authorizeError(w, r, nil, fosite.ErrRequestNotSupported.WithHint("Request objects are not supported; use a pushed authorization request."))
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
	ar, err := b.provider.NewAuthorizeRequest(ctx, req)
	if err != nil {
		b.authorizeError(w, r, ar, err)
		return
	}
	if c, ok := storage.ClientOf(ar.GetClient()); ok && c.RequirePAR && !pushed {
		// The request's parameters came through the browser, where anyone on the way could
		// change them: this client registered that it pushes its requests (RFC 9126 §6).
		b.authorizeError(w, r, ar, fosite.ErrInvalidRequest.WithHint("This client must use pushed authorization requests (RFC 9126)."))
		return
	}
	if err := checkExactRedirect(ar); err != nil {
		b.authorizeError(w, r, nil, err)
		return
	}
	if err := checkPKCE(ar); err != nil {
		b.authorizeError(w, r, ar, err)
		return
	}
	for _, sc := range MachineScopes {
		if ar.GetRequestedScopes().Has(sc) {
			b.authorizeError(w, r, ar, fosite.ErrInvalidScope.WithHintf("Scope %s is the diary API's: a client asks for it with client credentials, never through a person's login.", sc))
			return
		}
	}
	prompt := fosite.RemoveEmpty(strings.Split(ar.GetRequestForm().Get("prompt"), " "))
	bs, account, err := b.currentSession(ctx, r)
	if err != nil {
		b.renderError(w, r, err)
		return
	}
	needLogin := bs == nil || slices.Contains(prompt, "login")
	if bs != nil {
		if maxAge, err := strconv.ParseInt(ar.GetRequestForm().Get("max_age"), 10, 64); err == nil && maxAge >= 0 &&
			bs.AuthTime.Add(time.Duration(maxAge)*time.Second).Before(time.Now()) {
			needLogin = true
		}
		if hint := ar.GetRequestForm().Get("id_token_hint"); hint != "" {
			if sub := b.hintSubject(ctx, hint); sub != "" && !b.subjects.Had(account, ar.GetClient().GetID(), ar.GetClient().GetRedirectURIs(), sub) {
				needLogin = true
			}
		}
	}
	if needLogin {
		if slices.Contains(prompt, "none") {
			b.authorizeError(w, r, ar, fosite.ErrLoginRequired.WithHint("The user is not logged in."))
			return
		}
		b.startLogin(w, r, ar)
		return
	}
	// A live session: the rest of the way (role, consent, picker) goes through a login request
	// bound to this browser and this session, as after a fresh login.
	lr := &storage.LoginRequest{ID: uuid.NewString(), AuthorizeQuery: authorizeQuery(ar), BrowserHash: hashToken(b.browserID(w, r)),
		SessionHash: bs.IDHash, ExpiresAt: time.Now().Add(b.cfg.Session.LoginTimeout)}
	if err := b.store.CreateLoginRequest(ctx, lr); err != nil {
		b.renderError(w, r, err)
		return
	}
	b.proceed(w, r, lr, bs, account, nil)
}

// resume continues an authorization request after the login, code entry, consent or picker it
// waited for.
func (b *Broker) resume(w http.ResponseWriter, r *http.Request) {
	lr, bs, account, ok := b.loginInProgress(w, r, r.URL.Query().Get("login"))
	if !ok {
		return
	}
	b.proceed(w, r, lr, bs, account, nil)
}

// loginInProgress loads a login request and checks that it belongs to this browser and its
// current session; on failure it has written the page.
func (b *Broker) loginInProgress(w http.ResponseWriter, r *http.Request, id string) (*storage.LoginRequest, *storage.BrowserSession, *storage.Account, bool) {
	ctx := r.Context()
	lr, err := b.store.LoginRequest(ctx, id)
	if err != nil {
		b.renderError(w, r, expiredLogin(err))
		return nil, nil, nil, false
	}
	bs, account, err := b.currentSession(ctx, r)
	if err != nil {
		b.renderError(w, r, err)
		return nil, nil, nil, false
	}
	if bs == nil || !b.sameBrowser(r, lr.BrowserHash) || lr.SessionHash == "" || lr.SessionHash != bs.IDHash {
		b.renderError(w, r, &UserError{Status: http.StatusForbidden, Title: "Вход не завершён", Message: "Вход был начат в другом окне или браузере. Вернитесь в электронный дневник и войдите снова."})
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
func (b *Broker) nextStep(ctx context.Context, lr *storage.LoginRequest, account *storage.Account, pre *loginState) step {
	if lr.AuthorizeQuery == "" {
		return step{kind: stepPageError, err: expiredLogin(errors.New("login request without an authorization request"))}
	}
	if account.Status != "active" {
		return step{kind: stepPageError, err: &UserError{Status: http.StatusForbidden, Title: "Учётная запись отключена", Message: "Вход с этой учётной записью отключён администратором. Обратитесь в школу или в службу поддержки."}}
	}
	ar, err := b.replayAuthorize(ctx, lr.AuthorizeQuery)
	if err != nil {
		return step{kind: stepAuthError, err: err, ar: ar}
	}
	client, ok := storage.ClientOf(ar.GetClient())
	if !ok {
		return step{kind: stepPageError, err: errors.New("authorize: unexpected client type")}
	}
	st := step{ar: ar, client: client, scopes: ar.GetRequestedScopes()}
	prompt := fosite.RemoveEmpty(strings.Split(ar.GetRequestForm().Get("prompt"), " "))
	none := slices.Contains(prompt, "none")
	if pre != nil {
		st.linked = pre.linked
	} else if st.linked, err = b.store.LinkedStudents(ctx, account.ID); err != nil {
		st.kind, st.err = stepPageError, err
		return st
	}
	child := account.Kind == "child"
	if st.scopes.Has("students") && len(st.linked) == 0 && !child {
		if none {
			st.kind, st.err = stepAuthError, fosite.ErrInteractionRequired.WithHint("No student is linked to the account yet.")
		} else {
			st.kind = stepRole
		}
		return st
	}
	// A child under 14 does not consent: the parent who made the sub-account did.
	if !lr.Consented && !child {
		var current bool
		if pre != nil {
			current = b.consentMatches(pre.consent, st.scopes, st.linked)
		} else if current, err = b.consentCurrent(ctx, account.ID, client.ID, st.scopes, st.linked); err != nil {
			st.kind, st.err = stepPageError, err
			return st
		}
		// prompt=consent asks again, however current the consent (OpenID Connect Core §3.1.2.1).
		if !current || slices.Contains(prompt, "consent") {
			if none {
				st.kind, st.err = stepAuthError, fosite.ErrConsentRequired.WithHint("The user has not consented to this client yet.")
			} else {
				st.kind = stepConsent
			}
			return st
		}
	}
	if lr.StudentID == "" && len(st.linked) > 1 && st.scopes.Has("students") && (slices.Contains(prompt, "select_account") || b.alwaysPick(client.ID)) {
		if none {
			st.kind, st.err = stepAuthError, errAccountSelectionRequired.WithHint("The user must pick a student.")
		} else {
			st.kind = stepPicker
		}
		return st
	}
	st.kind = stepFinish
	return st
}

// proceed takes a logged-in authorization request to its next step and answers with it.
func (b *Broker) proceed(w http.ResponseWriter, r *http.Request, lr *storage.LoginRequest, bs *storage.BrowserSession, account *storage.Account, pre *loginState) {
	b.act(w, r, b.nextStep(r.Context(), lr, account, pre), lr, bs, account, pre != nil)
}

// act answers with a step. After the login callback (fromCallback) a step that needs a page
// redirects to the resume address, so that the page has an address of its own.
func (b *Broker) act(w http.ResponseWriter, r *http.Request, st step, lr *storage.LoginRequest, bs *storage.BrowserSession, account *storage.Account, fromCallback bool) {
	resumeURL := "/oauth2/authorize/resume?login=" + url.QueryEscape(lr.ID)
	switch st.kind {
	case stepPageError:
		b.renderError(w, r, st.err)
	case stepAuthError:
		b.authorizeError(w, r, st.ar, st.err)
	case stepRole:
		http.Redirect(w, r, "/link/role?login="+url.QueryEscape(lr.ID), http.StatusFound)
	case stepConsent:
		if fromCallback {
			http.Redirect(w, r, resumeURL, http.StatusFound)
			return
		}
		b.renderConsent(w, r, lr, st.client, st.scopes, st.linked)
	case stepPicker:
		if fromCallback {
			http.Redirect(w, r, resumeURL, http.StatusFound)
			return
		}
		b.renderPicker(w, r, lr, st.linked)
	default:
		b.finishAuthorize(w, r, st.ar, bs, account, st.client, lr, st.linked)
	}
}

func (b *Broker) alwaysPick(clientID string) bool {
	for _, c := range strings.Split(b.cfg.Linking.AlwaysPickStudent, ",") {
		if strings.TrimSpace(c) == clientID {
			return true
		}
	}
	return false
}

var errAccountSelectionRequired = &fosite.RFC6749Error{ErrorField: "account_selection_required", DescriptionField: "The End-User is required to select a session at the Authorization Server.", CodeField: http.StatusBadRequest}

// checkExactRedirect refuses a redirect URI that is not registered to the letter. fosite lets a
// loopback URI match on any port for every client; RFC 8252 §7.3 allows that only to native
// apps, which are public clients, so a confidential client gets an exact match only.
func checkExactRedirect(ar fosite.AuthorizeRequester) error {
	raw := ar.GetRequestForm().Get("redirect_uri")
	if raw == "" || ar.GetClient().IsPublic() || slices.Contains(ar.GetClient().GetRedirectURIs(), raw) {
		return nil
	}
	return fosite.ErrInvalidRequest.WithHint("The redirect_uri is not registered for this client (a loopback port is matched only for public native clients).")
}

// checkPKCE refuses, before anyone logs in, what fosite's PKCE handler would refuse after: a
// method other than S256, and a public client without a challenge.
func checkPKCE(ar fosite.AuthorizeRequester) error {
	f := ar.GetRequestForm()
	challenge, method := f.Get("code_challenge"), f.Get("code_challenge_method")
	if challenge == "" {
		if ar.GetClient().IsPublic() {
			return fosite.ErrInvalidRequest.WithHint("Clients must include a code_challenge when performing the authorize code flow, but it is missing.")
		}
		return nil
	}
	if method != "S256" {
		return fosite.ErrInvalidRequest.WithHint("The code_challenge_method must be S256; plain is not supported.")
	}
	return nil
}

func expiredLogin(err error) error {
	return &UserError{Status: http.StatusBadRequest, Title: "Время входа истекло", Message: "Страница входа устарела или уже была использована. Вернитесь в электронный дневник и нажмите «Войти» ещё раз.", Err: err}
}

// finishAuthorize spends the login request and issues the code in one transaction: the code,
// PKCE and OpenID Connect rows are written together, or none is.
func (b *Broker) finishAuthorize(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, bs *storage.BrowserSession, account *storage.Account, client *storage.Client, lr *storage.LoginRequest, linked []storage.LinkedStudent) {
	ctx := r.Context()
	var resp fosite.AuthorizeResponder
	var authErr error
	err := b.store.InTx(ctx, func(ctx context.Context) error {
		var err error
		resp, authErr, err = b.issueCode(ctx, ar, bs, account, client, lr, linked)
		if err != nil {
			return err
		}
		return authErr
	})
	switch {
	case authErr != nil:
		b.authorizeError(w, r, ar, authErr)
		return
	case err != nil:
		b.renderError(w, r, err)
		return
	}
	b.provider.WriteAuthorizeResponse(ctx, b.authorizeWriter(w), ar, resp)
}

// issueCode grants the requested scopes, builds the token session, spends the login request
// and has fosite issue the code, in the transaction ctx carries (the caller's). authErr is an
// OAuth error for the client, err anything else; either leaves the transaction to be rolled
// back.
func (b *Broker) issueCode(ctx context.Context, ar fosite.AuthorizeRequester, bs *storage.BrowserSession, account *storage.Account, client *storage.Client, lr *storage.LoginRequest, linked []storage.LinkedStudent) (resp fosite.AuthorizeResponder, authErr, err error) {
	for _, s := range ar.GetRequestedScopes() {
		ar.GrantScope(s)
	}
	ar.GrantAudience(client.ID)
	sess := userSession(account, b.subjectFor(account, client.ID, client.RedirectURIs), bs, client, ar.GetGrantedScopes(), lr.CreatedAt, b.cfg.Tokens.IDTokenAlg, lr.StudentID)
	links, err := b.linkClaimsFrom(ctx, account, ar.GetGrantedScopes(), lr.StudentID, linked)
	if err != nil {
		return nil, nil, err
	}
	applyClaims(sess, profileClaims(account, ar.GetGrantedScopes()), links)
	if _, err := b.store.ConsumeLoginRequest(ctx, lr.ID); err != nil {
		return nil, nil, expiredLogin(err)
	}
	resp, authErr = b.provider.NewAuthorizeResponse(ctx, ar, sess)
	if authErr != nil {
		return resp, authErr, nil
	}
	// The session's logout is to reach this diary, for as long as a refresh token may live.
	keep := max(b.cfg.Tokens.RefreshTokenLifespan, b.cfg.Session.Lifespan)
	if err := b.store.RecordSessionClient(ctx, account.ID, bs.SID, client.ID, time.Now().Add(keep)); err != nil {
		return nil, nil, err
	}
	return resp, nil, nil
}

// authorizeError redirects the error to the client only when its redirect URI is verified;
// otherwise it shows a page, so that the broker never redirects to an unregistered address.
func (b *Broker) authorizeError(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, err error) {
	if isUnavailable(err) {
		b.renderError(w, r, err)
		return
	}
	rfc := fosite.ErrorToRFC6749Error(err)
	b.logger(r.Context()).Info("authorization request refused", "error", rfc.ErrorField, "hint", rfc.HintField)
	if ar != nil && ar.IsRedirectURIValid() {
		b.provider.WriteAuthorizeError(r.Context(), b.authorizeWriter(w), ar, err)
		return
	}
	msg := "Электронный дневник прислал неправильный запрос на вход. Вернитесь в дневник и попробуйте снова; если ошибка повторится, сообщите в службу поддержки."
	switch rfc.ErrorField {
	case fosite.ErrInvalidClient.ErrorField:
		msg = "Электронный дневник, с которого вы пришли, не зарегистрирован для входа. Сообщите в службу поддержки."
	case fosite.ErrInvalidRequest.ErrorField:
		if strings.Contains(strings.ToLower(rfc.HintField), "redirect") {
			msg = "Адрес возврата в электронный дневник не зарегистрирован. Сообщите в службу поддержки."
		}
	}
	b.render(w, r, http.StatusBadRequest, "error", pageData{Title: "Ошибка запроса на вход", Message: msg, RequestID: requestID(r.Context())})
}

// currentSession returns the browser's live session and its account, or nils.
func (b *Broker) currentSession(ctx context.Context, r *http.Request) (*storage.BrowserSession, *storage.Account, error) {
	raw := b.sessionCookie(r)
	if raw == "" {
		return nil, nil, nil
	}
	bs, a, err := b.store.SessionWithAccount(ctx, hashToken(raw))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if a.Kind == "child" {
		// A sub-account whose right ended has no session any more.
		if err := b.accountMayUse(ctx, a); errors.Is(err, errNoRight) {
			if err := b.store.RevokeTokensOf(ctx, a.ID); err != nil {
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
func (b *Broker) hintSubject(ctx context.Context, token string) string {
	c, err := b.decodeIDToken(ctx, token)
	if err != nil {
		return ""
	}
	sub, _ := c["sub"].(string)
	return sub
}

func (b *Broker) startLogin(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester) {
	ctx := r.Context()
	browser := b.browserID(w, r)
	// The whole request is kept, prompt included: fosite checks auth_time against the request
	// time for prompt=login, and select_account still asks for the picker.
	lr := &storage.LoginRequest{ID: uuid.NewString(), AuthorizeQuery: authorizeQuery(ar), BrowserHash: hashToken(browser), ExpiresAt: time.Now().Add(b.cfg.Session.LoginTimeout)}
	// With idp naming a connector the browser goes straight to the upstream: the login request
	// and the upstream flow are written together and no start page is shown.
	if conn, ok := b.connectors[ar.GetRequestForm().Get("idp")]; ok {
		if to := b.upstreamLogoutFirst(w, r, conn, lr); to != "" {
			if err := b.store.CreateLoginRequest(ctx, lr); err != nil {
				b.renderError(w, r, err)
				return
			}
			http.Redirect(w, r, to, http.StatusFound)
			return
		}
		target, f, err := b.upstreamTrip(ctx, conn, lr)
		if err != nil {
			// Keep the login request so that «Повторить» can start the trip again.
			if serr := b.store.CreateLoginRequest(ctx, lr); serr != nil {
				err = serr
			}
			b.renderError(w, r, err)
			return
		}
		if err := b.store.CreateLoginWithFlow(ctx, lr, f); err != nil {
			b.renderError(w, r, err)
			return
		}
		http.Redirect(w, r, target, http.StatusFound)
		return
	}
	if err := b.store.CreateLoginRequest(ctx, lr); err != nil {
		b.renderError(w, r, err)
		return
	}
	links := make([]connectorLink, 0, len(b.connOrder))
	for _, c := range b.connOrder {
		links = append(links, connectorLink{ID: c.ID(), Name: c.DisplayName()})
	}
	b.render(w, r, http.StatusOK, "start", pageData{Title: "Вход в электронный дневник", LoginID: lr.ID, Connectors: links, ChildLogin: b.cfg.Children.PasswordAccounts})
}

// token is the token endpoint. A code or refresh exchange runs in one database transaction:
// fosite's reads, the spent code, PKCE and OpenID Connect rows and the new tokens are written
// together and committed before the answer leaves; the client_credentials grant writes a single
// row and needs none.
func (b *Broker) token(w http.ResponseWriter, r *http.Request) {
	if !formEncoded(r) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "The body must be application/x-www-form-urlencoded."})
		return
	}
	ctx := b.withClientIP(r)
	grant := r.PostFormValue("grant_type")
	if grant != "authorization_code" && grant != "refresh_token" {
		b.tokenExchange(ctx, r).write(ctx, b, w)
		return
	}
	// The client is authenticated before the transaction: a refused grant rolls it back, and
	// the assertion's jti must stay used all the same.
	ctx = b.clientAuth.preAuthenticate(ctx, r)
	tctx, err := b.store.BeginRequestTx(ctx)
	if err != nil {
		b.logger(ctx).Warn("token request: begin transaction", "err", err)
		writeUnavailableJSON(w)
		return
	}
	out := b.tokenExchange(tctx, r)
	if out.err != nil || out.unavailable {
		// A refused request changes nothing but the revocation of a replayed grant.
		if err := b.store.AbortRequestTx(tctx); err != nil {
			b.logger(ctx).Warn("token request: roll back", "err", err)
			writeUnavailableJSON(w)
			return
		}
		out.write(ctx, b, w)
		return
	}
	committed, err := b.store.EndRequestTx(tctx)
	switch {
	case err != nil:
		b.logger(ctx).Warn("token request: commit", "err", err)
		writeUnavailableJSON(w)
		return
	case !committed && out.err == nil:
		// A handler rolled its part back yet reported success: nothing it issued exists.
		out = tokenOutcome{ar: out.ar, err: fosite.ErrServerError.WithHint("The grant could not be stored.")}
	}
	out.write(ctx, b, w)
}

// logServerError logs what made fosite answer server_error: the answer itself says nothing,
// and token tables hold no personal data for the cause to leak.
func logServerError(ctx context.Context, b *Broker, what string, err error) {
	if rfc := fosite.ErrorToRFC6749Error(err); rfc.ErrorField == fosite.ErrServerError.ErrorField {
		b.logger(ctx).Error(what+": server error", "err", err, "cause", rfc.DebugField)
	}
}

// tokenOutcome is what the token endpoint answers, decided before anything is written.
type tokenOutcome struct {
	ar          fosite.AccessRequester
	resp        fosite.AccessResponder
	err         error
	unavailable bool
	grant       string
}

func (o tokenOutcome) write(ctx context.Context, b *Broker, w http.ResponseWriter) {
	switch {
	case o.unavailable:
		writeUnavailableJSON(w)
	case o.err != nil:
		b.provider.WriteAccessError(ctx, w, o.ar, o.err)
	default:
		client := ""
		if o.ar != nil && o.ar.GetClient() != nil {
			client = o.ar.GetClient().GetID() // a registered client: a bounded label
		}
		b.metrics.tokens.WithLabelValues(o.grant, client).Inc()
		b.provider.WriteAccessResponse(ctx, w, o.ar, o.resp)
	}
}

func (b *Broker) tokenExchange(ctx context.Context, r *http.Request) tokenOutcome {
	ar, err := b.provider.NewAccessRequest(ctx, r, newEmptySession())
	if isUnavailable(err) {
		b.logger(ctx).Warn("token request: dependency unavailable", "err", err)
		return tokenOutcome{unavailable: true}
	}
	if err != nil {
		b.logger(ctx).Info("token request refused", "error", fosite.ErrorToRFC6749Error(err).ErrorField)
		logServerError(ctx, b, "token request", err)
		return tokenOutcome{ar: ar, err: err}
	}
	grant := "other"
	if gt := ar.GetGrantTypes(); len(gt) == 1 {
		grant = gt[0]
	}
	if ar.GetGrantTypes().ExactOne("authorization_code") {
		// A child's code is not exchanged once the right has ended (the 14th birthday ends it
		// without any event); every other end of a right deletes the codes with the tokens.
		if sess, ok := ar.GetSession().(*Session); ok && sess.Claims != nil && sess.Claims.AuthenticationContextClassReference == "child" {
			a, err := b.store.Account(ctx, sess.Subject)
			if err == nil {
				err = b.accountMayUse(ctx, a)
			}
			if isUnavailable(err) {
				return tokenOutcome{unavailable: true}
			}
			if err != nil {
				return tokenOutcome{ar: ar, err: fosite.ErrInvalidGrant.WithHint("The account may no longer log in.")}
			}
		}
	}
	if ar.GetGrantTypes().ExactOne("refresh_token") {
		// The session is the one of the original grant: the account must still have its right,
		// and names and links are brought up to date, so a student who left or a revoked link
		// disappears from refreshed tokens.
		if sess, ok := ar.GetSession().(*Session); ok && sess.Subject != "" && sess.Subject != sess.ClientID {
			a, err := b.store.AccountForUpdate(ctx, sess.Subject)
			if isUnavailable(err) {
				return tokenOutcome{unavailable: true}
			}
			if err == nil {
				err = b.accountMayUse(ctx, a)
			}
			if isUnavailable(err) {
				return tokenOutcome{unavailable: true}
			}
			if err != nil {
				return tokenOutcome{ar: ar, err: fosite.ErrInvalidGrant.WithHint("The account no longer exists, is disabled or may no longer log in.")}
			}
			links, err := b.linkClaims(ctx, a, ar.GetGrantedScopes(), sess.PickedStudent)
			if err != nil {
				return tokenOutcome{ar: ar, err: fosite.ErrServerError.WithWrap(err), unavailable: isUnavailable(err)}
			}
			applyClaims(sess, profileClaims(a, ar.GetGrantedScopes()), links)
			// The sub as tokens.subject says today (a region may have changed it).
			sub := b.subjectFor(a, ar.GetClient().GetID(), ar.GetClient().GetRedirectURIs())
			if sess.Claims != nil {
				sess.Claims.Subject = sub
			}
			if sess.AccessClaims != nil {
				sess.AccessClaims.Subject = sub
			}
		}
	}
	if ar.GetGrantTypes().ExactOne("client_credentials") {
		for _, s := range ar.GetRequestedScopes() {
			ar.GrantScope(s)
		}
		ar.GrantAudience(ar.GetClient().GetID())
		// fosite set the token's expiry on the session it made; the client's session keeps it.
		cs := clientSession(ar.GetClient().GetID())
		cs.SetExpiresAt(fosite.AccessToken, ar.GetSession().GetExpiresAt(fosite.AccessToken))
		ar.SetSession(cs)
	}
	resp, err := b.provider.NewAccessResponse(ctx, ar)
	if isUnavailable(err) {
		b.logger(ctx).Warn("token response: dependency unavailable", "err", err)
		return tokenOutcome{unavailable: true}
	}
	if err != nil {
		b.logger(ctx).Info("token response refused", "grant", grant, "error", fosite.ErrorToRFC6749Error(err).ErrorField)
		logServerError(ctx, b, "token response", err)
		return tokenOutcome{ar: ar, err: err}
	}
	return tokenOutcome{ar: ar, resp: resp, grant: grant}
}

func (b *Broker) revoke(w http.ResponseWriter, r *http.Request) {
	if !formEncoded(r) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "The body must be application/x-www-form-urlencoded."})
		return
	}
	ctx := r.Context()
	err := b.provider.NewRevocationRequest(ctx, r)
	switch {
	case isUnavailable(err):
		writeUnavailableJSON(w)
	case errors.Is(err, fosite.ErrUnauthorizedClient):
		// RFC 7009 §2.1: a token of another client is refused with an error, not ignored (fosite
		// answers 200).
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unauthorized_client", "error_description": "The token was not issued to this client."})
	case errors.Is(err, fosite.ErrInvalidClient):
		if _, _, basic := r.BasicAuth(); basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="esia-broker", charset="UTF-8"`)
		}
		b.provider.WriteRevocationResponse(ctx, w, err)
	default:
		b.provider.WriteRevocationResponse(ctx, w, err)
	}
}

// introspect is RFC 7662 token introspection. Only an authenticated confidential client may
// ask, and it learns only of tokens issued to it or meant for it (its id among their audiences);
// anything else — an unknown, expired or foreign token — is {"active": false}.
func (b *Broker) introspect(w http.ResponseWriter, r *http.Request) {
	if !formEncoded(r) {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "The body must be application/x-www-form-urlencoded."})
		return
	}
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "The request body could not be read."})
		return
	}
	f, ok := b.provider.(*fosite.Fosite)
	if !ok {
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	client, err := f.AuthenticateClient(ctx, r, r.PostForm)
	if isUnavailable(err) {
		writeUnavailableJSON(w)
		return
	}
	if err != nil || client.IsPublic() {
		if _, _, basic := r.BasicAuth(); basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="esia-broker", charset="UTF-8"`)
		}
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client", "error_description": "Client authentication failed; only confidential clients may introspect tokens."})
		return
	}
	token := r.PostForm.Get("token")
	inactive := map[string]any{"active": false}
	if token == "" {
		writeJSON(w, http.StatusOK, inactive)
		return
	}
	hint := fosite.AccessToken
	if r.PostForm.Get("token_type_hint") == "refresh_token" {
		hint = fosite.RefreshToken
	}
	use, ar, err := b.provider.IntrospectToken(ctx, token, hint, newEmptySession())
	if isUnavailable(err) {
		writeUnavailableJSON(w)
		return
	}
	if err != nil || (use != fosite.AccessToken && use != fosite.RefreshToken) {
		writeJSON(w, http.StatusOK, inactive)
		return
	}
	if ar.GetClient().GetID() != client.GetID() && !slices.Contains(ar.GetGrantedAudience(), client.GetID()) {
		writeJSON(w, http.StatusOK, inactive)
		return
	}
	out := map[string]any{
		"active":    true,
		"scope":     strings.Join(ar.GetGrantedScopes(), " "),
		"client_id": ar.GetClient().GetID(),
		"iat":       ar.GetRequestedAt().Unix(),
		"iss":       b.issuer(),
		"token_use": map[fosite.TokenUse]string{fosite.AccessToken: "access_token", fosite.RefreshToken: "refresh_token"}[use],
	}
	if use == fosite.AccessToken {
		out["token_type"] = "Bearer"
	} else {
		out["token_type"] = "refresh_token"
	}
	if aud := ar.GetGrantedAudience(); len(aud) > 0 {
		out["aud"] = []string(aud)
	}
	if sess := ar.GetSession(); sess != nil {
		if sub := sess.GetSubject(); sub != "" {
			out["sub"] = sub
		}
		// The sub the client saw in its ID token (tokens.subject), not the account id.
		if s, ok := sess.(*Session); ok && s.Claims != nil && s.Claims.Subject != "" {
			out["sub"] = s.Claims.Subject
		}
		if exp := sess.GetExpiresAt(use); !exp.IsZero() {
			out["exp"] = exp.Unix()
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// userinfo answers with the claims of the access token's subject, read fresh from the account.
func (b *Broker) userinfo(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	token := bearerToken(r)
	if token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": "No access token was given in the Authorization header."})
		return
	}
	ar, err := b.accessToken(ctx, token)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": "The access token is not active."})
		return
	}
	if !ar.GetGrantedScopes().Has("openid") {
		w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope"`)
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "insufficient_scope", "error_description": "The access token lacks scope openid."})
		return
	}
	s, _ := ar.GetSession().(*Session)
	if s == nil || s.Subject == "" || s.Subject == s.ClientID {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "insufficient_scope", "error_description": "The access token has no end user."})
		return
	}
	a, err := b.store.Account(ctx, s.Subject)
	if err == nil {
		err = b.accountMayUse(ctx, a)
	}
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": "The account no longer exists or may no longer log in."})
		return
	}
	claims := profileClaims(a, ar.GetGrantedScopes())
	links, err := b.linkClaims(ctx, a, ar.GetGrantedScopes(), s.PickedStudent)
	if err != nil {
		b.logger(ctx).Error("userinfo: read links", "err", err)
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	for k, v := range links {
		claims[k] = v
	}
	claims["sub"] = b.subjectFor(a, ar.GetClient().GetID(), ar.GetClient().GetRedirectURIs())
	writeJSON(w, http.StatusOK, claims)
}

// issWriter adds iss to an authorization response's redirect (RFC 9207): a client talking to
// several providers can tell which one answered, whether with a code or an error.
type issWriter struct {
	http.ResponseWriter
	iss string
}

func (w issWriter) WriteHeader(code int) {
	if code >= 300 && code < 400 {
		if loc, err := url.Parse(w.Header().Get("Location")); err == nil && loc.String() != "" {
			if q := loc.Query(); q.Has("code") || q.Has("error") {
				q.Set("iss", w.iss)
				loc.RawQuery = q.Encode()
				w.Header().Set("Location", loc.String())
			} else if f, err := url.ParseQuery(loc.Fragment); err == nil && (f.Has("code") || f.Has("error")) {
				f.Set("iss", w.iss)
				loc.Fragment = f.Encode()
				w.Header().Set("Location", loc.String())
			}
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

// authorizeWriter wraps w for an authorization response.
func (b *Broker) authorizeWriter(w http.ResponseWriter) http.ResponseWriter {
	return issWriter{ResponseWriter: w, iss: b.issuer()}
}

// parURIPrefix starts every request_uri the pushed authorization request endpoint gives.
const parURIPrefix = "urn:ietf:params:oauth:request_uri:"

// authorizeQuery is the authorization request as a login request keeps it, to be replayed at
// each step: for a pushed request, the pushed parameters themselves (its request_uri is used
// once), never a client credential.
func authorizeQuery(ar fosite.AuthorizeRequester) string {
	form := url.Values{}
	for k, v := range ar.GetRequestForm() {
		form[k] = v
	}
	for _, k := range []string{"request_uri", "client_secret", "client_assertion", "client_assertion_type"} {
		form.Del(k)
	}
	return form.Encode()
}

// formEncoded tells whether a request's body, if it has one, is application/x-www-form-urlencoded:
// the only body the OAuth endpoints read (RFC 6749 §3.2, RFC 9126 §2.1). fosite would also read a
// multipart body, after the broker's own checks of the form.
func formEncoded(r *http.Request) bool {
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		return true
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return r.ContentLength == 0
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/x-www-form-urlencoded"
}

// replayAuthorize rebuilds a login request's authorization request, checked as the
// authorization endpoint checked it: exact redirect URI, never a request object.
func (b *Broker) replayAuthorize(ctx context.Context, query string) (fosite.AuthorizeRequester, error) {
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fosite.ErrInvalidRequest.WithHint("The stored authorization request could not be read.")
	}
	if q.Has("request") || q.Has("request_uri") {
		return nil, fosite.ErrRequestNotSupported.WithHint("Request objects are not supported.")
	}
	replay, err := http.NewRequestWithContext(ctx, http.MethodGet, "/oauth2/authorize?"+query, nil)
	if err != nil {
		return nil, err
	}
	ar, err := b.provider.NewAuthorizeRequest(ctx, replay)
	if err != nil {
		return ar, err
	}
	if err := checkExactRedirect(ar); err != nil {
		return nil, err
	}
	return ar, nil
}

// pushedAuthorize is the pushed authorization request endpoint (RFC 9126): a client posts its
// authorization request from its server, authenticated, and gets a request_uri to send the
// browser with. The request is checked as the authorization endpoint checks it.
func (b *Broker) pushedAuthorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var ar fosite.AuthorizeRequester
	var err error
	if !formEncoded(r) || r.Method != http.MethodPost {
		err = fosite.ErrInvalidRequest.WithHint("A pushed authorization request is a POST of application/x-www-form-urlencoded (RFC 9126 §2.1).")
	} else {
		err = r.ParseForm()
	}
	if err == nil && r.Form.Has("request") {
		err = fosite.ErrRequestNotSupported.WithHint("Request objects are not supported; push the parameters themselves.")
	}
	if err == nil {
		ar, err = b.provider.NewPushedAuthorizeRequest(ctx, r)
	}
	if err == nil {
		err = checkExactRedirect(ar)
	}
	if err == nil {
		err = checkPKCE(ar)
	}
	if err == nil && ar.GetRequestForm().Get("request_uri") != "" {
		err = fosite.ErrInvalidRequest.WithHint("A pushed request must not itself carry a request_uri.")
	}
	if isUnavailable(err) {
		writeUnavailableJSON(w)
		return
	}
	if err != nil {
		if errors.Is(err, fosite.ErrInvalidClient) {
			if _, _, basic := r.BasicAuth(); basic {
				w.Header().Set("WWW-Authenticate", `Basic realm="esia-broker", charset="UTF-8"`)
			}
		}
		b.provider.WritePushedAuthorizeError(ctx, w, ar, err)
		return
	}
	resp, err := b.provider.NewPushedAuthorizeResponse(ctx, ar, newEmptySession())
	if err != nil {
		b.provider.WritePushedAuthorizeError(ctx, w, ar, err)
		return
	}
	b.provider.WritePushedAuthorizeResponse(ctx, w, ar, resp)
}
