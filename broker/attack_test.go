package broker_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/esia-broker/esia-broker/storage"
)

// getBearer calls u with token in the Authorization header (or, with query, in the query string).
func getBearer(t *testing.T, u, token string, query bool) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	if query {
		req.URL.RawQuery = url.Values{"access_token": {token}}.Encode()
	} else {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestTokenTypesAreNotConfused: only an access token, only in the Authorization header, is a
// bearer credential; only an ID token is an id_token_hint.
func TestTokenTypesAreNotConfused(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		h := newHarness(t, s)
		h.client("kiasuo", "secret-secret-secret")
		r := newRP(t, h, "kiasuo", "secret-secret-secret")
		tok, _ := r.loginAndExchange(t, newBrowser(t))
		ui := h.URL + "/oauth2/userinfo"
		if c := getBearer(t, ui, tok.AccessToken, false); c != http.StatusOK {
			t.Fatalf("userinfo with the access token: %d", c)
		}
		if c := getBearer(t, ui, tok.RefreshToken, false); c != http.StatusUnauthorized {
			t.Errorf("userinfo with a refresh token: %d, want 401", c)
		}
		if c := getBearer(t, ui, tok.AccessToken, true); c != http.StatusUnauthorized {
			t.Errorf("userinfo with the access token in the query string: %d, want 401", c)
		}
		if c := getBearer(t, ui, tok.Extra("id_token").(string), false); c != http.StatusUnauthorized {
			t.Errorf("userinfo with the ID token: %d, want 401", c)
		}
		// An access token is not an id_token_hint (a JWT one is signed with the same keys).
		hj := newHarness(t, openSQLite(t), "ESIA_BROKER_TOKENS_ACCESS_TOKEN_FORMAT=jwt")
		hj.client("kiasuo", "secret-secret-secret")
		rj := newRP(t, hj, "kiasuo", "secret-secret-secret")
		br := newBrowser(t)
		jt, _ := rj.loginAndExchange(t, br)
		stop := *br.Client
		stop.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := stop.Get(hj.URL + "/oauth2/logout?" + url.Values{"id_token_hint": {jt.AccessToken}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("an access token as id_token_hint: %d, want 400", resp.StatusCode)
		}
		if c := getBearer(t, hj.URL+"/oauth2/userinfo", jt.AccessToken, false); c != http.StatusOK {
			t.Errorf("the session was ended by an access token posing as a hint (userinfo %d)", c)
		}
	})
}

// TestFailedTokenRequestChangesNothing: a code issued with an S256 challenge, exchanged by a
// confidential client without the verifier, fails — and so does the identical next request.
func TestFailedTokenRequestChangesNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		h := newHarness(t, s)
		h.client("kiasuo", "secret-secret-secret")
		r := newRP(t, h, "kiasuo", "secret-secret-secret")
		verifier := oauth2.GenerateVerifier()
		back := h.login(newBrowser(t), r.conf.AuthCodeURL("state-12345678", oauth2.S256ChallengeOption(verifier), oidc.Nonce("nonce-12345678")))
		code := back.Query().Get("code")
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {rpRedirect}}
		for i := range 2 {
			if c, m := postForm(t, h.URL+"/oauth2/token", form, "kiasuo", "secret-secret-secret"); c != http.StatusBadRequest {
				t.Fatalf("exchange %d without the verifier: %d %v", i+1, c, m)
			}
		}
		form.Set("code_verifier", verifier)
		if c, m := postForm(t, h.URL+"/oauth2/token", form, "kiasuo", "secret-secret-secret"); c != http.StatusOK {
			t.Errorf("the right exchange after the failed ones: %d %v", c, m)
		}
	})
}

// TestIntrospectionOnlyForItsOwnTokens: another client learns nothing of a token; a public
// client or a bearer token is no client authentication; a refresh token reports its own expiry.
func TestIntrospectionOnlyForItsOwnTokens(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		h := newHarness(t, s)
		h.client("kiasuo", "secret-secret-secret")
		h.client("asiou", "other-secret-secret")
		h.client("mobile", "")
		r := newRP(t, h, "kiasuo", "secret-secret-secret")
		tok, _ := r.loginAndExchange(t, newBrowser(t))
		if !h.introspect(t, tok.AccessToken, "kiasuo", "secret-secret-secret") {
			t.Fatal("the token's own client sees it inactive")
		}
		if h.introspect(t, tok.AccessToken, "asiou", "other-secret-secret") {
			t.Error("another client introspected the token")
		}
		if c, _ := postForm(t, h.URL+"/oauth2/introspect", url.Values{"token": {tok.AccessToken}, "client_id": {"mobile"}}, "", ""); c != http.StatusUnauthorized {
			t.Errorf("a public client introspected: %d", c)
		}
		req, _ := http.NewRequest(http.MethodPost, h.URL+"/oauth2/introspect", strings.NewReader(url.Values{"token": {tok.AccessToken}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("an end user's access token as introspection credential: %d", resp.StatusCode)
		}
		c, m := postForm(t, h.URL+"/oauth2/introspect", url.Values{"token": {tok.AccessToken}}, "kiasuo", "wrong")
		if c != http.StatusUnauthorized || m["error"] != "invalid_client" {
			t.Errorf("a wrong secret: %d %v", c, m)
		}
		_, at := postForm(t, h.URL+"/oauth2/introspect", url.Values{"token": {tok.AccessToken}}, "kiasuo", "secret-secret-secret")
		_, rt := postForm(t, h.URL+"/oauth2/introspect", url.Values{"token": {tok.RefreshToken}, "token_type_hint": {"refresh_token"}}, "kiasuo", "secret-secret-secret")
		if rt["active"] != true || rt["token_use"] != "refresh_token" || at["token_use"] != "access_token" {
			t.Fatalf("introspection: access %v refresh %v", at, rt)
		}
		if rexp, aexp := rt["exp"].(float64), at["exp"].(float64); rexp <= aexp {
			t.Errorf("the refresh token reports exp %v, not beyond the access token's %v", rexp, aexp)
		}
	})
}

// TestLoopbackPortOnlyForPublicClients: a confidential client gets its redirect URI to the
// letter; only a public (native) client's loopback URI matches on any port.
func TestLoopbackPortOnlyForPublicClients(t *testing.T) {
	h := newHarness(t, openSQLite(t))
	conf := h.client("kiasuo", "secret-secret-secret")
	conf.RedirectURIs = []string{"http://127.0.0.1:8765/cb"}
	if err := h.Store.UpdateClient(context.Background(), conf); err != nil {
		t.Fatal(err)
	}
	pub := h.client("native", "")
	pub.RedirectURIs = []string{"http://127.0.0.1:8765/cb"}
	if err := h.Store.UpdateClient(context.Background(), pub); err != nil {
		t.Fatal(err)
	}
	try := func(client string) *http.Response {
		q := url.Values{"client_id": {client}, "response_type": {"code"}, "scope": {"openid"}, "redirect_uri": {"http://127.0.0.1:9999/cb"},
			"state": {"state-12345678"}, "code_challenge": {"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"}, "code_challenge_method": {"S256"}}
		resp, err := newBrowser(t).Get(h.URL + "/oauth2/authorize?" + q.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := try("kiasuo"); resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
		t.Errorf("a confidential client's loopback URI on another port: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp := try("native"); resp.StatusCode != http.StatusOK {
		t.Errorf("a public native client's loopback URI on another port: %d", resp.StatusCode)
	}
}

// TestPlantedBrowserCookieIsRefused: a browser id the broker did not issue is replaced, so a
// CSRF token computed from a planted value is worth nothing; the cookies carry __Host- when
// secure.
func TestPlantedBrowserCookieIsRefused(t *testing.T) {
	h := newHarness(t, openSQLite(t))
	h.client("kiasuo", "secret-secret-secret")
	r := newRP(t, h, "kiasuo", "secret-secret-secret")
	br := newBrowser(t)
	u, _ := url.Parse(h.URL)
	planted := strings.Repeat("A", 43)
	br.Jar.SetCookies(u, []*http.Cookie{{Name: "esia_broker_browser", Value: planted, Path: "/"}})
	resp, err := br.Get(r.conf.AuthCodeURL("state-12345678", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	for _, c := range br.Jar.Cookies(u) {
		if c.Name == "esia_broker_browser" && c.Value == planted {
			t.Error("the planted browser id was kept")
		}
	}
	hs := newHarness(t, openSQLite(t), "ESIA_BROKER_SESSION_SECURE_COOKIE=true")
	hs.client("kiasuo", "secret-secret-secret")
	rs := newRP(t, hs, "kiasuo", "secret-secret-secret")
	resp, err = newBrowser(t).Get(rs.conf.AuthCodeURL("state-12345678", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if sc := resp.Header.Get("Set-Cookie"); !strings.HasPrefix(sc, "__Host-esia_broker_browser=") || !strings.Contains(sc, "Secure") {
		t.Errorf("secure cookie: %q", sc)
	}
}

// TestClientCredentialsTokenExpires: a client-credentials access token carries its exp (fosite
// refuses a JWT past it; before, the claim was missing and the token lived until the row was
// cleaned up, about an hour).
func TestClientCredentialsTokenExpires(t *testing.T) {
	h := newHarness(t, openSQLite(t))
	c := h.client("diary", "secret-secret-secret", "openid", "roster:write")
	c.GrantTypes = []string{"client_credentials"}
	if err := h.Store.UpdateClient(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	code, m := postForm(t, h.URL+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"roster:write"}}, "diary", "secret-secret-secret")
	if code != 200 {
		t.Fatalf("client credentials: %d %v", code, m)
	}
	claims, err := jwtPayload(m["access_token"].(string))
	if err != nil {
		t.Fatal(err)
	}
	exp, _ := claims["exp"].(float64)
	iat, _ := claims["iat"].(float64)
	if exp == 0 || exp-iat < 800 || exp-iat > 1000 {
		t.Errorf("exp %v, iat %v: want an exp 15 minutes on", exp, iat)
	}
	_, in := postForm(t, h.URL+"/oauth2/introspect", url.Values{"token": {m["access_token"].(string)}}, "diary", "secret-secret-secret")
	if in["exp"] == nil {
		t.Errorf("introspection without exp: %v", in)
	}
}
