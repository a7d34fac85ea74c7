package broker_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/storage"
)

// TestConsentCoversSubsets: consent given covers fewer scopes and fewer children; a new scope or
// a new child asks again (issue 16, item 7).
func TestConsentCoversSubsets(t *testing.T) {
	s := openSQLite(t)
	e := newLinkEnv(t, s)
	login := func(scope string) []string {
		br := newBrowser(t)
		var opts []oauth2.AuthCodeOption
		if scope != "" {
			opts = append(opts, oauth2.SetAuthURLParam("scope", scope))
		}
		return e.esiaLogin(t, br, "parent-two-kids", opts, e.acceptAll(t, br)).pages
	}
	if p := login("openid students"); len(p) != 1 {
		t.Fatalf("first login: %v", p)
	}
	if p := login("openid"); len(p) != 0 {
		t.Errorf("a subset of the scopes: %v", p)
	}
	if p := login("openid profile students"); len(p) != 1 {
		t.Errorf("a new scope was not asked: %v", p)
	}
	// A new child with the parent's SNILS on the card: asked again.
	ctx := context.Background()
	extra := day(testRoster) + day("s-9,sch-1,2В,Иванов,Егор,Игоревич,01.02.2019,,1,112-233-445 95,Иванова Мария Петровна\n")
	if _, err := e.link.Import(ctx, strings.NewReader(extra), linking.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	if p := login("openid profile students"); len(p) != 1 {
		t.Errorf("a new child was not asked: %v", p)
	}
	// Without the children's scope, the children do not matter.
	if _, err := s.SetStudentActive(ctx, "s-9", false); err != nil {
		t.Fatal(err)
	}
	if p := login("openid profile"); len(p) != 0 {
		t.Errorf("no students scope, one child fewer: %v", p)
	}
}

// TestAuthorizationResponseIss: the redirect back carries iss (RFC 9207), with a code or an
// error, and discovery says so (issue 16, item 6).
func TestAuthorizationResponseIss(t *testing.T) {
	h := newHarness(t, openSQLite(t))
	h.client("kiasuo", "secret-secret-secret")
	r := newRP(t, h, "kiasuo", "secret-secret-secret")
	var disc map[string]any
	_, body := getBody(t, http.DefaultClient, h.URL+"/.well-known/openid-configuration")
	if err := json.Unmarshal([]byte(body), &disc); err != nil || disc["authorization_response_iss_parameter_supported"] != true {
		t.Errorf("discovery: %v %s", err, body)
	}
	back := h.login(newBrowser(t), r.conf.AuthCodeURL("state-iss-1", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if back.Query().Get("code") == "" || back.Query().Get("iss") != h.URL {
		t.Errorf("success: %s", back)
	}
	br := newBrowser(t)
	resp, err := br.Get(r.conf.AuthCodeURL("state-iss-2", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("prompt", "none")))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc.Query().Get("error") != "login_required" || loc.Query().Get("iss") != h.URL {
		t.Errorf("error: %s", loc)
	}
}

// TestRevokeAnotherClientsToken: revoking a token issued to another client is refused with
// unauthorized_client and the token stays valid (RFC 7009 §2.1; fosite answers 200); bad client
// authentication by HTTP Basic gets WWW-Authenticate (issue 16, items 4 and 5).
func TestRevokeAnotherClientsToken(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		h := newHarness(t, s)
		h.client("kiasuo", "secret-secret-secret")
		h.client("asiou", "another-secret-secret")
		r := newRP(t, h, "kiasuo", "secret-secret-secret")
		tok, _ := r.loginAndExchange(t, newBrowser(t))
		revoke := func(id, secret, token string) (int, string, http.Header) {
			req, _ := http.NewRequest(http.MethodPost, h.URL+"/oauth2/revoke", strings.NewReader(url.Values{"token": {token}}.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(id, secret)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode, string(b), resp.Header
		}
		if code, body, _ := revoke("asiou", "another-secret-secret", tok.RefreshToken); code != http.StatusBadRequest || !strings.Contains(body, `"unauthorized_client"`) {
			t.Errorf("another client's token: %d %s", code, body)
		}
		if _, err := r.conf.TokenSource(r.ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err != nil {
			t.Errorf("the refused revocation revoked the token: %v", err)
		}
		if code, _, hdr := revoke("asiou", "wrong", tok.RefreshToken); code != http.StatusUnauthorized || !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("bad Basic authentication: %d %q", code, hdr.Get("WWW-Authenticate"))
		}
		if code, _, _ := revoke("kiasuo", "secret-secret-secret", tok.AccessToken); code != http.StatusOK {
			t.Errorf("own token: %d", code)
		}
	})
}

// TestLogoutByPOSTFromTheDiary: ID tokens carry sid; a diary's server POSTs the logout with the
// ID token (no cookies, no CSRF token) and the person's browser session ends; the request ends
// only that person's session (issue 16, item 1).
func TestLogoutByPOSTFromTheDiary(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		h := newHarness(t, s)
		h.client("kiasuo", "secret-secret-secret")
		r := newRP(t, h, "kiasuo", "secret-secret-secret")
		parentA := newBrowser(t)
		tokA, idA := r.loginAndExchange(t, parentA)
		var claims struct {
			SID string `json:"sid"`
		}
		if err := idA.Claims(&claims); err != nil || len(claims.SID) < 16 {
			t.Fatalf("ID token sid %q: %v", claims.SID, err)
		}
		h.Conn.Subject = "1000299999"
		parentB := newBrowser(t)
		r.loginAndExchange(t, parentB)
		loggedIn := func(br *browser) bool {
			resp, err := br.Get(r.conf.AuthCodeURL("state-check-1", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("prompt", "none")))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc, _ := url.Parse(resp.Header.Get("Location"))
			return loc.Query().Get("code") != ""
		}
		if !loggedIn(parentA) || !loggedIn(parentB) {
			t.Fatal("control: both are logged in")
		}
		post := func(v url.Values) int {
			resp, err := http.PostForm(h.URL+"/oauth2/logout", v)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if code := post(url.Values{"id_token_hint": {"not-a-token"}}); code != http.StatusBadRequest {
			t.Errorf("a forged hint: %d", code)
		}
		if code := post(url.Values{}); code != http.StatusForbidden || !loggedIn(parentA) {
			t.Errorf("no hint: %d, A logged in %v", code, loggedIn(parentA))
		}
		raw, _ := tokA.Extra("id_token").(string)
		if code := post(url.Values{"id_token_hint": {raw}}); code != http.StatusOK {
			t.Errorf("the diary's server logout: %d", code)
		}
		if loggedIn(parentA) {
			t.Error("A's browser session survived the diary's logout")
		}
		if !loggedIn(parentB) {
			t.Error("B's session ended too")
		}
	})
}
