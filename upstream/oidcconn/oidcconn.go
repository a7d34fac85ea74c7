// Package oidcconn is the generic OpenID Connect connector: people log in through any
// standards-compliant OpenID provider (a certified gateway to ESIA, say), with PKCE and nonce.
package oidcconn

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/esia-broker/esia-broker/upstream"
)

// Claims names the claims a generic OpenID provider (such as a certified gateway to ESIA)
// uses for what the broker needs. Empty names are not read.
type Claims struct {
	Subject    string // default "sub"
	FamilyName string // default "family_name"
	GivenName  string // default "given_name"
	MiddleName string // default "middle_name"
	Birthdate  string // default "birthdate"; YYYY-MM-DD or DD.MM.YYYY
	SNILS      string // e.g. "snils"
	// Trusted names a boolean claim that must be true (the confirmed-account flag); empty
	// admits everyone the provider authenticates.
	Trusted string
}

// Config configures the generic OpenID Connect upstream.
type Config struct {
	ID           string // URL name; "oidc" by default
	DisplayName  string
	Issuer       string
	ClientID     string
	ClientSecret string
	RedirectURI  string
	Scopes       []string
	Claims       Claims
	HTTPClient   *http.Client
}

// Connector logs people in through any standards-compliant OpenID provider (go-oidc), with
// PKCE and nonce. Discovery happens at the first login, so the broker starts while the
// provider is down.
type Connector struct {
	cfg Config

	mu       sync.Mutex
	provider *oidc.Provider
}

// Open checks the configuration and makes the connector (no network call).
func (cfg Config) Open() (*Connector, error) {
	if cfg.Issuer == "" || cfg.ClientID == "" || cfg.RedirectURI == "" {
		return nil, errors.New("oidc upstream: issuer, client id and redirect URI are required")
	}
	if cfg.ID == "" {
		cfg.ID = "oidc"
	}
	if cfg.DisplayName == "" {
		cfg.DisplayName = "Войти через Госуслуги"
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{oidc.ScopeOpenID, "profile"}
	}
	c := &cfg.Claims
	for _, f := range []struct {
		p   *string
		def string
	}{{&c.Subject, "sub"}, {&c.FamilyName, "family_name"}, {&c.GivenName, "given_name"}, {&c.MiddleName, "middle_name"}, {&c.Birthdate, "birthdate"}} {
		if *f.p == "" {
			*f.p = f.def
		}
	}
	return &Connector{cfg: cfg}, nil
}

func (c *Connector) ctx(ctx context.Context) context.Context {
	if c.cfg.HTTPClient != nil {
		return oidc.ClientContext(ctx, c.cfg.HTTPClient)
	}
	return ctx
}

func (c *Connector) setup(ctx context.Context) (*oidc.Provider, *oauth2.Config, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.provider == nil {
		p, err := oidc.NewProvider(c.ctx(ctx), c.cfg.Issuer)
		if err != nil {
			return nil, nil, fmt.Errorf("oidc upstream discovery: %w", err)
		}
		c.provider = p
	}
	return c.provider, &oauth2.Config{ClientID: c.cfg.ClientID, ClientSecret: c.cfg.ClientSecret, Endpoint: c.provider.Endpoint(), RedirectURL: c.cfg.RedirectURI, Scopes: c.cfg.Scopes}, nil
}

// ID implements upstream.Connector.
func (c *Connector) ID() string { return c.cfg.ID }

// DisplayName implements upstream.Connector.
func (c *Connector) DisplayName() string { return c.cfg.DisplayName }

type oidcFlowData struct {
	Verifier string `json:"v"`
	Nonce    string `json:"n"`
}

// LoginURL implements upstream.Connector.
func (c *Connector) LoginURL(ctx context.Context, state string) (string, string, error) {
	_, conf, err := c.setup(ctx)
	if err != nil {
		return "", "", err
	}
	d := oidcFlowData{Verifier: oauth2.GenerateVerifier(), Nonce: rand.Text()}
	data, _ := json.Marshal(d)
	return conf.AuthCodeURL(state, oauth2.S256ChallengeOption(d.Verifier), oidc.Nonce(d.Nonce)), string(data), nil
}

// HandleCallback implements upstream.Connector.
func (c *Connector) HandleCallback(ctx context.Context, r *http.Request, data string) (*upstream.Identity, error) {
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		if e == "access_denied" {
			return nil, &upstream.Error{Kind: upstream.Cancelled, Err: errors.New("the person refused at the provider")}
		}
		return nil, &upstream.Error{Kind: upstream.Refused, Err: errors.New(e + ": " + q.Get("error_description"))}
	}
	var d oidcFlowData
	if err := json.Unmarshal([]byte(data), &d); err != nil {
		return nil, fmt.Errorf("oidc upstream: flow data: %w", err)
	}
	p, conf, err := c.setup(ctx)
	if err != nil {
		return nil, err
	}
	tok, err := conf.Exchange(c.ctx(ctx), q.Get("code"), oauth2.VerifierOption(d.Verifier))
	if err != nil {
		return nil, fmt.Errorf("oidc upstream: code exchange: %w", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := p.Verifier(&oidc.Config{ClientID: c.cfg.ClientID}).Verify(c.ctx(ctx), raw)
	if err != nil {
		return nil, fmt.Errorf("oidc upstream: id token: %w", err)
	}
	if idt.Nonce != d.Nonce {
		return nil, errors.New("oidc upstream: id token nonce does not match")
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return nil, fmt.Errorf("oidc upstream: claims: %w", err)
	}
	if ui, err := p.UserInfo(c.ctx(ctx), oauth2.StaticTokenSource(tok)); err == nil {
		extra := map[string]any{}
		if ui.Claims(&extra) == nil {
			for k, v := range extra {
				if _, ok := claims[k]; !ok {
					claims[k] = v
				}
			}
		}
	}
	cl := c.cfg.Claims
	str := func(name string) string {
		if name == "" {
			return ""
		}
		switch v := claims[name].(type) {
		case string:
			return v
		case float64:
			return fmt.Sprintf("%.0f", v)
		}
		return ""
	}
	unconfirmed := false
	if cl.Trusted != "" {
		t, _ := claims[cl.Trusted].(bool)
		unconfirmed = !t
	}
	sub := str(cl.Subject)
	if sub == "" {
		return nil, fmt.Errorf("oidc upstream: no %q claim", cl.Subject)
	}
	bd := str(cl.Birthdate)
	if strings.Count(bd, ".") == 2 {
		if iso := isoFromDotted(bd); iso != "" {
			bd = iso
		}
	}
	id := &upstream.Identity{Subject: sub, FamilyName: str(cl.FamilyName), GivenName: str(cl.GivenName), MiddleName: str(cl.MiddleName),
		Birthdate: bd, SNILS: str(cl.SNILS), AMR: []string{"esia"}, ACR: upstream.ACRTrusted}
	if unconfirmed {
		// As with ESIA: the broker admits it only as a child's own account matching a card.
		id.Unconfirmed, id.ACR = true, upstream.ACRUnconfirmedChild
		for k := range claims {
			if len(id.Fields) < 64 && claimName.MatchString(k) {
				id.Fields = append(id.Fields, k)
			}
		}
		slices.Sort(id.Fields)
	}
	return id, nil
}

// claimName is what a claim name looks like; anything else is not logged.
var claimName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_:.\-]{0,63}$`)

func isoFromDotted(d string) string {
	parts := strings.Split(d, ".")
	if len(parts) != 3 || len(parts[0]) != 2 || len(parts[1]) != 2 || len(parts[2]) != 4 {
		return ""
	}
	return parts[2] + "-" + parts[1] + "-" + parts[0]
}
