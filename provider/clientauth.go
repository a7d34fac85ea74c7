package provider

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/esia-broker/esia-broker/web"
	"github.com/ory/fosite"
)

// maxAssertionLifetime is the longest a private_key_jwt client assertion may live: its jti
// is remembered that long, so a longer one could be replayed once forgotten (RFC 7523 §3 lets
// the server set this limit).
const maxAssertionLifetime = time.Hour

// assertionLeeway is the clock skew allowed between a client and the broker.
const assertionLeeway = time.Minute

// preAuthenticated carries a client authentication already made for this request, so that
// fosite's own call inside the token endpoint's transaction reuses it: a refused grant rolls
// back that transaction, and the assertion's jti must stay used all the same.
type preAuthenticated struct {
	client fosite.Client
	err    error
}

type preAuthKey struct{}

// clientAuthentication is fosite's client authentication with what it lacks:
//   - one method per request (RFC 6749 §2.3): a secret and an assertion together are refused;
//   - an assertion that lives longer than maxAssertionLifetime is refused;
//   - every failure of authentication is invalid_client (401), never a bare error (500) or a
//     jti_known that revocation would answer with 200 as if it had revoked;
//   - a result made before the token endpoint's transaction is reused (preAuthKey).
type clientAuthentication struct {
	f   *fosite.Fosite
	now func() time.Time
}

func (a clientAuthentication) authenticate(ctx context.Context, r *http.Request, form url.Values) (fosite.Client, error) {
	if p, ok := ctx.Value(preAuthKey{}).(*preAuthenticated); ok {
		return p.client, p.err
	}
	_, _, basic := r.BasicAuth()
	assertion := form.Get("client_assertion") != "" || form.Get("client_assertion_type") != ""
	secretPost := form.Get("client_secret") != ""
	if n := btoi(basic) + btoi(assertion) + btoi(secretPost); n > 1 {
		return nil, fosite.ErrInvalidRequest.WithHint("Use one client authentication method per request (RFC 6749 §2.3).")
	}
	if assertion && form.Get("client_assertion") != "" {
		if err := a.checkLifetime(form.Get("client_assertion")); err != nil {
			return nil, err
		}
	}
	c, err := a.f.DefaultClientAuthenticationStrategy(ctx, r, form)
	if err == nil || web.IsUnavailable(err) {
		return c, err
	}
	rfc := fosite.ErrorToRFC6749Error(err)
	if rfc.ErrorField == fosite.ErrInvalidRequest.ErrorField && !assertion {
		return nil, err // malformed credentials: invalid_request, as RFC 6749 §5.2 has it
	}
	if rfc.ErrorField == fosite.ErrInvalidClient.ErrorField {
		return nil, err
	}
	hint := rfc.HintField
	if hint == "" {
		hint = "The client assertion is expired, not yet valid or otherwise not acceptable."
	}
	return nil, fosite.ErrInvalidClient.WithHint(hint).WithWrap(err)
}

// checkLifetime refuses an assertion whose exp lies further ahead than maxAssertionLifetime.
// The signature is checked afterwards by fosite; this only reads exp.
func (a clientAuthentication) checkLifetime(assertion string) error {
	parts := strings.Split(assertion, ".")
	if len(parts) != 3 {
		return fosite.ErrInvalidClient.WithHint("The client assertion is not a signed JWT.")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return fosite.ErrInvalidClient.WithHint("The client assertion is not a signed JWT.")
	}
	// Read as fosite reads them — a map, where only "exp" is exp — and refuse a second key that
	// a case-insensitive reader would take for it ("Exp", "EXP").
	var claims map[string]any
	dec := json.NewDecoder(strings.NewReader(string(payload)))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil {
		return fosite.ErrInvalidClient.WithHint("The client assertion's claims are not a JSON object.")
	}
	for k := range claims {
		if k != "exp" && strings.EqualFold(k, "exp") {
			return fosite.ErrInvalidClient.WithHint("The client assertion carries exp twice.")
		}
	}
	n, ok := claims["exp"].(json.Number)
	if !ok {
		return fosite.ErrInvalidClient.WithHint("The client assertion must carry exp as a number.")
	}
	exp, err := n.Float64()
	if err != nil || exp > float64(a.now().Add(maxAssertionLifetime+assertionLeeway).Unix()) {
		return fosite.ErrInvalidClient.WithHint("The client assertion must expire within an hour.")
	}
	return nil
}

// preAuthenticate authenticates the client of a token request before its transaction begins
// and returns the context that carries the result to fosite.
func (a clientAuthentication) preAuthenticate(ctx context.Context, r *http.Request) context.Context {
	if err := r.ParseForm(); err != nil {
		return context.WithValue(ctx, preAuthKey{}, &preAuthenticated{err: fosite.ErrInvalidRequest.WithHint("The request body could not be read.")})
	}
	c, err := a.authenticate(ctx, r, r.PostForm)
	return context.WithValue(ctx, preAuthKey{}, &preAuthenticated{client: c, err: err})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// errNoFosite is returned when the provider is not fosite's own (never, in practice).
var errNoFosite = errors.New("client authentication: provider is not *fosite.Fosite")
