// Package upstream is what the broker asks of an identity provider it federates (ESIA, or a
// generic OpenID Connect provider): a Connector sends the browser away to log in and turns the
// callback into an Identity. Connectors report failures as *Error, by kind; what a person reads
// about them is the broker's pages' business.
package upstream

import (
	"context"
	"errors"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Connector is an upstream identity provider (Dex-style).
type Connector interface {
	// ID names the connector in URLs: /login/{id}, /{id}/callback.
	ID() string
	// DisplayName is the button text on the start page, in Russian.
	DisplayName() string
	// LoginURL returns where to send the browser, for the single-use state, and data the broker
	// keeps with the flow and hands back to HandleCallback.
	LoginURL(ctx context.Context, state string) (url string, data string, err error)
	// HandleCallback completes the login from the upstream's redirect. A failure the person
	// can act on is an *Error.
	HandleCallback(ctx context.Context, r *http.Request, data string) (*Identity, error)
}

// Logout is a connector whose upstream keeps a session of its own that the broker's logout must
// end too (ESIA's single sign-on).
type Logout interface {
	// UpstreamLogoutURL is where to send the browser to end the upstream session, coming back
	// to returnTo; "" to skip.
	UpstreamLogoutURL(returnTo string) string
}

// Observer is a connector that reports its calls upstream (latency and result).
type Observer interface {
	ObserveUpstream(f func(call string, took time.Duration, err error))
}

// Tracer is a connector that traces its calls upstream.
type Tracer interface {
	TraceUpstream(tp trace.TracerProvider)
}

// CertificateHolder is a connector that depends on certificates that expire.
type CertificateHolder interface {
	Certificates() []CertificateInfo
}

// CertificateInfo is a certificate whose expiry the operator watches.
type CertificateInfo struct {
	// Role is client (the system's certificate registered at ESIA) or esia (ESIA's).
	Role      string
	Subject   string
	NotBefore time.Time
	NotAfter  time.Time
}

// Identity is who the upstream says logged in.
type Identity struct {
	// Subject is the upstream's stable id (the ESIA oid).
	Subject    string
	FamilyName string
	GivenName  string
	MiddleName string
	// Birthdate is ISO 8601 (YYYY-MM-DD).
	Birthdate string
	// SNILS as the upstream gave it. It is never stored, logged or put in a token: the broker
	// keeps only its keyed digest.
	SNILS string
	// AMR and ACR go to the tokens.
	AMR []string
	ACR string
	// Unconfirmed marks an account the upstream reports as not confirmed (ESIA's trusted
	// false). The broker admits it only as a child's own account that matches a student card
	// (children.unconfirmed_esia_children); everyone else sees how to confirm the account.
	Unconfirmed bool
	// Fields names the person fields the upstream sent (names only, never values), logged for
	// unconfirmed accounts so operators see what ESIA returns for them.
	Fields []string
	// AuthTime is when the person last authenticated at the upstream (ESIA's ID token
	// auth_time); zero when unknown. A login that must be fresh (prompt=login, max_age, a
	// logout of this browser still under way) needs it recent: the upstream's single sign-on
	// may answer without asking anyone.
	AuthTime time.Time
	// AuthTimeErr says why AuthTime is unknown, when the upstream's ID token did not check out.
	AuthTimeErr error
}

// ACRs of ESIA logins in tokens.
const (
	// ACRTrusted is a confirmed ESIA account.
	ACRTrusted = "urn:esia:trusted"
	// ACRUnconfirmedChild is a child's own ESIA account that ESIA reports as not confirmed,
	// admitted because its SNILS and birth date match the child's card.
	ACRUnconfirmedChild = "urn:esia:unconfirmed-child"
)

// Kind is what went wrong upstream, as far as the person and the operator are concerned.
type Kind int

// Kinds of upstream failures.
const (
	// BadResponse: the upstream's answer did not check out.
	BadResponse Kind = iota
	// Cancelled: the person refused at the upstream.
	Cancelled
	// Expired: the upstream's code was stale or used.
	Expired
	// Unconfirmed: the upstream account is not confirmed.
	Unconfirmed
	// Misconfigured: the upstream refuses the broker's own request (its registration, keys,
	// certificate): only the operator can fix it; Operator says what to check.
	Misconfigured
	// Unavailable: the upstream does not answer.
	Unavailable
	// Refused: the upstream refused this login (Code, when it gave one).
	Refused
	// RefusedUnverified: a configuration fault reported through the browser that the
	// upstream, asked directly, did not confirm; the person is told to try again.
	RefusedUnverified
)

// Error is a failed upstream login.
type Error struct {
	Kind Kind
	// Code is the upstream's own error code (ESIA-007053), when it gave one.
	Code string
	// Operator is, for Misconfigured, what the operator should check (English).
	Operator string
	Err      error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	return "upstream login failed"
}

func (e *Error) Unwrap() error { return e.Err }

// KindOf returns the kind of an upstream failure, and whether err is one.
func KindOf(err error) (Kind, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind, true
	}
	return 0, false
}
