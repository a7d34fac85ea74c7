package storage

import (
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	josev3 "github.com/go-jose/go-jose/v3" // fosite's OpenIDConnectClient speaks v3
	"github.com/ory/fosite"
)

// Client is a registered relying party. It satisfies fosite.Client.
type Client struct {
	ID                     string
	Name                   string
	SecretHash             string
	Public                 bool
	RedirectURIs           []string
	PostLogoutRedirectURIs []string
	GrantTypes             []string
	ResponseTypes          []string
	Scopes                 []string
	Audience               []string
	// IDTokenAlg is RS256 or ES256; empty means the broker's default.
	IDTokenAlg string
	// HomeURL is the diary's own page, listed on the broker's start page; empty: not listed.
	HomeURL string
	// BackchannelLogoutURI receives a signed logout token when a session of its user ends
	// (OpenID Connect Back-Channel Logout 1.0); FrontchannelLogoutURI is loaded in the
	// browser at logout (Front-Channel Logout 1.0). Empty: not used.
	BackchannelLogoutURI, FrontchannelLogoutURI string
	// TokenEndpointAuthMethod is client_secret_basic, client_secret_post, private_key_jwt or
	// none; empty for a confidential client means basic or post.
	TokenEndpointAuthMethod string
	// JWKS is the client's public key set (JSON) for private_key_jwt.
	JWKS string
	// RequirePAR: authorization requests only by reference to a pushed request (RFC 9126).
	RequirePAR bool
	CreatedAt  time.Time
	UpdatedAt  time.Time
}

// GetID implements fosite.Client.
func (c *Client) GetID() string { return c.ID }

// GetHashedSecret implements fosite.Client.
func (c *Client) GetHashedSecret() []byte { return []byte(c.SecretHash) }

// GetRedirectURIs implements fosite.Client.
func (c *Client) GetRedirectURIs() []string { return c.RedirectURIs }

// GetGrantTypes implements fosite.Client.
func (c *Client) GetGrantTypes() fosite.Arguments { return c.GrantTypes }

// GetResponseTypes implements fosite.Client.
func (c *Client) GetResponseTypes() fosite.Arguments { return c.ResponseTypes }

// GetScopes implements fosite.Client.
func (c *Client) GetScopes() fosite.Arguments { return c.Scopes }

// IsPublic implements fosite.Client.
func (c *Client) IsPublic() bool { return c.Public }

// GetAudience implements fosite.Client: the registered audiences and the client itself, so that
// access tokens can name the client as their audience (RFC 9068 §3).
func (c *Client) GetAudience() fosite.Arguments {
	return append(fosite.Arguments{c.ID}, c.Audience...)
}

type clientRow struct {
	ID                     string    `db:"id"`
	Name                   string    `db:"name"`
	SecretHash             string    `db:"secret_hash"`
	Public                 bool      `db:"public"`
	RedirectURIs           string    `db:"redirect_uris"`
	PostLogoutRedirectURIs string    `db:"post_logout_redirect_uris"`
	GrantTypes             string    `db:"grant_types"`
	ResponseTypes          string    `db:"response_types"`
	Scopes                 string    `db:"scopes"`
	Audience               string    `db:"audience"`
	IDTokenAlg             string    `db:"id_token_alg"`
	HomeURL                string    `db:"home_url"`
	BackchannelLogoutURI   string    `db:"backchannel_logout_uri"`
	FrontchannelLogoutURI  string    `db:"frontchannel_logout_uri"`
	TokenEndpointAuth      string    `db:"token_endpoint_auth_method"`
	JWKS                   string    `db:"jwks"`
	RequirePAR             bool      `db:"require_par"`
	CreatedAt              time.Time `db:"created_at"`
	UpdatedAt              time.Time `db:"updated_at"`
}

func (r clientRow) client() (*Client, error) {
	c := &Client{ID: r.ID, Name: r.Name, SecretHash: r.SecretHash, Public: r.Public, IDTokenAlg: r.IDTokenAlg, HomeURL: r.HomeURL, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt,
		BackchannelLogoutURI: r.BackchannelLogoutURI, FrontchannelLogoutURI: r.FrontchannelLogoutURI, TokenEndpointAuthMethod: r.TokenEndpointAuth, JWKS: r.JWKS, RequirePAR: r.RequirePAR}
	for _, f := range []struct {
		src string
		dst *[]string
	}{
		{r.RedirectURIs, &c.RedirectURIs}, {r.PostLogoutRedirectURIs, &c.PostLogoutRedirectURIs},
		{r.GrantTypes, &c.GrantTypes}, {r.ResponseTypes, &c.ResponseTypes},
		{r.Scopes, &c.Scopes}, {r.Audience, &c.Audience},
	} {
		if err := json.Unmarshal([]byte(f.src), f.dst); err != nil {
			return nil, fmt.Errorf("decode client %s: %w", r.ID, err)
		}
	}
	return c, nil
}

func jsonList(v []string) string {
	if v == nil {
		v = []string{}
	}
	b, _ := json.Marshal(v)
	return string(b)
}

const clientCols = `id, name, secret_hash, public, redirect_uris, post_logout_redirect_uris, grant_types, response_types, scopes, audience, id_token_alg, created_at, updated_at, home_url,
	backchannel_logout_uri, frontchannel_logout_uri, token_endpoint_auth_method, jwks, require_par`

// CreateClient registers c; ErrConflict when the id is taken.
func (s *Store) CreateClient(ctx context.Context, c *Client) error {
	now := s.clock()
	c.CreatedAt, c.UpdatedAt = now, now
	_, err := s.exec(ctx, `INSERT INTO clients (`+clientCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.Name, c.SecretHash, c.Public, jsonList(c.RedirectURIs), jsonList(c.PostLogoutRedirectURIs),
		jsonList(c.GrantTypes), jsonList(c.ResponseTypes), jsonList(c.Scopes), jsonList(c.Audience), c.IDTokenAlg, now, now, c.HomeURL,
		c.BackchannelLogoutURI, c.FrontchannelLogoutURI, c.TokenEndpointAuthMethod, c.JWKS, c.RequirePAR)
	if isUniqueViolation(err) {
		return fmt.Errorf("create client %s: %w", c.ID, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("create client %s: %w", c.ID, err)
	}
	return nil
}

// UpdateClient replaces every field of the client with c.ID.
func (s *Store) UpdateClient(ctx context.Context, c *Client) error {
	defer s.forgetClient(c.ID)
	c.UpdatedAt = s.clock()
	res, err := s.exec(ctx, `UPDATE clients SET name = ?, secret_hash = ?, public = ?, redirect_uris = ?, post_logout_redirect_uris = ?, grant_types = ?, response_types = ?, scopes = ?, audience = ?, id_token_alg = ?, home_url = ?,
		backchannel_logout_uri = ?, frontchannel_logout_uri = ?, token_endpoint_auth_method = ?, jwks = ?, require_par = ?, updated_at = ? WHERE id = ?`,
		c.Name, c.SecretHash, c.Public, jsonList(c.RedirectURIs), jsonList(c.PostLogoutRedirectURIs),
		jsonList(c.GrantTypes), jsonList(c.ResponseTypes), jsonList(c.Scopes), jsonList(c.Audience), c.IDTokenAlg, c.HomeURL,
		c.BackchannelLogoutURI, c.FrontchannelLogoutURI, c.TokenEndpointAuthMethod, c.JWKS, c.RequirePAR, c.UpdatedAt, c.ID)
	if err != nil {
		return fmt.Errorf("update client %s: %w", c.ID, err)
	}
	if affected(res) == 0 {
		return fmt.Errorf("update client %s: %w", c.ID, ErrNotFound)
	}
	return nil
}

// Client returns the client with id, or ErrNotFound.
func (s *Store) Client(ctx context.Context, id string) (*Client, error) {
	var r clientRow
	if err := s.get(ctx, &r, `SELECT `+clientCols+` FROM clients WHERE id = ?`, id); err != nil {
		return nil, fmt.Errorf("get client: %w", err)
	}
	return r.client()
}

// Clients lists every client by id.
func (s *Store) Clients(ctx context.Context) ([]*Client, error) {
	var rows []clientRow
	if err := s.selectAll(ctx, &rows, `SELECT `+clientCols+` FROM clients ORDER BY id`); err != nil {
		return nil, fmt.Errorf("list clients: %w", err)
	}
	out := make([]*Client, 0, len(rows))
	for _, r := range rows {
		c, err := r.client()
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}

// DeleteClient removes the client and every token issued to it.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	defer s.forgetClient(id)
	return s.InTx(ctx, func(ctx context.Context) error {
		for _, t := range fositeTables {
			if _, err := s.exec(ctx, `DELETE FROM `+t+` WHERE client_id = ?`, id); err != nil {
				return fmt.Errorf("delete client %s tokens: %w", id, err)
			}
		}
		for _, t := range []string{"logout_deliveries", "oauth2_par"} {
			if _, err := s.exec(ctx, `DELETE FROM `+t+` WHERE client_id = ?`, id); err != nil {
				return fmt.Errorf("delete client %s: %s: %w", id, t, err)
			}
		}
		res, err := s.exec(ctx, `DELETE FROM clients WHERE id = ?`, id)
		if err != nil {
			return fmt.Errorf("delete client %s: %w", id, err)
		}
		if affected(res) == 0 {
			return fmt.Errorf("delete client %s: %w", id, ErrNotFound)
		}
		return nil
	})
}

// GetClient implements fosite.ClientManager. fosite looks the client up several times per
// request (authentication, then every stored code or token it decodes), so a found client is
// kept for ClientCacheTTL; a change made through this Store takes effect at once here, and on
// other replicas within the TTL.
func (s *Store) GetClient(ctx context.Context, id string) (fosite.Client, error) {
	if s.ClientCacheTTL > 0 {
		s.cacheMu.Lock()
		e, ok := s.clientCache[id]
		s.cacheMu.Unlock()
		if ok && s.clock().Before(e.until) {
			return e.c.asFosite()
		}
	}
	c, err := s.Client(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, fosite.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	if s.ClientCacheTTL > 0 {
		s.cacheMu.Lock()
		if s.clientCache == nil || len(s.clientCache) > 10000 {
			s.clientCache = map[string]cachedClient{}
		}
		s.clientCache[id] = cachedClient{c: c, until: s.clock().Add(s.ClientCacheTTL)}
		s.cacheMu.Unlock()
	}
	return c.asFosite()
}

type cachedClient struct {
	c     *Client
	until time.Time
}

func (s *Store) forgetClient(id string) {
	s.cacheMu.Lock()
	delete(s.clientCache, id)
	s.cacheMu.Unlock()
}

// ClientAssertionJWTValid implements fosite.ClientManager: fosite.ErrJTIKnown when the jti of
// a private_key_jwt assertion was seen and has not expired.
func (s *Store) ClientAssertionJWTValid(ctx context.Context, jti string) error {
	var n int
	if err := s.get(ctx, &n, `SELECT count(*) FROM client_assertions WHERE jti_hash = ? AND expires_at > ?`, jtiHash(jti), s.clock()); err != nil {
		return fmt.Errorf("check client assertion: %w", err)
	}
	if n > 0 {
		return fosite.ErrJTIKnown
	}
	return nil
}

// SetClientAssertionJWT implements fosite.ClientManager: it records the jti until exp. Of two
// requests with the same jti at once, the second insert fails: each assertion is used once,
// whatever ClientAssertionJWTValid answered before.
func (s *Store) SetClientAssertionJWT(ctx context.Context, jti string, exp time.Time) error {
	now := s.clock()
	if _, err := s.exec(ctx, `DELETE FROM client_assertions WHERE jti_hash = ? AND expires_at <= ?`, jtiHash(jti), now); err != nil {
		return fmt.Errorf("record client assertion: %w", err)
	}
	// An assertion is kept at least a minute, however short its own exp. One that would live
	// longer than MaxAssertionLifetime is refused: its jti would be forgotten while it is still
	// valid (the broker refuses those before this; this holds whoever calls).
	if exp = exp.UTC(); exp.After(now.Add(MaxAssertionLifetime)) {
		return fmt.Errorf("record client assertion: %w", ErrAssertionTooLong)
	} else if exp.Before(now.Add(time.Minute)) {
		exp = now.Add(time.Minute)
	}
	_, err := s.exec(ctx, `INSERT INTO client_assertions (jti_hash, expires_at) VALUES (?, ?)`, jtiHash(jti), exp)
	if isUniqueViolation(err) {
		return fosite.ErrJTIKnown
	}
	if err != nil {
		return fmt.Errorf("record client assertion: %w", err)
	}
	return nil
}

// MaxAssertionLifetime is the longest a client assertion's exp may lie ahead (with leeway).
const MaxAssertionLifetime = time.Hour + 2*time.Minute

// ErrAssertionTooLong is returned for a client assertion whose exp lies too far ahead.
var ErrAssertionTooLong = errors.New("the client assertion lives too long")

func jtiHash(jti string) string {
	h := sha256.Sum256([]byte("client-assertion:" + jti))
	return hex.EncodeToString(h[:])
}

// UpdateClientUncached updates the row without touching this Store's cache: what another
// replica's update looks like from here. Tests use it.
func (s *Store) UpdateClientUncached(ctx context.Context, c *Client) error {
	s.cacheMu.Lock()
	saved := map[string]cachedClient{}
	for k, v := range s.clientCache {
		saved[k] = v
	}
	s.cacheMu.Unlock()
	err := s.UpdateClient(ctx, c)
	s.cacheMu.Lock()
	s.clientCache = saved
	s.cacheMu.Unlock()
	return err
}

// OIDCClient is a client registered with a token_endpoint_auth_method: it satisfies
// fosite.OpenIDConnectClient, and fosite then accepts only that method (and for
// private_key_jwt, assertions signed by a key of its JWKS). A client without a method is
// returned as a plain *Client and may use client_secret_basic or client_secret_post.
type OIDCClient struct {
	*Client
	keys *josev3.JSONWebKeySet
}

// GetRequestURIs implements fosite.OpenIDConnectClient: no pre-registered request URIs.
func (c *OIDCClient) GetRequestURIs() []string { return nil }

// GetJSONWebKeys implements fosite.OpenIDConnectClient.
func (c *OIDCClient) GetJSONWebKeys() *josev3.JSONWebKeySet { return c.keys }

// GetJSONWebKeysURI implements fosite.OpenIDConnectClient: keys are registered, not fetched.
func (c *OIDCClient) GetJSONWebKeysURI() string { return "" }

// GetRequestObjectSigningAlgorithm implements fosite.OpenIDConnectClient: no request objects.
func (c *OIDCClient) GetRequestObjectSigningAlgorithm() string { return "" }

// GetTokenEndpointAuthMethod implements fosite.OpenIDConnectClient.
func (c *OIDCClient) GetTokenEndpointAuthMethod() string { return c.TokenEndpointAuthMethod }

// GetTokenEndpointAuthSigningAlgorithm implements fosite.OpenIDConnectClient: ES256 for EC
// keys, RS256 for RSA ones (the registration allows one kind).
func (c *OIDCClient) GetTokenEndpointAuthSigningAlgorithm() string {
	if c.keys != nil && len(c.keys.Keys) > 0 {
		if _, ok := c.keys.Keys[0].Key.(*ecdsa.PublicKey); ok {
			return "ES256"
		}
	}
	return "RS256"
}

// asFosite is the client as fosite sees it.
func (c *Client) asFosite() (fosite.Client, error) {
	if c.TokenEndpointAuthMethod == "" {
		return c, nil
	}
	oc := &OIDCClient{Client: c}
	if c.JWKS != "" {
		var set josev3.JSONWebKeySet
		if err := json.Unmarshal([]byte(c.JWKS), &set); err != nil {
			return nil, fmt.Errorf("client %s jwks: %w", c.ID, err)
		}
		// A key registered without "use" is a signing key (the registration refuses any other
		// use); fosite looks keys up by use "sig" and would find none.
		for i := range set.Keys {
			if set.Keys[i].Use == "" {
				set.Keys[i].Use = "sig"
			}
		}
		oc.keys = &set
	}
	return oc, nil
}

// ClientOf returns the registered client behind what fosite holds.
func ClientOf(c fosite.Client) (*Client, bool) {
	switch v := c.(type) {
	case *Client:
		return v, true
	case *OIDCClient:
		return v.Client, true
	}
	return nil, false
}
