package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

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
	HomeURL   string
	CreatedAt time.Time
	UpdatedAt time.Time
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
	CreatedAt              time.Time `db:"created_at"`
	UpdatedAt              time.Time `db:"updated_at"`
}

func (r clientRow) client() (*Client, error) {
	c := &Client{ID: r.ID, Name: r.Name, SecretHash: r.SecretHash, Public: r.Public, IDTokenAlg: r.IDTokenAlg, HomeURL: r.HomeURL, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
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

const clientCols = `id, name, secret_hash, public, redirect_uris, post_logout_redirect_uris, grant_types, response_types, scopes, audience, id_token_alg, created_at, updated_at, home_url`

// CreateClient registers c; ErrConflict when the id is taken.
func (s *Store) CreateClient(ctx context.Context, c *Client) error {
	now := s.clock()
	c.CreatedAt, c.UpdatedAt = now, now
	_, err := s.exec(ctx, `INSERT INTO clients (`+clientCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.ID, c.Name, c.SecretHash, c.Public, jsonList(c.RedirectURIs), jsonList(c.PostLogoutRedirectURIs),
		jsonList(c.GrantTypes), jsonList(c.ResponseTypes), jsonList(c.Scopes), jsonList(c.Audience), c.IDTokenAlg, now, now, c.HomeURL)
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
	res, err := s.exec(ctx, `UPDATE clients SET name = ?, secret_hash = ?, public = ?, redirect_uris = ?, post_logout_redirect_uris = ?, grant_types = ?, response_types = ?, scopes = ?, audience = ?, id_token_alg = ?, home_url = ?, updated_at = ? WHERE id = ?`,
		c.Name, c.SecretHash, c.Public, jsonList(c.RedirectURIs), jsonList(c.PostLogoutRedirectURIs),
		jsonList(c.GrantTypes), jsonList(c.ResponseTypes), jsonList(c.Scopes), jsonList(c.Audience), c.IDTokenAlg, c.HomeURL, c.UpdatedAt, c.ID)
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
			return e.c, nil
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
	return c, nil
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

// ClientAssertionJWTValid implements fosite.ClientManager. The broker does not accept
// private_key_jwt client assertions, so no JTI is ever known.
func (s *Store) ClientAssertionJWTValid(context.Context, string) error { return nil }

// SetClientAssertionJWT implements fosite.ClientManager; see ClientAssertionJWTValid.
func (s *Store) SetClientAssertionJWT(context.Context, string, time.Time) error {
	return errors.New("client assertions are not supported")
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
