package provider

import (
	"strings"
	"testing"

	"github.com/esia-broker/esia-broker/storage"
)

func TestValidateClient(t *testing.T) {
	good := func() *storage.Client {
		return &storage.Client{ID: "kiasuo", RedirectURIs: []string{"https://diary.example/cb"}, GrantTypes: []string{"authorization_code", "refresh_token"}, Scopes: []string{"openid", "profile"}}
	}
	tests := []struct {
		name   string
		mutate func(c *storage.Client)
		want   string
	}{
		{"valid", func(*storage.Client) {}, ""},
		{"loopback http", func(c *storage.Client) { c.RedirectURIs = []string{"http://127.0.0.1:8080/cb"} }, ""},
		{"app scheme", func(c *storage.Client) { c.RedirectURIs = []string{"ru.region.diary:/cb"} }, ""},
		{"bad id", func(c *storage.Client) { c.ID = "Кто <b>" }, "id:"},
		{"display name", func(c *storage.Client) {
			c.Name = "Электронный дневник «КИАСУО» (Красноярск)"
		}, ""},
		{"bidi in the name", func(c *storage.Client) { c.Name = "Дневник \u202eОУСАИК" }, "name:"},
		{"zero-width in the name", func(c *storage.Client) { c.Name = "КИА\u200bСУО" }, "name:"},
		{"plain http", func(c *storage.Client) { c.RedirectURIs = []string{"http://diary.example/cb"} }, "http is allowed only on loopback"},
		{"fragment", func(c *storage.Client) { c.RedirectURIs = []string{"https://diary.example/cb#x"} }, "fragment"},
		{"relative", func(c *storage.Client) { c.RedirectURIs = []string{"/cb"} }, "absolute"},
		{"javascript", func(c *storage.Client) { c.RedirectURIs = []string{"javascript:alert(1)"} }, "absolute"},
		{"unknown grant", func(c *storage.Client) { c.GrantTypes = []string{"password"} }, "grant type \"password\""},
		{"unknown scope", func(c *storage.Client) { c.Scopes = []string{"admin"} }, "scope \"admin\""},
		{"public client credentials", func(c *storage.Client) { c.Public = true; c.GrantTypes = []string{"client_credentials"} }, "public client"},
		{"code without redirect", func(c *storage.Client) { c.RedirectURIs = nil }, "needs at least one"},
		{"bad alg", func(c *storage.Client) { c.IDTokenAlg = "HS256" }, "RS256 or ES256"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.mutate(c)
			err := ValidateClient(c)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestClientSecretHash(t *testing.T) {
	s1, h1, err := NewClientSecret()
	if err != nil {
		t.Fatal(err)
	}
	s2, h2, _ := NewClientSecret()
	if s1 == s2 || h1 == h2 || len(s1) < 43 {
		t.Errorf("secrets not random or too short: %q %q", s1, s2)
	}
	if strings.Contains(h1, s1) || h1 != HashClientSecret(s1) {
		t.Errorf("hash %q of %q", h1, s1)
	}
	var hs sha256Hasher
	if err := hs.Compare(t.Context(), []byte(h1), []byte(s1)); err != nil {
		t.Errorf("right secret refused: %v", err)
	}
	if err := hs.Compare(t.Context(), []byte(h1), []byte(s2)); err == nil {
		t.Error("wrong secret accepted")
	}
}
