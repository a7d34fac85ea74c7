package broker

import (
	"context"
	"encoding/json"
	"errors"
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
var SupportedScopes = []string{"openid", "profile", "offline_access"}

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
		"issuer":                                iss,
		"authorization_endpoint":                iss + "/oauth2/authorize",
		"token_endpoint":                        iss + "/oauth2/token",
		"userinfo_endpoint":                     iss + "/oauth2/userinfo",
		"jwks_uri":                              iss + "/oauth2/jwks",
		"revocation_endpoint":                   iss + "/oauth2/revoke",
		"introspection_endpoint":                iss + "/oauth2/introspect",
		"end_session_endpoint":                  iss + "/oauth2/logout",
		"scopes_supported":                      SupportedScopes,
		"response_types_supported":              []string{"code"},
		"response_modes_supported":              []string{"query"},
		"grant_types_supported":                 []string{"authorization_code", "refresh_token", "client_credentials"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256", "ES256"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post", "none"},
		"claims_supported":                      []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "amr", "acr", "name", "family_name", "given_name", "middle_name", "birthdate"},
		"prompt_values_supported":               []string{"none", "login", "consent", "select_account"},
		"claims_parameter_supported":            false,
		"request_parameter_supported":           false,
		"request_uri_parameter_supported":       false,
	})
}

func (b *Broker) jwks(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=60")
	writeJSON(w, http.StatusOK, b.keys.JWKS(r.Context()))
}

// authorize is the authorization endpoint. A request without a (fresh enough) browser session
// is stored as a login request and the start page is shown.
func (b *Broker) authorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ar, err := b.provider.NewAuthorizeRequest(ctx, r)
	if err != nil {
		b.authorizeError(w, r, ar, err)
		return
	}
	if err := checkPKCE(ar); err != nil {
		b.authorizeError(w, r, ar, err)
		return
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
			if sub := b.hintSubject(ctx, hint); sub != "" && sub != account.ID {
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
	b.finishAuthorize(w, r, ar, bs, account, time.Now())
}

// resume continues an authorization request after the login it waited for.
func (b *Broker) resume(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	lr, err := b.store.ConsumeLoginRequest(ctx, r.URL.Query().Get("login"))
	if err != nil {
		b.renderError(w, r, expiredLogin(err))
		return
	}
	bs, account, err := b.currentSession(ctx, r)
	if err != nil {
		b.renderError(w, r, err)
		return
	}
	c, err := r.Cookie(browserCookie)
	if bs == nil || err != nil || hashToken(c.Value) != lr.BrowserHash || lr.SessionHash == "" || lr.SessionHash != bs.IDHash {
		b.renderError(w, r, &UserError{Status: http.StatusForbidden, Title: "Вход не завершён", Message: "Вход был начат в другом окне или браузере. Вернитесь в электронный дневник и войдите снова."})
		return
	}
	replay, err := http.NewRequestWithContext(ctx, http.MethodGet, "/oauth2/authorize?"+lr.AuthorizeQuery, nil)
	if err != nil {
		b.renderError(w, r, err)
		return
	}
	ar, err := b.provider.NewAuthorizeRequest(ctx, replay)
	if err != nil {
		b.authorizeError(w, r, ar, err)
		return
	}
	b.finishAuthorize(w, r, ar, bs, account, lr.CreatedAt)
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

func (b *Broker) finishAuthorize(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, bs *storage.BrowserSession, account *storage.Account, requestedAt time.Time) {
	ctx := r.Context()
	client, ok := ar.GetClient().(*storage.Client)
	if !ok {
		b.renderError(w, r, errors.New("authorize: unexpected client type"))
		return
	}
	for _, s := range ar.GetRequestedScopes() {
		ar.GrantScope(s)
	}
	ar.GrantAudience(client.ID)
	sess := userSession(account, bs, client, ar.GetGrantedScopes(), requestedAt, b.cfg.Tokens.IDTokenAlg)
	resp, err := b.provider.NewAuthorizeResponse(ctx, ar, sess)
	if err != nil {
		b.authorizeError(w, r, ar, err)
		return
	}
	b.provider.WriteAuthorizeResponse(ctx, w, ar, resp)
}

// authorizeError redirects the error to the client only when its redirect URI is verified;
// otherwise it shows a page, so that the broker never redirects to an unregistered address.
func (b *Broker) authorizeError(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester, err error) {
	rfc := fosite.ErrorToRFC6749Error(err)
	b.logger(r.Context()).Info("authorization request refused", "error", rfc.ErrorField, "hint", rfc.HintField)
	if ar != nil && ar.IsRedirectURIValid() {
		b.provider.WriteAuthorizeError(r.Context(), w, ar, err)
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
	bs, err := b.store.BrowserSession(ctx, hashToken(raw))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	a, err := b.store.Account(ctx, bs.AccountID)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	return bs, a, nil
}

// hintSubject returns the sub of an ID token this broker signed, expired or not; "" when it did
// not sign it.
func (b *Broker) hintSubject(ctx context.Context, token string) string {
	t, err := b.idSigner.Decode(ctx, token)
	if t == nil || (err != nil && !isExpiredOnly(err)) {
		return ""
	}
	if iss, _ := t.Claims["iss"].(string); iss != b.issuer() {
		return ""
	}
	sub, _ := t.Claims["sub"].(string)
	return sub
}

func (b *Broker) startLogin(w http.ResponseWriter, r *http.Request, ar fosite.AuthorizeRequester) {
	ctx := r.Context()
	browser := b.browserID(w, r)
	form := url.Values{}
	for k, v := range ar.GetRequestForm() {
		form[k] = v
	}
	form.Del("prompt") // satisfied by the login about to happen; prompt=none never gets here
	if p := strings.Fields(ar.GetRequestForm().Get("prompt")); slices.Contains(p, "login") {
		form.Set("prompt", "login") // kept so that fosite checks auth_time against the request time
	}
	lr := &storage.LoginRequest{ID: uuid.NewString(), AuthorizeQuery: form.Encode(), BrowserHash: hashToken(browser), ExpiresAt: time.Now().Add(b.cfg.Session.LoginTimeout)}
	if err := b.store.CreateLoginRequest(ctx, lr); err != nil {
		b.renderError(w, r, err)
		return
	}
	if idp := ar.GetRequestForm().Get("idp"); idp != "" {
		if _, ok := b.connectors[idp]; ok {
			http.Redirect(w, r, "/login/"+url.PathEscape(idp)+"?login="+url.QueryEscape(lr.ID), http.StatusFound)
			return
		}
	}
	links := make([]connectorLink, 0, len(b.connOrder))
	for _, c := range b.connOrder {
		links = append(links, connectorLink{ID: c.ID(), Name: c.DisplayName()})
	}
	b.render(w, r, http.StatusOK, "start", pageData{Title: "Вход в электронный дневник", LoginID: lr.ID, Connectors: links})
}

func (b *Broker) token(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ar, err := b.provider.NewAccessRequest(ctx, r, newEmptySession())
	if err != nil {
		b.logger(ctx).Info("token request refused", "error", fosite.ErrorToRFC6749Error(err).ErrorField)
		b.provider.WriteAccessError(ctx, w, ar, err)
		return
	}
	grant := "other"
	if gt := ar.GetGrantTypes(); len(gt) == 1 {
		grant = gt[0]
	}
	if ar.GetGrantTypes().ExactOne("client_credentials") {
		for _, s := range ar.GetRequestedScopes() {
			ar.GrantScope(s)
		}
		ar.GrantAudience(ar.GetClient().GetID())
		ar.SetSession(clientSession(ar.GetClient().GetID()))
	}
	resp, err := b.provider.NewAccessResponse(ctx, ar)
	if err != nil {
		b.logger(ctx).Info("token response refused", "grant", grant, "error", fosite.ErrorToRFC6749Error(err).ErrorField)
		b.provider.WriteAccessError(ctx, w, ar, err)
		return
	}
	b.metrics.tokens.WithLabelValues(grant).Inc()
	b.provider.WriteAccessResponse(ctx, w, ar, resp)
}

func (b *Broker) revoke(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	err := b.provider.NewRevocationRequest(ctx, r)
	b.provider.WriteRevocationResponse(ctx, w, err)
}

func (b *Broker) introspect(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ir, err := b.provider.NewIntrospectionRequest(ctx, r, newEmptySession())
	if err != nil {
		b.provider.WriteIntrospectionError(ctx, w, err)
		return
	}
	b.provider.WriteIntrospectionResponse(ctx, w, ir)
}

// userinfo answers with the claims of the access token's subject, read fresh from the account.
func (b *Broker) userinfo(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	token := fosite.AccessTokenFromRequest(r)
	if token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": "No access token was given."})
		return
	}
	sess := newEmptySession()
	_, ar, err := b.provider.IntrospectToken(ctx, token, fosite.AccessToken, sess)
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
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": "The account no longer exists."})
		return
	}
	claims := profileClaims(a, ar.GetGrantedScopes())
	claims["sub"] = a.ID
	writeJSON(w, http.StatusOK, claims)
}
