package broker

import (
	"context"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Connector is an upstream identity provider (Dex-style): it sends the browser away to log in
// and turns the callback into an Identity. The ESIA and generic OIDC connectors implement it.
type Connector interface {
	// ID names the connector in URLs: /login/{id}, /{id}/callback.
	ID() string
	// DisplayName is the button text on the start page, in Russian.
	DisplayName() string
	// LoginURL returns where to send the browser, for the single-use state, and data the broker
	// keeps with the flow and hands back to HandleCallback.
	LoginURL(ctx context.Context, state string) (url string, data string, err error)
	// HandleCallback completes the login from the upstream's redirect. An error the person
	// should read is a *UserError.
	HandleCallback(ctx context.Context, r *http.Request, data string) (*Identity, error)
}

// upstreamLogout is a connector whose upstream keeps a session of its own that the broker's
// logout must end too (ESIA's single sign-on).
type upstreamLogout interface {
	// UpstreamLogoutURL is where to send the browser to end the upstream session, coming back
	// to returnTo; "" to skip.
	UpstreamLogoutURL(returnTo string) string
}

// upstreamObserver is a connector that reports its calls upstream (latency and result).
type upstreamObserver interface {
	ObserveUpstream(f func(call string, took time.Duration, err error))
}

// upstreamTracer is a connector that traces its calls upstream.
type upstreamTracer interface {
	TraceUpstream(tp trace.TracerProvider)
}

// certificateHolder is a connector that depends on certificates that expire.
type certificateHolder interface {
	Certificates() []CertificateInfo
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

// UserError is an error with a Russian title and message for the page, and an HTTP status.
type UserError struct {
	Status  int
	Title   string
	Message string
	Err     error
	// Retry is set by the broker: where «Попробовать снова» leads.
	Retry string
	// Operator, when set, is a fault only the operator can fix (ESIA refuses the broker's
	// configuration): it is logged at error level, in English, with OperatorCode.
	Operator     string
	OperatorCode string
	// Upstream names the connector of a failed login, for the log line.
	Upstream string
	// Calm: the page explains a state of the person's own (not an error of the service),
	// shown as plain text rather than a red alert; HelpURL and HelpText are a link onwards.
	Calm              bool
	HelpURL, HelpText string
}

func (e *UserError) Error() string {
	if e.Err != nil {
		return e.Title + ": " + e.Err.Error()
	}
	return e.Title
}

func (e *UserError) Unwrap() error { return e.Err }
