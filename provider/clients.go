package provider

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/go-jose/go-jose/v4"
	"github.com/ory/fosite"
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
		} else if slices.Contains(MachineScopes, s) && (c.Public || !slices.Contains(c.GrantTypes, "client_credentials")) {
			p = append(p, fmt.Sprintf("scope %q: the diary API's scopes are for a confidential client of the client_credentials grant", s))
		}
	}
	if c.HomeURL != "" {
		// Shown as a link on the start page: an absolute https URL (http only on loopback), no
		// credentials, no fragment.
		u, err := url.Parse(c.HomeURL)
		if err != nil || u.User != nil || u.Fragment != "" || !(u.Scheme == "https" && u.Host != "" || u.Scheme == "http" && IsLoopbackHost(u.Hostname())) {
			p = append(p, fmt.Sprintf("home URL %q: must be an https URL (http only on loopback), without credentials or fragment", c.HomeURL))
		}
	}
	for _, l := range []struct{ name, uri string }{{"back-channel logout URI", c.BackchannelLogoutURI}, {"front-channel logout URI", c.FrontchannelLogoutURI}} {
		if l.uri == "" {
			continue
		}
		// The broker calls (or frames) it: an absolute https URL (http only on loopback),
		// without credentials or fragment (Back-Channel Logout 1.0 §2.2).
		u, err := url.Parse(l.uri)
		if err != nil || u.User != nil || u.Fragment != "" || strings.Contains(l.uri, "#") || !(u.Scheme == "https" && u.Host != "" || u.Scheme == "http" && IsLoopbackHost(u.Hostname())) {
			p = append(p, fmt.Sprintf("%s %q: must be an https URL (http only on loopback), without credentials or fragment", l.name, l.uri))
		}
	}
	p = append(p, checkClientAuth(c)...)
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
	case u.Scheme == "http" && IsLoopbackHost(u.Hostname()):
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("http is allowed only on loopback; use https")
	case u.Scheme != "" && u.Host == "" && strings.Contains(u.Scheme, "."):
		return nil // private-use scheme of a mobile app (RFC 8252 §7.1), e.g. ru.region.diary:/cb
	}
	return fmt.Errorf("must be an absolute https URL")
}

// IsLoopbackHost tells whether host h is localhost or a loopback address.
func IsLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// TokenEndpointAuthMethods are the client authentication methods a client may be registered
// for (token, introspection, revocation and pushed authorization endpoints).
var TokenEndpointAuthMethods = []string{"client_secret_basic", "client_secret_post", "private_key_jwt", "none"}

// checkClientAuth checks the client authentication part of a registration: the method fits the
// client's kind, and private_key_jwt comes with a JWK Set of public RS256 (2048 bits or more)
// or ES256 keys of one kind.
func checkClientAuth(c *storage.Client) []string {
	var p []string
	m := c.TokenEndpointAuthMethod
	switch {
	case m != "" && !slices.Contains(TokenEndpointAuthMethods, m):
		p = append(p, fmt.Sprintf("token endpoint auth method %q: use %s", m, strings.Join(TokenEndpointAuthMethods, ", ")))
	case c.Public && m != "" && m != "none":
		p = append(p, fmt.Sprintf("token endpoint auth method %q: a public client authenticates with none", m))
	case !c.Public && m == "none":
		p = append(p, "token endpoint auth method none: only for a public client (--public)")
	}
	switch {
	case m == "private_key_jwt" && c.JWKS == "":
		p = append(p, "jwks: private_key_jwt needs the client's public keys (--jwks FILE)")
	case m != "private_key_jwt" && c.JWKS != "":
		p = append(p, "jwks: only for token endpoint auth method private_key_jwt")
	case c.JWKS != "":
		p = append(p, checkClientJWKS(c.JWKS)...)
	}
	if c.RequirePAR && !slices.Contains(c.GrantTypes, "authorization_code") {
		p = append(p, "require PAR: only for a client of the authorization_code grant")
	}
	return p
}

func checkClientJWKS(raw string) []string {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal([]byte(raw), &set); err != nil {
		return []string{fmt.Sprintf("jwks: not a JWK Set: %v", err)}
	}
	if len(set.Keys) == 0 || len(set.Keys) > 10 {
		return []string{"jwks: give 1 to 10 keys"}
	}
	var p []string
	kinds := map[string]bool{}
	for i, k := range set.Keys {
		if !k.IsPublic() {
			p = append(p, fmt.Sprintf("jwks key %d: a private key; register only the public part", i+1))
			continue
		}
		if k.Use != "" && k.Use != "sig" {
			p = append(p, fmt.Sprintf("jwks key %d: use %q, want sig", i+1, k.Use))
		}
		switch pub := k.Key.(type) {
		case *rsa.PublicKey:
			kinds["RSA"] = true
			if pub.N.BitLen() < 2048 {
				p = append(p, fmt.Sprintf("jwks key %d: RSA key of %d bits, at least 2048", i+1, pub.N.BitLen()))
			}
			if k.Algorithm != "" && k.Algorithm != "RS256" {
				p = append(p, fmt.Sprintf("jwks key %d: alg %q, want RS256", i+1, k.Algorithm))
			}
		case *ecdsa.PublicKey:
			kinds["EC"] = true
			if pub.Curve != elliptic.P256() {
				p = append(p, fmt.Sprintf("jwks key %d: EC key not on P-256", i+1))
			}
			if k.Algorithm != "" && k.Algorithm != "ES256" {
				p = append(p, fmt.Sprintf("jwks key %d: alg %q, want ES256", i+1, k.Algorithm))
			}
		default:
			p = append(p, fmt.Sprintf("jwks key %d: an RSA or P-256 EC key is needed", i+1))
		}
	}
	if len(kinds) > 1 {
		p = append(p, "jwks: keys of one kind (all RSA for RS256, or all EC for ES256)")
	}
	return p
}

// sha256Hasher hashes client secrets. Secrets are 256-bit random values the broker generates, so
// a fast hash is as safe as bcrypt here and keeps the token endpoint cheap.
type sha256Hasher struct{}

func (sha256Hasher) Hash(_ context.Context, data []byte) ([]byte, error) {
	return []byte(HashClientSecret(string(data))), nil
}

func (sha256Hasher) Compare(_ context.Context, hash, data []byte) error {
	if subtle.ConstantTimeCompare(hash, []byte(HashClientSecret(string(data)))) != 1 {
		return errors.New("client secret does not match")
	}
	return nil
}

// HashClientSecret is the stored form of a client secret.
func HashClientSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return "sha256$" + hex.EncodeToString(sum[:])
}

// assertionAudiences is fosite's configuration with the audiences a client assertion may name.
type assertionAudiences struct {
	*fosite.Config
	urls []string
}

func (a assertionAudiences) GetTokenURLs(context.Context) []string { return a.urls }
