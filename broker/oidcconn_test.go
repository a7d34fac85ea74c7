package broker_test

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/esia-broker/esia-broker/upstream"
	"github.com/esia-broker/esia-broker/upstream/oidcconn"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/esia-broker/esia-broker/storage"
)

// TestGenericOIDCUpstream logs in to broker B through broker A acting as a standard OpenID
// provider (as a certified ESIA gateway would), with configurable claim names.
func TestGenericOIDCUpstream(t *testing.T) {
	tests := []struct {
		name        string
		trusted     string
		wantRefusal bool
	}{
		{"admitted", "", false},
		{"trusted claim required and missing", "esia_trusted", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			provider := newHarness(t, openSQLite(t)) // A: the upstream provider, fake login behind it
			var sB *storage.Store = openSQLite(t)
			b := newHarnessWith(t, sB, func(issuer string) []upstream.Connector {
				provider.client("broker-b", "b-secret-b-secret", "openid", "profile")
				c := provider.Store
				cl, _ := c.Client(t.Context(), "broker-b")
				cl.RedirectURIs = []string{issuer + "/oidc/callback"}
				if err := c.UpdateClient(t.Context(), cl); err != nil {
					t.Fatal(err)
				}
				conn, err := oidcconn.Config{
					Issuer: provider.URL, ClientID: "broker-b", ClientSecret: "b-secret-b-secret", RedirectURI: issuer + "/oidc/callback",
					Scopes: []string{"openid", "profile"}, Claims: oidcconn.Claims{Trusted: tc.trusted},
				}.Open()
				if err != nil {
					t.Fatal(err)
				}
				return []upstream.Connector{conn}
			}, "ESIA_BROKER_SESSION_COOKIE_NAME=b_session", "ESIA_BROKER_SESSION_BROWSER_COOKIE_NAME=b_browser") // one host, two brokers: cookies apart
			b.client("kiasuo", "secret-secret-secret")
			r := newRP(t, b, "kiasuo", "secret-secret-secret")
			br := newBrowser(t)
			verifier := oauth2.GenerateVerifier()
			follow := func(u string, link *regexp.Regexp) string {
				resp, err := br.Get(u)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				m := link.FindSubmatch(body)
				if m == nil {
					t.Fatalf("no link %s at %s: %s", link, u, body)
				}
				return strings.ReplaceAll(string(m[1]), "&amp;", "&")
			}
			bLink := follow(r.conf.AuthCodeURL("state-12345678", oauth2.S256ChallengeOption(verifier), oidc.Nonce("nonce-12345678")), regexp.MustCompile(`href="(/login/oidc\?login=[^"]+)"`))
			aLink := follow(b.URL+bLink, loginLink)
			resp0, err := br.Get(provider.URL + aLink)
			if err != nil {
				t.Fatal(err)
			}
			resp, body := acceptConsents(t, br, resp0)
			if tc.wantRefusal {
				if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "не подтверждена") {
					t.Errorf("%d %s", resp.StatusCode, body)
				}
				if n, _ := sB.CountAccounts(t.Context()); n != 0 {
					t.Errorf("%d accounts written at B", n)
				}
				return
			}
			code := ""
			if loc := resp.Header.Get("Location"); strings.HasPrefix(loc, rpRedirect) {
				code = regexp.MustCompile(`code=([^&]+)`).FindStringSubmatch(loc)[1]
			}
			if code == "" {
				t.Fatalf("no code from B: %d %s", resp.StatusCode, body)
			}
			tok, err := r.conf.Exchange(r.ctx, code, oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatal(err)
			}
			idt, err := r.verifier.Verify(r.ctx, tok.Extra("id_token").(string))
			if err != nil {
				t.Fatal(err)
			}
			var c struct{ Name, Birthdate string }
			_ = idt.Claims(&c)
			if c.Name != "Иванова Мария Петровна" || c.Birthdate != day("1985-03-04") {
				t.Errorf("claims through the OIDC upstream: %+v", c)
			}
		})
	}
}
