package provider

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/esia-broker/esia-broker/web"
	"github.com/ory/fosite"
)

// SupportedScopes are the scopes the broker knows; a client may request those it is registered
// for.
var SupportedScopes = []string{"openid", "profile", "offline_access", "students", "esia", "roster:write", "links:write",
	"links:read", "invites:write", "events:read"}

// Issuer is the issuer URL without a trailing slash.
func (p *Provider) Issuer() string { return strings.TrimSuffix(p.cfg.Issuer, "/") }

func (p *Provider) discovery(w http.ResponseWriter, _ *http.Request) {
	iss := p.Issuer()
	w.Header().Set("Cache-Control", "public, max-age=300")
	web.WriteJSON(w, http.StatusOK, map[string]any{
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
		"subject_types_supported":                                  []string{subjectType(p.cfg.Tokens.Subject)},
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

func (p *Provider) jwks(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=60")
	web.WriteJSON(w, http.StatusOK, p.keys.JWKS(r.Context()))
}

// token is the token endpoint. A code or refresh exchange runs in one database transaction:
// fosite's reads, the spent code, PKCE and OpenID Connect rows and the new tokens are written
// together and committed before the answer leaves; the client_credentials grant writes a single
// row and needs none.
func (p *Provider) token(w http.ResponseWriter, r *http.Request) {
	if !FormEncoded(r) {
		web.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "The body must be application/x-www-form-urlencoded."})
		return
	}
	ctx := p.withClientIP(r)
	grant := r.PostFormValue("grant_type")
	if grant != "authorization_code" && grant != "refresh_token" {
		p.tokenExchange(ctx, r).write(ctx, p, w)
		return
	}
	// The client is authenticated before the transaction: a refused grant rolls it back, and
	// the assertion's jti must stay used all the same.
	ctx = p.clientAuth.preAuthenticate(ctx, r)
	tctx, err := p.store.BeginRequestTx(ctx)
	if err != nil {
		p.Logger(ctx).Warn("token request: begin transaction", "err", err)
		web.WriteUnavailableJSON(w)
		return
	}
	out := p.tokenExchange(tctx, r)
	if out.err != nil || out.unavailable {
		// A refused request changes nothing but the revocation of a replayed grant.
		if err := p.store.AbortRequestTx(tctx); err != nil {
			p.Logger(ctx).Warn("token request: roll back", "err", err)
			web.WriteUnavailableJSON(w)
			return
		}
		out.write(ctx, p, w)
		return
	}
	committed, err := p.store.EndRequestTx(tctx)
	switch {
	case err != nil:
		p.Logger(ctx).Warn("token request: commit", "err", err)
		web.WriteUnavailableJSON(w)
		return
	case !committed && out.err == nil:
		// A handler rolled its part back yet reported success: nothing it issued exists.
		out = tokenOutcome{ar: out.ar, err: fosite.ErrServerError.WithHint("The grant could not be stored.")}
	}
	out.write(ctx, p, w)
}

// logServerError logs what made fosite answer server_error: the answer itself says nothing,
// and token tables hold no personal data for the cause to leak.
func logServerError(ctx context.Context, p *Provider, what string, err error) {
	if rfc := fosite.ErrorToRFC6749Error(err); rfc.ErrorField == fosite.ErrServerError.ErrorField {
		p.Logger(ctx).Error(what+": server error", "err", err, "cause", rfc.DebugField)
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

func (o tokenOutcome) write(ctx context.Context, p *Provider, w http.ResponseWriter) {
	switch {
	case o.unavailable:
		web.WriteUnavailableJSON(w)
	case o.err != nil:
		p.WriteAccessError(ctx, w, o.ar, o.err)
	default:
		client := ""
		if o.ar != nil && o.ar.GetClient() != nil {
			client = o.ar.GetClient().GetID() // a registered client: a bounded label
		}
		p.Metrics.Tokens.WithLabelValues(o.grant, client).Inc()
		p.WriteAccessResponse(ctx, w, o.ar, o.resp)
	}
}

func (p *Provider) tokenExchange(ctx context.Context, r *http.Request) tokenOutcome {
	ar, err := p.NewAccessRequest(ctx, r, NewEmptySession())
	if web.IsUnavailable(err) {
		p.Logger(ctx).Warn("token request: dependency unavailable", "err", err)
		return tokenOutcome{unavailable: true}
	}
	if err != nil {
		p.Logger(ctx).Info("token request refused", "error", fosite.ErrorToRFC6749Error(err).ErrorField)
		logServerError(ctx, p, "token request", err)
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
			a, err := p.store.Account(ctx, sess.Subject)
			if err == nil {
				err = p.AccountMayUse(ctx, a)
			}
			if web.IsUnavailable(err) {
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
			a, err := p.store.AccountForUpdate(ctx, sess.Subject)
			if web.IsUnavailable(err) {
				return tokenOutcome{unavailable: true}
			}
			if err == nil {
				err = p.AccountMayUse(ctx, a)
			}
			if web.IsUnavailable(err) {
				return tokenOutcome{unavailable: true}
			}
			if err != nil {
				return tokenOutcome{ar: ar, err: fosite.ErrInvalidGrant.WithHint("The account no longer exists, is disabled or may no longer log in.")}
			}
			links, err := p.LinkClaims(ctx, a, ar.GetGrantedScopes(), sess.PickedStudent)
			if err != nil {
				return tokenOutcome{ar: ar, err: fosite.ErrServerError.WithWrap(err), unavailable: web.IsUnavailable(err)}
			}
			applyClaims(sess, profileClaims(a, ar.GetGrantedScopes()), links)
			// The sub as tokens.subject says today (a region may have changed it).
			sub := p.SubjectFor(a, ar.GetClient().GetID(), ar.GetClient().GetRedirectURIs())
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
	resp, err := p.NewAccessResponse(ctx, ar)
	if web.IsUnavailable(err) {
		p.Logger(ctx).Warn("token response: dependency unavailable", "err", err)
		return tokenOutcome{unavailable: true}
	}
	if err != nil {
		p.Logger(ctx).Info("token response refused", "grant", grant, "error", fosite.ErrorToRFC6749Error(err).ErrorField)
		logServerError(ctx, p, "token response", err)
		return tokenOutcome{ar: ar, err: err}
	}
	return tokenOutcome{ar: ar, resp: resp, grant: grant}
}

func (p *Provider) revoke(w http.ResponseWriter, r *http.Request) {
	if !FormEncoded(r) {
		web.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "The body must be application/x-www-form-urlencoded."})
		return
	}
	ctx := r.Context()
	err := p.NewRevocationRequest(ctx, r)
	switch {
	case web.IsUnavailable(err):
		web.WriteUnavailableJSON(w)
	case errors.Is(err, fosite.ErrUnauthorizedClient):
		// RFC 7009 §2.1: a token of another client is refused with an error, not ignored (fosite
		// answers 200).
		w.Header().Set("Cache-Control", "no-store")
		web.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "unauthorized_client", "error_description": "The token was not issued to this client."})
	case errors.Is(err, fosite.ErrInvalidClient):
		if _, _, basic := r.BasicAuth(); basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="esia-broker", charset="UTF-8"`)
		}
		p.WriteRevocationResponse(ctx, w, err)
	default:
		p.WriteRevocationResponse(ctx, w, err)
	}
}

// introspect is RFC 7662 token introspection. Only an authenticated confidential client may
// ask, and it learns only of tokens issued to it or meant for it (its id among their audiences);
// anything else — an unknown, expired or foreign token — is {"active": false}.
func (p *Provider) introspect(w http.ResponseWriter, r *http.Request) {
	if !FormEncoded(r) {
		web.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "The body must be application/x-www-form-urlencoded."})
		return
	}
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		web.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request", "error_description": "The request body could not be read."})
		return
	}
	f, ok := p.OAuth2Provider.(*fosite.Fosite)
	if !ok {
		web.WriteJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	client, err := f.AuthenticateClient(ctx, r, r.PostForm)
	if web.IsUnavailable(err) {
		web.WriteUnavailableJSON(w)
		return
	}
	if err != nil || client.IsPublic() {
		if _, _, basic := r.BasicAuth(); basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="esia-broker", charset="UTF-8"`)
		}
		web.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_client", "error_description": "Client authentication failed; only confidential clients may introspect tokens."})
		return
	}
	token := r.PostForm.Get("token")
	inactive := map[string]any{"active": false}
	if token == "" {
		web.WriteJSON(w, http.StatusOK, inactive)
		return
	}
	hint := fosite.AccessToken
	if r.PostForm.Get("token_type_hint") == "refresh_token" {
		hint = fosite.RefreshToken
	}
	use, ar, err := p.IntrospectToken(ctx, token, hint, NewEmptySession())
	if web.IsUnavailable(err) {
		web.WriteUnavailableJSON(w)
		return
	}
	if err != nil || (use != fosite.AccessToken && use != fosite.RefreshToken) {
		web.WriteJSON(w, http.StatusOK, inactive)
		return
	}
	if ar.GetClient().GetID() != client.GetID() && !slices.Contains(ar.GetGrantedAudience(), client.GetID()) {
		web.WriteJSON(w, http.StatusOK, inactive)
		return
	}
	out := map[string]any{
		"active":    true,
		"scope":     strings.Join(ar.GetGrantedScopes(), " "),
		"client_id": ar.GetClient().GetID(),
		"iat":       ar.GetRequestedAt().Unix(),
		"iss":       p.Issuer(),
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
	web.WriteJSON(w, http.StatusOK, out)
}

// userinfo answers with the claims of the access token's subject, read fresh from the account.
func (p *Provider) userinfo(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	token := BearerToken(r)
	if token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		web.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": "No access token was given in the Authorization header."})
		return
	}
	ar, err := p.AccessToken(ctx, token)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		web.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": "The access token is not active."})
		return
	}
	if !ar.GetGrantedScopes().Has("openid") {
		w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope"`)
		web.WriteJSON(w, http.StatusForbidden, map[string]string{"error": "insufficient_scope", "error_description": "The access token lacks scope openid."})
		return
	}
	s, _ := ar.GetSession().(*Session)
	if s == nil || s.Subject == "" || s.Subject == s.ClientID {
		web.WriteJSON(w, http.StatusForbidden, map[string]string{"error": "insufficient_scope", "error_description": "The access token has no end user."})
		return
	}
	a, err := p.store.Account(ctx, s.Subject)
	if err == nil {
		err = p.AccountMayUse(ctx, a)
	}
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		web.WriteJSON(w, http.StatusUnauthorized, map[string]string{"error": "invalid_token", "error_description": "The account no longer exists or may no longer log in."})
		return
	}
	claims := profileClaims(a, ar.GetGrantedScopes())
	links, err := p.LinkClaims(ctx, a, ar.GetGrantedScopes(), s.PickedStudent)
	if err != nil {
		p.Logger(ctx).Error("userinfo: read links", "err", err)
		web.WriteJSON(w, http.StatusInternalServerError, map[string]string{"error": "server_error"})
		return
	}
	for k, v := range links {
		claims[k] = v
	}
	claims["sub"] = p.SubjectFor(a, ar.GetClient().GetID(), ar.GetClient().GetRedirectURIs())
	web.WriteJSON(w, http.StatusOK, claims)
}

// pushedAuthorize is the pushed authorization request endpoint (RFC 9126): a client posts its
// authorization request from its server, authenticated, and gets a request_uri to send the
// browser with. The request is checked as the authorization endpoint checks it.
func (p *Provider) pushedAuthorize(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var ar fosite.AuthorizeRequester
	var err error
	if !FormEncoded(r) || r.Method != http.MethodPost {
		err = fosite.ErrInvalidRequest.WithHint("A pushed authorization request is a POST of application/x-www-form-urlencoded (RFC 9126 §2.1).")
	} else {
		err = r.ParseForm()
	}
	if err == nil && r.Form.Has("request") {
		err = fosite.ErrRequestNotSupported.WithHint("Request objects are not supported; push the parameters themselves.")
	}
	if err == nil {
		ar, err = p.NewPushedAuthorizeRequest(ctx, r)
	}
	if err == nil {
		err = CheckExactRedirect(ar)
	}
	if err == nil {
		err = CheckPKCE(ar)
	}
	if err == nil && ar.GetRequestForm().Get("request_uri") != "" {
		err = fosite.ErrInvalidRequest.WithHint("A pushed request must not itself carry a request_uri.")
	}
	if web.IsUnavailable(err) {
		web.WriteUnavailableJSON(w)
		return
	}
	if err != nil {
		if errors.Is(err, fosite.ErrInvalidClient) {
			if _, _, basic := r.BasicAuth(); basic {
				w.Header().Set("WWW-Authenticate", `Basic realm="esia-broker", charset="UTF-8"`)
			}
		}
		p.WritePushedAuthorizeError(ctx, w, ar, err)
		return
	}
	resp, err := p.NewPushedAuthorizeResponse(ctx, ar, NewEmptySession())
	if err != nil {
		p.WritePushedAuthorizeError(ctx, w, ar, err)
		return
	}
	p.WritePushedAuthorizeResponse(ctx, w, ar, resp)
}
