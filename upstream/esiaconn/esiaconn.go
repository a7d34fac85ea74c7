// Package esiaconn is the ESIA connector: people log in through ESIA directly, with
// GOST-signed requests (package esia does the protocol).
package esiaconn

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/esia-broker/esia-broker/esia"
	"github.com/esia-broker/esia-broker/upstream"
)

// esiaClient is what the ESIA connector needs of the esia package's client.
type esiaClient interface {
	AuthURL(ctx context.Context, state string) (string, error)
	Exchange(ctx context.Context, code string) (*esia.Tokens, error)
	Person(ctx context.Context, accessToken, oid string) (*esia.Person, error)
	LogoutURL(redirectURL string) string
	Probe(ctx context.Context) (*esia.Error, error)
	SetObserver(f func(call string, took time.Duration, err error))
	SetTracer(tp trace.TracerProvider)
}

// Connector logs people in through ESIA directly, GOST-signed. It admits only confirmed
// accounts.
type Connector struct {
	client esiaClient
	opts   Config

	// The last probe of ESIA (see confirm): at most one a minute, whatever arrives.
	probeMu  sync.Mutex
	probeAt  time.Time
	probeErr *esia.Error
}

// Config is the ESIA connector's configuration.
type Config struct {
	// Client talks to ESIA (GOST-signed requests, token checks).
	Client *esia.Client
	// KeepESIASession leaves ESIA's own single sign-on session open when a person logs out of
	// the broker. By default logout ends it too (/idp/ext/Logout): on a shared school computer
	// the next parent would otherwise be logged in as the previous one.
	KeepESIASession bool
	// Certificates are the ones the connector depends on (the system's own, ESIA's), for the
	// expiry metric and the log at start.
	Certificates []upstream.CertificateInfo
}

// Open makes the connector.
func (c Config) Open() (*Connector, error) {
	if c.Client == nil {
		return nil, errors.New("esia connector: no ESIA client")
	}
	return &Connector{client: c.Client, opts: c}, nil
}

// ObserveUpstream implements upstream.Observer: every call to ESIA is reported to f.
func (c *Connector) ObserveUpstream(f func(call string, took time.Duration, err error)) {
	c.client.SetObserver(f)
}

// TraceUpstream implements upstream.Tracer.
func (c *Connector) TraceUpstream(tp trace.TracerProvider) { c.client.SetTracer(tp) }

// Certificates implements upstream.CertificateHolder.
func (c *Connector) Certificates() []upstream.CertificateInfo { return c.opts.Certificates }

// UpstreamLogoutURL implements upstream.Logout: ESIA's logout, coming back to returnTo; "" when
// the ESIA session is to be kept.
func (c *Connector) UpstreamLogoutURL(returnTo string) string {
	if c.opts.KeepESIASession {
		return ""
	}
	return c.client.LogoutURL(returnTo)
}

// ID implements upstream.Connector: the callback is /esia/callback.
func (c *Connector) ID() string { return "esia" }

// DisplayName implements upstream.Connector.
func (c *Connector) DisplayName() string { return "Войти через Госуслуги" }

// LoginURL implements upstream.Connector.
func (c *Connector) LoginURL(ctx context.Context, state string) (string, string, error) {
	u, err := c.client.AuthURL(ctx, state)
	return u, "", err
}

// HandleCallback implements upstream.Connector: the code is exchanged, the token checked, the person read,
// and an unconfirmed account refused.
func (c *Connector) HandleCallback(ctx context.Context, r *http.Request, _ string) (*upstream.Identity, error) {
	q := r.URL.Query()
	if err := esia.CallbackError(q); err != nil {
		if esia.Classify(err) == esia.ClassConfiguration {
			return nil, c.confirm(ctx, err)
		}
		return nil, kindOf(err)
	}
	tok, err := c.client.Exchange(ctx, q.Get("code"))
	if err != nil {
		return nil, kindOf(err)
	}
	p, err := c.client.Person(ctx, tok.AccessToken, tok.Claims.OID)
	if err != nil {
		return nil, kindOf(err)
	}
	id := &upstream.Identity{
		Subject: tok.Claims.OID, FamilyName: p.LastName, GivenName: p.FirstName, MiddleName: p.MiddleName,
		Birthdate: esia.ISOBirthDate(p.BirthDate), SNILS: p.SNILS, AMR: []string{"esia"}, ACR: upstream.ACRTrusted,
		AuthTime: tok.AuthTime, AuthTimeErr: tok.IDTokenErr,
	}
	if !p.Trusted {
		// The broker decides: only a child's own account matching a card gets in unconfirmed.
		id.Unconfirmed, id.ACR, id.Fields = true, upstream.ACRUnconfirmedChild, p.Fields
	}
	return id, nil
}

// confirm checks a configuration fault that arrived on the redirect back. That redirect passes
// through the browser, and anyone with a login flow can forge it; before the operator is
// alarmed, the connector asks ESIA itself with a fresh signed request (at most once a minute).
// ESIA refusing that too confirms the fault; otherwise the parent is told ESIA refused this
// login and to try again, and only a warning is logged.
func (c *Connector) confirm(ctx context.Context, reported error) error {
	c.probeMu.Lock()
	if time.Since(c.probeAt) > time.Minute {
		e, err := c.client.Probe(ctx)
		if err != nil {
			e = nil // ESIA unreachable: nothing confirmed
		}
		c.probeAt, c.probeErr = time.Now(), e
	}
	probed := c.probeErr
	c.probeMu.Unlock()
	if probed != nil && esia.Classify(probed) == esia.ClassConfiguration {
		return kindOf(probed)
	}
	return &upstream.Error{Kind: upstream.RefusedUnverified, Code: esia.ErrorCode(reported), Err: fmt.Errorf("not confirmed by a probe of ESIA: %w", reported)}
}

// kindOf tells what went wrong with ESIA. ESIA's code decides before the OAuth error: a wrong
// client secret comes back as access_denied (ESIA-007053), like a person's own refusal
// (ESIA-007004), and must not tell every parent that they cancelled.
func kindOf(err error) error {
	var ee *esia.Error
	code := ""
	if errors.As(err, &ee) {
		code = ee.Code
	}
	e := &upstream.Error{Code: code, Err: err}
	switch esia.Classify(err) {
	case esia.ClassCancelled:
		e.Kind = upstream.Cancelled
	case esia.ClassUnconfirmed:
		e.Kind = upstream.Unconfirmed
	case esia.ClassExpired:
		e.Kind = upstream.Expired
	case esia.ClassConfiguration:
		e.Kind = upstream.Misconfigured
		info, _ := esia.LookupCode(code)
		e.Operator = info.Operator
		if e.Operator == "" {
			oauthErr := "no OAuth error"
			if ee != nil && ee.OAuthError != "" {
				oauthErr = ee.OAuthError
			}
			e.Operator = "ESIA refused the broker's request (" + oauthErr + "): check upstream.esia"
		}
	case esia.ClassUnavailable:
		e.Kind = upstream.Unavailable
	default:
		e.Kind = upstream.BadResponse
		if code != "" {
			e.Kind = upstream.Refused
		}
	}
	return e
}
