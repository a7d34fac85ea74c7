package provider

import (
	"context"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"time"

	"github.com/esia-broker/esia-broker/pages"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/ory/fosite"
)

// MachineScopes are the scopes of the diary API: only a client's own (client credentials)
// tokens carry them, never a person's login.
var MachineScopes = []string{"roster:write", "links:write", "links:read", "invites:write", "events:read"}

// ErrAccountSelectionRequired is OpenID Connect's account_selection_required: prompt=none and the picker is needed.
var ErrAccountSelectionRequired = &fosite.RFC6749Error{ErrorField: "account_selection_required", DescriptionField: "The End-User is required to select a session at the Authorization Server.", CodeField: http.StatusBadRequest}

// CheckExactRedirect refuses a redirect URI that is not registered to the letter. fosite lets a
// loopback URI match on any port for every client; RFC 8252 §7.3 allows that only to native
// apps, which are public clients, so a confidential client gets an exact match only.
func CheckExactRedirect(ar fosite.AuthorizeRequester) error {
	raw := ar.GetRequestForm().Get("redirect_uri")
	if raw == "" || ar.GetClient().IsPublic() || slices.Contains(ar.GetClient().GetRedirectURIs(), raw) {
		return nil
	}
	return fosite.ErrInvalidRequest.WithHint("The redirect_uri is not registered for this client (a loopback port is matched only for public native clients).")
}

// CheckPKCE refuses, before anyone logs in, what fosite's PKCE handler would refuse after: a
// method other than S256, and a public client without a challenge.
func CheckPKCE(ar fosite.AuthorizeRequester) error {
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

// IssueCode grants the requested scopes, builds the token session, spends the login request
// and has fosite issue the code, in the transaction ctx carries (the caller's). authErr is an
// OAuth error for the client, err anything else; either leaves the transaction to be rolled
// back.
func (p *Provider) IssueCode(ctx context.Context, ar fosite.AuthorizeRequester, bs *storage.BrowserSession, account *storage.Account, client *storage.Client, lr *storage.LoginRequest, linked []storage.LinkedStudent) (resp fosite.AuthorizeResponder, authErr, err error) {
	for _, s := range ar.GetRequestedScopes() {
		ar.GrantScope(s)
	}
	ar.GrantAudience(client.ID)
	sess := userSession(account, p.SubjectFor(account, client.ID, client.RedirectURIs), bs, client, ar.GetGrantedScopes(), lr.CreatedAt, p.cfg.Tokens.IDTokenAlg, lr.StudentID)
	links, err := p.LinkClaimsFrom(ctx, account, ar.GetGrantedScopes(), lr.StudentID, linked)
	if err != nil {
		return nil, nil, err
	}
	applyClaims(sess, profileClaims(account, ar.GetGrantedScopes()), links)
	if _, err := p.store.ConsumeLoginRequest(ctx, lr.ID); err != nil {
		return nil, nil, pages.ExpiredLogin(err)
	}
	resp, authErr = p.NewAuthorizeResponse(ctx, ar, sess)
	if authErr != nil {
		return resp, authErr, nil
	}
	// The session's logout is to reach this diary, for as long as a refresh token may live.
	keep := max(p.cfg.Tokens.RefreshTokenLifespan, p.cfg.Session.Lifespan)
	if err := p.store.RecordSessionClient(ctx, account.ID, bs.SID, client.ID, time.Now().Add(keep)); err != nil {
		return nil, nil, err
	}
	return resp, nil, nil
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

// AuthorizeWriter wraps w for an authorization response.
func (p *Provider) AuthorizeWriter(w http.ResponseWriter) http.ResponseWriter {
	return issWriter{ResponseWriter: w, iss: p.Issuer()}
}

// PARURIPrefix starts every request_uri the pushed authorization request endpoint gives.
const PARURIPrefix = "urn:ietf:params:oauth:request_uri:"

// AuthorizeQuery is the authorization request as a login request keeps it, to be replayed at
// each step: for a pushed request, the pushed parameters themselves (its request_uri is used
// once), never a client credential.
func AuthorizeQuery(ar fosite.AuthorizeRequester) string {
	form := url.Values{}
	for k, v := range ar.GetRequestForm() {
		form[k] = v
	}
	for _, k := range []string{"request_uri", "client_secret", "client_assertion", "client_assertion_type"} {
		form.Del(k)
	}
	return form.Encode()
}

// FormEncoded tells whether a request's body, if it has one, is application/x-www-form-urlencoded:
// the only body the OAuth endpoints read (RFC 6749 §3.2, RFC 9126 §2.1). fosite would also read a
// multipart body, after the broker's own checks of the form.
func FormEncoded(r *http.Request) bool {
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

// ReplayAuthorize rebuilds a login request's authorization request, checked as the
// authorization endpoint checked it: exact redirect URI, never a request object.
func (p *Provider) ReplayAuthorize(ctx context.Context, query string) (fosite.AuthorizeRequester, error) {
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
	ar, err := p.NewAuthorizeRequest(ctx, replay)
	if err != nil {
		return ar, err
	}
	if err := CheckExactRedirect(ar); err != nil {
		return nil, err
	}
	return ar, nil
}
