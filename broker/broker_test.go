package broker_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/storage/storagetest"
)

func forEachStore(t *testing.T, fn func(t *testing.T, s *storage.Store)) {
	for name, open := range storagetest.Dialects() {
		t.Run(name, func(t *testing.T) { fn(t, open(t)) })
	}
}

type rp struct {
	h        *harness
	provider *oidc.Provider
	conf     oauth2.Config
	verifier *oidc.IDTokenVerifier
	ctx      context.Context
}

func newRP(t *testing.T, h *harness, clientID, secret string, scopes ...string) *rp {
	t.Helper()
	ctx := context.Background()
	p, err := oidc.NewProvider(ctx, h.URL)
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	if len(scopes) == 0 {
		scopes = []string{oidc.ScopeOpenID, "profile", oidc.ScopeOfflineAccess}
	}
	return &rp{h: h, provider: p, ctx: ctx,
		conf:     oauth2.Config{ClientID: clientID, ClientSecret: secret, Endpoint: p.Endpoint(), RedirectURL: rpRedirect, Scopes: scopes},
		verifier: p.Verifier(&oidc.Config{ClientID: clientID, SupportedSigningAlgs: []string{"RS256", "ES256"}}),
	}
}

// loginAndExchange runs a full code flow with PKCE S256 and nonce and returns the tokens and the
// verified ID token.
func (r *rp) loginAndExchange(t *testing.T, br *browser, extra ...oauth2.AuthCodeOption) (*oauth2.Token, *oidc.IDToken) {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	state, nonce := "state-"+oauth2.GenerateVerifier()[:10], "nonce-"+oauth2.GenerateVerifier()[:10]
	opts := append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce)}, extra...)
	back := r.h.login(br, r.conf.AuthCodeURL(state, opts...))
	if back.Query().Get("state") != state {
		t.Fatalf("state not returned: %s", back)
	}
	code := back.Query().Get("code")
	if code == "" {
		t.Fatalf("no code: %s", back)
	}
	tok, err := r.conf.Exchange(r.ctx, code, oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := r.verifier.Verify(r.ctx, raw)
	if err != nil {
		t.Fatalf("id token does not verify: %v", err)
	}
	if idt.Nonce != nonce {
		t.Errorf("nonce = %q, want %q", idt.Nonce, nonce)
	}
	return tok, idt
}

// postForm posts a form, with HTTP Basic client authentication when user is set. It is safe to
// call from goroutines.
func postForm(t *testing.T, u string, form url.Values, user, pass string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if user != "" {
		req.SetBasicAuth(url.QueryEscape(user), url.QueryEscape(pass))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		// Errorf, not Fatal: load goroutines call postForm too; a 0 status fails their checks.
		t.Errorf("POST %s: %v", u, err)
		return 0, nil
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(body, &m)
	return resp.StatusCode, m
}

func (h *harness) introspect(t *testing.T, token, clientID, secret string) bool {
	t.Helper()
	code, m := postForm(t, h.URL+"/oauth2/introspect", url.Values{"token": {token}}, clientID, secret)
	if code != http.StatusOK {
		t.Fatalf("introspect: %d %v", code, m)
	}
	active, _ := m["active"].(bool)
	return active
}

func TestRelyingPartyFullFlow(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		h := newHarness(t, s)
		h.client("kiasuo", "s3cret-s3cret-s3cret")
		r := newRP(t, h, "kiasuo", "s3cret-s3cret-s3cret")
		tok, idt := r.loginAndExchange(t, newBrowser(t))

		var claims struct {
			Name       string   `json:"name"`
			FamilyName string   `json:"family_name"`
			Birthdate  string   `json:"birthdate"`
			AMR        []string `json:"amr"`
			AuthTime   int64    `json:"auth_time"`
		}
		if err := idt.Claims(&claims); err != nil {
			t.Fatal(err)
		}
		if claims.Name != "Иванова Мария Петровна" || claims.Birthdate != day("1985-03-04") || len(claims.AMR) != 1 || claims.AMR[0] != "esia" || claims.AuthTime == 0 {
			t.Errorf("id token claims = %+v", claims)
		}
		acct, err := s.AccountByUpstream(context.Background(), "fake", "1000299654")
		if err != nil || idt.Subject != acct.ID {
			t.Errorf("sub = %q, account %+v (%v)", idt.Subject, acct, err)
		}
		if tok.RefreshToken == "" {
			t.Fatal("no refresh token with offline_access")
		}

		// The access token is an RFC 9068 JWT signed with ES256 and published in JWKS.
		jws, err := jose.ParseSignedCompact(tok.AccessToken, []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
		if err != nil {
			t.Fatalf("access token is not a JWS: %v", err)
		}
		hdr := jws.Signatures[0].Header
		if hdr.Algorithm != "ES256" || hdr.ExtraHeaders["typ"] != "at+jwt" || hdr.KeyID == "" {
			t.Errorf("access token header = %+v", hdr)
		}
		var set jose.JSONWebKeySet
		resp, err := http.Get(h.URL + "/oauth2/jwks")
		if err != nil {
			t.Fatal(err)
		}
		err = json.NewDecoder(resp.Body).Decode(&set)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("JWKS: %v", err)
		}
		keys := set.Key(hdr.KeyID)
		if len(keys) != 1 {
			t.Fatalf("kid %s not in JWKS", hdr.KeyID)
		}
		payload, err := jws.Verify(keys[0].Key)
		if err != nil {
			t.Fatalf("access token does not verify against JWKS: %v", err)
		}
		var at map[string]any
		if err := json.Unmarshal(payload, &at); err != nil {
			t.Fatalf("access token payload: %v", err)
		}
		if at["client_id"] != "kiasuo" || at["sub"] != idt.Subject || at["iss"] != h.URL || !strings.Contains(at["scope"].(string), "openid") {
			t.Errorf("access token claims = %v", at)
		}

		// userinfo
		ui, err := r.provider.UserInfo(r.ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			t.Fatalf("userinfo: %v", err)
		}
		var uic map[string]any
		_ = ui.Claims(&uic)
		if ui.Subject != idt.Subject || uic["family_name"] != "Иванова" {
			t.Errorf("userinfo = %v", uic)
		}

		// refresh
		old := *tok
		expired := *tok
		expired.Expiry = time.Now().Add(-time.Minute)
		tok2, err := r.conf.TokenSource(r.ctx, &expired).Token()
		if err != nil {
			t.Fatalf("refresh: %v", err)
		}
		if tok2.AccessToken == old.AccessToken || tok2.RefreshToken == old.RefreshToken || tok2.RefreshToken == "" {
			t.Error("refresh did not rotate the tokens")
		}
		if raw, _ := tok2.Extra("id_token").(string); raw != "" {
			if _, err := r.verifier.Verify(r.ctx, raw); err != nil {
				t.Errorf("refreshed id token: %v", err)
			}
		} else {
			t.Error("no id token on refresh")
		}
		if h.introspect(t, old.AccessToken, "kiasuo", "s3cret-s3cret-s3cret") {
			t.Error("the access token of a rotated refresh token is still active")
		}
		if !h.introspect(t, tok2.AccessToken, "kiasuo", "s3cret-s3cret-s3cret") {
			t.Error("the new access token is not active")
		}

		// revoke the refresh token: the whole grant goes.
		code, m := postForm(t, h.URL+"/oauth2/revoke", url.Values{"token": {tok2.RefreshToken}, "token_type_hint": {"refresh_token"}}, "kiasuo", "s3cret-s3cret-s3cret")
		if code != http.StatusOK {
			t.Fatalf("revoke: %d %v", code, m)
		}
		if h.introspect(t, tok2.AccessToken, "kiasuo", "s3cret-s3cret-s3cret") {
			t.Error("access token active after revoking its refresh token")
		}
		if h.introspect(t, tok2.RefreshToken, "kiasuo", "s3cret-s3cret-s3cret") {
			t.Error("refresh token active after revocation")
		}
		if _, err := r.provider.UserInfo(r.ctx, oauth2.StaticTokenSource(tok2)); err == nil {
			t.Error("userinfo accepted a revoked access token")
		}

		// A second login in the same browser reuses the session: no start page.
		br := newBrowser(t)
		r.loginAndExchange(t, br)
		back := h.login(br, r.conf.AuthCodeURL("state-second", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		if back.Query().Get("code") == "" {
			t.Errorf("second authorization with a session did not return a code: %s", back)
		}
	})
}

func TestPublicClientAndPKCE(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		h := newHarness(t, s)
		h.client("mobile", "")
		r := newRP(t, h, "mobile", "")
		if _, idt := r.loginAndExchange(t, newBrowser(t)); idt.Subject == "" {
			t.Fatal("no subject")
		}
		tests := []struct {
			name  string
			extra url.Values
			want  string
		}{
			{"missing PKCE", url.Values{}, "invalid_request"},
			{"plain PKCE", url.Values{"code_challenge": {"abcdefghijabcdefghijabcdefghijabcdefghij123"}, "code_challenge_method": {"plain"}}, "invalid_request"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				q := url.Values{"client_id": {"mobile"}, "response_type": {"code"}, "scope": {"openid"}, "redirect_uri": {rpRedirect}, "state": {"state-12345678"}, "nonce": {"nonce-12345678"}}
				for k, v := range tc.extra {
					q[k] = v
				}
				resp, err := newBrowser(t).Get(h.URL + "/oauth2/authorize?" + q.Encode())
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				loc, _ := url.Parse(resp.Header.Get("Location"))
				if resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound || loc.Query().Get("error") != tc.want {
					t.Errorf("status %d, location %s; want a redirect with error=%s", resp.StatusCode, loc, tc.want)
				}
			})
		}
		// The code exchange without the verifier fails.
		br := newBrowser(t)
		back := h.login(br, r.conf.AuthCodeURL("state-abcdefgh", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oidc.Nonce("nonce-abcdefgh")))
		if _, err := r.conf.Exchange(r.ctx, back.Query().Get("code")); err == nil {
			t.Error("exchange without code_verifier succeeded")
		}
	})
}

func TestBadAuthorizeRequestsShowAPageNotARedirect(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		h := newHarness(t, s)
		h.client("kiasuo", "secret-secret-secret")
		tests := []struct {
			name string
			q    url.Values
		}{
			{"unknown client", url.Values{"client_id": {"nobody"}, "response_type": {"code"}, "redirect_uri": {rpRedirect}, "scope": {"openid"}, "state": {"state-12345678"}}},
			{"unregistered redirect uri", url.Values{"client_id": {"kiasuo"}, "response_type": {"code"}, "redirect_uri": {"https://evil.example/cb"}, "scope": {"openid"}, "state": {"state-12345678"}}},
			{"redirect uri with extra path", url.Values{"client_id": {"kiasuo"}, "response_type": {"code"}, "redirect_uri": {rpRedirect + "/x"}, "scope": {"openid"}, "state": {"state-12345678"}}},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				resp, err := newBrowser(t).Get(h.URL + "/oauth2/authorize?" + tc.q.Encode())
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
					t.Errorf("status %d location %q; want 400 and no redirect", resp.StatusCode, resp.Header.Get("Location"))
				}
				if !strings.Contains(string(body), `lang="ru"`) || !strings.Contains(string(body), "Ошибка запроса на вход") {
					t.Errorf("not the Russian error page: %s", body)
				}
			})
		}
	})
}

func TestTokenEndpointBadInput(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		h := newHarness(t, s)
		h.client("kiasuo", "right-secret-right")
		r := newRP(t, h, "kiasuo", "right-secret-right")

		t.Run("wrong client secret", func(t *testing.T) {
			code, m := postForm(t, h.URL+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, "kiasuo", "wrong-secret")
			if code != http.StatusUnauthorized || m["error"] != "invalid_client" {
				t.Errorf("%d %v; want 401 invalid_client", code, m)
			}
		})
		t.Run("unknown client", func(t *testing.T) {
			code, m := postForm(t, h.URL+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, "nobody", "x")
			if code != http.StatusUnauthorized || m["error"] != "invalid_client" {
				t.Errorf("%d %v; want 401 invalid_client", code, m)
			}
		})
		t.Run("replayed code revokes the first grant", func(t *testing.T) {
			verifier := oauth2.GenerateVerifier()
			back := h.login(newBrowser(t), r.conf.AuthCodeURL("state-12345678", oauth2.S256ChallengeOption(verifier), oidc.Nonce("nonce-12345678")))
			code := back.Query().Get("code")
			tok, err := r.conf.Exchange(r.ctx, code, oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.conf.Exchange(r.ctx, code, oauth2.VerifierOption(verifier)); err == nil {
				t.Fatal("second use of a code succeeded")
			} else if re, ok := err.(*oauth2.RetrieveError); !ok || re.ErrorCode != "invalid_grant" {
				t.Errorf("second use: %v; want invalid_grant", err)
			}
			if h.introspect(t, tok.AccessToken, "kiasuo", "right-secret-right") {
				t.Error("access token of a replayed code is still active")
			}
			if _, err := r.conf.TokenSource(r.ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil {
				t.Error("refresh token of a replayed code still works")
			}
		})
		t.Run("client credentials", func(t *testing.T) {
			cc := clientcredentials.Config{ClientID: "kiasuo", ClientSecret: "right-secret-right", TokenURL: h.URL + "/oauth2/token", Scopes: []string{"profile"}}
			tok, err := cc.Token(context.Background())
			if err != nil {
				t.Fatalf("client credentials: %v", err)
			}
			if !h.introspect(t, tok.AccessToken, "kiasuo", "right-secret-right") {
				t.Error("client credentials token is not active")
			}
			cc.Scopes = []string{"roster:write"}
			if _, err := cc.Token(context.Background()); err == nil {
				t.Error("a scope the client is not registered for was granted")
			}
		})
	})
}

func TestConcurrentRefreshWithinGraceAndReuseAfter(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		h := newHarness(t, s, "ESIA_BROKER_TOKENS_REFRESH_GRACE_PERIOD=30s")
		h.client("kiasuo", "secret-secret-secret")
		r := newRP(t, h, "kiasuo", "secret-secret-secret")
		tok, _ := r.loginAndExchange(t, newBrowser(t))

		const n = 20
		type result struct {
			code int
			body map[string]any
		}
		results := make(chan result, n)
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, m := postForm(t, h.URL+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}, "kiasuo", "secret-secret-secret")
				results <- result{code, m}
			}()
		}
		wg.Wait()
		close(results)
		var fresh []string
		for res := range results {
			switch {
			case res.code == http.StatusOK:
				rt, _ := res.body["refresh_token"].(string)
				if rt == "" {
					t.Errorf("200 without refresh token: %v", res.body)
				}
				fresh = append(fresh, rt)
			case res.code >= 500:
				t.Errorf("concurrent refresh got %d: %v", res.code, res.body)
			default:
				if res.body["error"] == nil {
					t.Errorf("concurrent refresh got %d without an OAuth error: %v", res.code, res.body)
				}
			}
		}
		if len(fresh) == 0 {
			t.Fatal("no concurrent refresh succeeded")
		}
		t.Logf("%d of %d concurrent refreshes succeeded", len(fresh), n)
		if len(fresh) != n {
			t.Errorf("inside the grace window every refresh should succeed; %d did", len(fresh))
		}

		// After the window, reuse of the old token fails and revokes the whole family.
		s.SetClock(func() time.Time { return time.Now().Add(time.Minute) })
		code, m := postForm(t, h.URL+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}, "kiasuo", "secret-secret-secret")
		if code != http.StatusBadRequest || m["error"] != "invalid_grant" {
			t.Fatalf("reuse after the window: %d %v; want 400 invalid_grant", code, m)
		}
		code, m = postForm(t, h.URL+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {fresh[0]}}, "kiasuo", "secret-secret-secret")
		if code == http.StatusOK {
			t.Errorf("a token of the revoked family still refreshes: %v", m)
		}
	})
}

func TestKeyRotationKeepsOldTokensVerifiable(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		h := newHarness(t, s)
		h.client("kiasuo", "secret-secret-secret")
		r := newRP(t, h, "kiasuo", "secret-secret-secret")
		tok, before := r.loginAndExchange(t, newBrowser(t))
		rawBefore, _ := tok.Extra("id_token").(string)
		kidOf := func(raw string) string {
			j, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
			if err != nil {
				t.Fatal(err)
			}
			return j.Signatures[0].Header.KeyID
		}
		oldKid := kidOf(rawBefore)
		newKid, err := h.Broker.Keys().Rotate(context.Background(), "RS256")
		if err != nil {
			t.Fatalf("rotate: %v", err)
		}
		// A fresh verifier (empty JWKS cache) still verifies the token signed before rotation.
		p, _ := oidc.NewProvider(context.Background(), h.URL)
		if _, err := p.Verifier(&oidc.Config{ClientID: "kiasuo"}).Verify(context.Background(), rawBefore); err != nil {
			t.Errorf("token signed before rotation no longer verifies: %v", err)
		}
		tok2, after := r.loginAndExchange(t, newBrowser(t))
		raw2, _ := tok2.Extra("id_token").(string)
		if kidOf(raw2) != newKid || newKid == oldKid {
			t.Errorf("after rotation signed with %s, want %s (old %s)", kidOf(raw2), newKid, oldKid)
		}
		if before.Subject != after.Subject {
			t.Error("subject changed across logins")
		}
		// A second replica (another broker on the same store) picks up the rotation and verifies both.
		h2 := newHarness(t, s)
		p2, _ := oidc.NewProvider(context.Background(), h2.URL)
		var set struct{ Keys []struct{ Kid string } }
		_ = p2.Claims(&set)
		resp, _ := http.Get(h2.URL + "/oauth2/jwks")
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), oldKid) || !strings.Contains(string(body), newKid) {
			t.Errorf("second replica's JWKS lacks a key: %s", body)
		}
	})
}

func TestPromptNoneAndLogout(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		h := newHarness(t, s)
		h.client("kiasuo", "secret-secret-secret")
		r := newRP(t, h, "kiasuo", "secret-secret-secret")
		br := newBrowser(t)

		noneURL := r.conf.AuthCodeURL("state-12345678", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("prompt", "none"))
		resp, err := br.Get(noneURL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if loc.Query().Get("error") != "login_required" {
			t.Errorf("prompt=none without a session: %d %s; want login_required", resp.StatusCode, loc)
		}

		tok, _ := r.loginAndExchange(t, br)
		idToken, _ := tok.Extra("id_token").(string)
		// prompt=login forces a new trip upstream even with a session.
		h.Conn.Subject = "1000299654"
		back := h.login(br, r.conf.AuthCodeURL("state-abcdefgh", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("prompt", "login")))
		if back.Query().Get("code") == "" {
			t.Errorf("prompt=login: %s", back)
		}

		// Logout to an unregistered address is refused with a page.
		bad := h.URL + "/oauth2/logout?" + url.Values{"id_token_hint": {idToken}, "post_logout_redirect_uri": {"https://evil.example/"}}.Encode()
		resp, _ = br.Get(bad)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("logout to an unregistered uri: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		good := h.URL + "/oauth2/logout?" + url.Values{"id_token_hint": {idToken}, "post_logout_redirect_uri": {rpPostLogout}, "state": {"bye-1"}}.Encode()
		resp, _ = br.Get(good)
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != rpPostLogout+"?state=bye-1" {
			t.Errorf("logout: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
		// The session is gone: prompt=none now fails.
		resp, _ = br.Get(noneURL)
		resp.Body.Close()
		loc, _ = url.Parse(resp.Header.Get("Location"))
		if loc.Query().Get("error") != "login_required" {
			t.Errorf("after logout prompt=none gave %s", loc)
		}
	})
}

func TestOperationalEndpointsAndHeaders(t *testing.T) {
	h := newHarness(t, storagetest.Open(t, storagetest.NewSQLiteDSN(t)))
	// Metrics and folder listings are not served on the public listener.
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 404, "/static/": 404, "/static/style.css": 200, "/.well-known/openid-configuration": 200, "/nope": 404} {
		resp, err := http.Get(h.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("%s: %d, want %d", path, resp.StatusCode, want)
		}
		for hdr, v := range map[string]string{"Referrer-Policy": "no-referrer", "X-Content-Type-Options": "nosniff"} {
			if resp.Header.Get(hdr) != v {
				t.Errorf("%s: %s = %q", path, hdr, resp.Header.Get(hdr))
			}
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") || !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("%s: CSP = %q", path, csp)
		}
		if path == "/.well-known/openid-configuration" && !strings.Contains(string(body), `"end_session_endpoint"`) {
			t.Errorf("discovery lacks end_session_endpoint: %s", body)
		}
	}
	rec := httptest.NewRecorder()
	h.Broker.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	if !strings.Contains(body, `esia_broker_http_requests_total{code="200",route="healthz"} 1`) {
		t.Errorf("metrics lack the healthz request: %s", body)
	}
}

func TestRegionBranding(t *testing.T) {
	logo := filepath.Join(t.TempDir(), "logo.png")
	png := []byte("\x89PNG\r\n\x1a\n0000")
	if err := os.WriteFile(logo, png, 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, storagetest.Open(t, storagetest.NewSQLiteDSN(t)),
		"ESIA_BROKER_REGION_NAME=Электронный дневник КИАСУО", "ESIA_BROKER_REGION_LOGO_FILE="+logo,
		"ESIA_BROKER_REGION_SUPPORT_PHONE=8 980 707 73 07", "ESIA_BROKER_REGION_SUPPORT_EMAIL=asiou7@yandex.ru")
	resp, err := http.Get(h.URL + "/no-such-page")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"Электронный дневник КИАСУО", `src="/brand/logo" alt="Электронный дневник КИАСУО"`, "8 980 707 73 07", "mailto:asiou7@yandex.ru"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("page lacks %q", want)
		}
	}
	resp, err = http.Get(h.URL + "/brand/logo")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(got) != string(png) || resp.Header.Get("Content-Type") != "image/png" {
		t.Errorf("logo: %d %q %s", resp.StatusCode, got, resp.Header.Get("Content-Type"))
	}
}
