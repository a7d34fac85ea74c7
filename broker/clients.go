package broker

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/storage"
)

// SupportedGrantTypes are the grant types a client may be registered for.
var SupportedGrantTypes = []string{"authorization_code", "refresh_token", "client_credentials", GrantTypeActivationKey}

var clientIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{1,63}$`)

// NewClientSecret returns a fresh 256-bit client secret and its stored hash.
func NewClientSecret() (secret, hash string, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", "", fmt.Errorf("generate client secret: %w", err)
	}
	secret = base64.RawURLEncoding.EncodeToString(b)
	return secret, HashClientSecret(secret), nil
}

// ValidateClient checks a registration and lists every problem at once.
func ValidateClient(c *storage.Client) error {
	var p []string
	if !clientIDPattern.MatchString(c.ID) {
		p = append(p, "id: 2-64 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit")
	}
	if _, ok := linking.CleanName(c.Name); !ok {
		p = append(p, "name: at most 100 letters, digits, spaces and - ' . , ( ) № « »; no control, bidi or zero-width characters (it is shown on the consent page)")
	}
	for _, u := range c.RedirectURIs {
		if err := checkRedirectURI(u); err != nil {
			p = append(p, fmt.Sprintf("redirect URI %q: %v", u, err))
		}
	}
	for _, u := range c.PostLogoutRedirectURIs {
		if err := checkRedirectURI(u); err != nil {
			p = append(p, fmt.Sprintf("post-logout redirect URI %q: %v", u, err))
		}
	}
	for _, g := range c.GrantTypes {
		if !slices.Contains(SupportedGrantTypes, g) {
			p = append(p, fmt.Sprintf("grant type %q: not supported (use %s)", g, strings.Join(SupportedGrantTypes, ", ")))
		}
	}
	if len(c.GrantTypes) == 0 {
		p = append(p, "grant types: at least one is needed")
	}
	if slices.Contains(c.GrantTypes, "authorization_code") && len(c.RedirectURIs) == 0 {
		p = append(p, "redirect URIs: authorization_code needs at least one")
	}
	if c.Public && slices.Contains(c.GrantTypes, "client_credentials") {
		p = append(p, "grant type client_credentials: a public client cannot use it")
	}
	for _, s := range c.Scopes {
		if !slices.Contains(SupportedScopes, s) {
			p = append(p, fmt.Sprintf("scope %q: not supported (use %s)", s, strings.Join(SupportedScopes, ", ")))
		}
	}
	if c.HomeURL != "" {
		// Shown as a link on the start page: an absolute https URL (http only on loopback), no
		// credentials, no fragment.
		u, err := url.Parse(c.HomeURL)
		if err != nil || u.User != nil || u.Fragment != "" || !(u.Scheme == "https" && u.Host != "" || u.Scheme == "http" && isLoopbackHost(u.Hostname())) {
			p = append(p, fmt.Sprintf("home URL %q: must be an https URL (http only on loopback), without credentials or fragment", c.HomeURL))
		}
	}
	if c.IDTokenAlg != "" && c.IDTokenAlg != "RS256" && c.IDTokenAlg != "ES256" {
		p = append(p, fmt.Sprintf("ID token alg %q: use RS256 or ES256", c.IDTokenAlg))
	}
	if len(p) > 0 {
		return fmt.Errorf("invalid client:\n  - %s", strings.Join(p, "\n  - "))
	}
	return nil
}

func checkRedirectURI(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a URL")
	}
	switch {
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return fmt.Errorf("must not contain a fragment")
	case u.Scheme == "https" && u.Host != "":
		return nil
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("http is allowed only on loopback; use https")
	case u.Scheme != "" && u.Host == "" && strings.Contains(u.Scheme, "."):
		return nil // private-use scheme of a mobile app (RFC 8252 §7.1), e.g. ru.region.diary:/cb
	}
	return fmt.Errorf("must be an absolute https URL")
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
