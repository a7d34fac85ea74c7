package esia

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Hosts and token issuers of ESIA's two environments (docs/DESIGN.md §4): production, and the test
// environment (ТЕСИА) every system passes before it is let into production.
const (
	ProductionURL = "https://esia.gosuslugi.ru"
	TestURL       = "https://esia-portal1.test.gosuslugi.ru"
	// DefaultIssuer is the iss of production ESIA's tokens: http and a trailing slash.
	DefaultIssuer = "http://esia.gosuslugi.ru/"
	// TestIssuer is the iss of ТЕСИА's tokens.
	TestIssuer = "http://esia-portal1.test.gosuslugi.ru/"
	// TimestampLayout is ESIA's timestamp format, yyyy.MM.dd HH:mm:ss Z.
	TimestampLayout = "2006.01.02 15:04:05 -0700"
)

// Config describes one ESIA client (информационная система).
type Config struct {
	// BaseURL is ProductionURL, TestURL or another (the emulator).
	BaseURL string
	// ClientID is the system's мнемоника.
	ClientID    string
	RedirectURI string
	Scopes      []string
	// ScopeOrg is the optional organisation scope.
	ScopeOrg string
	// AccessType is online (default) or offline (refresh tokens).
	AccessType string
	// Issuer is the expected iss of tokens; when empty, IssuerFor(BaseURL).
	Issuer string
	// Timeout bounds every call; 10s when zero.
	Timeout time.Duration
	// Leeway is the clock skew allowed in token time checks; 60s when zero.
	Leeway time.Duration
	// Verifier checks token signatures; nil skips the signature check (the tokens come
	// straight from ESIA over TLS), the claim checks always run.
	Verifier *TokenVerifier
	// HTTPClient is used for every call; a client with Timeout when nil.
	HTTPClient *http.Client
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// MaxBodyBytes bounds what is read of a response; 1 MiB when zero.
	MaxBodyBytes int64
	// Observe, when set, is told of every call: authorize (signing the redirect), token,
	// person, contacts, kids, probe — how long it took and how it ended (Result, ErrorCode).
	Observe func(call string, took time.Duration, err error)
}

// Client talks to ESIA.
type Client struct {
	cfg    Config
	signer Signer
	http   *http.Client
	tracer trace.Tracer
}

// New makes a client; signer makes client_secret.
func New(cfg Config, signer Signer) (*Client, error) {
	var p []string
	if _, err := url.ParseRequestURI(cfg.BaseURL); err != nil || cfg.BaseURL == "" {
		p = append(p, "base URL must be an absolute URL")
	}
	if cfg.ClientID == "" {
		p = append(p, "client id (мнемоника) is required")
	}
	if u, err := url.Parse(cfg.RedirectURI); err != nil || !u.IsAbs() {
		p = append(p, "redirect URI must be an absolute URL")
	}
	if len(cfg.Scopes) == 0 {
		p = append(p, "at least one scope is required")
	}
	if cfg.AccessType == "" {
		cfg.AccessType = "online"
	}
	if cfg.AccessType != "online" && cfg.AccessType != "offline" {
		p = append(p, "access type must be online or offline")
	}
	if signer == nil {
		p = append(p, "a signer is required")
	}
	if len(p) > 0 {
		return nil, fmt.Errorf("esia client: %s", strings.Join(p, "; "))
	}
	cfg.BaseURL = strings.TrimSuffix(cfg.BaseURL, "/")
	if cfg.Issuer == "" {
		cfg.Issuer = IssuerFor(cfg.BaseURL)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Leeway <= 0 {
		cfg.Leeway = time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{Timeout: cfg.Timeout, Transport: newTransport()}
	}
	return &Client{cfg: cfg, signer: signer, http: hc, tracer: noop.NewTracerProvider().Tracer("")}, nil
}

// newTransport is the connection pool to ESIA. Every login makes three or four calls to the
// one ESIA host, many at once at peak: the default pool keeps only two idle connections per
// host and would open (and TLS-handshake) a new one for most calls.
func newTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 128
	t.IdleConnTimeout = 90 * time.Second
	return t
}

// IssuerFor is the iss that tokens of the ESIA at baseURL carry: TestIssuer for ТЕСИА's host,
// DefaultIssuer for production's and for any other address (an emulator or a proxy of
// production; configure the issuer explicitly when it differs).
func IssuerFor(baseURL string) string {
	u, err := url.Parse(baseURL)
	if err == nil && strings.EqualFold(u.Hostname(), "esia-portal1.test.gosuslugi.ru") {
		return TestIssuer
	}
	return DefaultIssuer
}

// SetTracer makes the client trace its calls to ESIA with tp (OpenTelemetry): a span per HTTP
// call, named by the call, without the URL (it holds the person's oid) or any answer.
// Call it before the client is used.
func (c *Client) SetTracer(tp trace.TracerProvider) {
	c.tracer = tp.Tracer("github.com/esia-broker/esia-broker/esia")
}

func (c *Client) span(ctx context.Context, req *http.Request) (context.Context, trace.Span) {
	call := resourceName(req.URL.Path)
	switch {
	case strings.HasSuffix(req.URL.Path, "/v3/te"):
		call = "token"
	case strings.HasSuffix(req.URL.Path, "/v2/ac"):
		call = "probe"
	}
	return c.tracer.Start(ctx, "esia "+call, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("esia.call", call), attribute.String("http.request.method", req.Method)))
}

func endSpan(span trace.Span, status int, err error) {
	if status != 0 {
		span.SetAttributes(attribute.Int("http.response.status_code", status))
	}
	if err != nil {
		span.SetAttributes(attribute.String("esia.result", Result(err)))
		span.SetStatus(codes.Error, Result(err))
	}
	span.End()
}

// SetObserver sets Config.Observe (the broker's metrics). Call it before the client is used.
func (c *Client) SetObserver(f func(call string, took time.Duration, err error)) { c.cfg.Observe = f }

// Issuer is the iss this client expects of ESIA's tokens.
func (c *Client) Issuer() string { return c.cfg.Issuer }

// ClientID is the system's мнемоника.
func (c *Client) ClientID() string { return c.cfg.ClientID }

// LogoutURL is where a browser ends its ESIA session (/idp/ext/Logout) and then comes back to
// redirectURL. ESIA keeps a single sign-on session of its own: without this, the next person
// at a shared computer who presses «Войти через Госуслуги» is logged in as the previous one.
func (c *Client) LogoutURL(redirectURL string) string {
	q := url.Values{"client_id": {c.cfg.ClientID}, "redirect_url": {redirectURL}}
	return c.cfg.BaseURL + "/idp/ext/Logout?" + q.Encode()
}

func (c *Client) scope() string { return strings.Join(c.cfg.Scopes, " ") }

func (c *Client) timestamp() string { return c.cfg.Now().Format(TimestampLayout) }

// secret signs client_id + scope + scope_org + timestamp + state + redirect_uri (+ code).
func (c *Client) secret(ctx context.Context, timestamp, state, code string) (string, error) {
	msg := c.cfg.ClientID + c.scope() + c.cfg.ScopeOrg + timestamp + state + c.cfg.RedirectURI + code
	sig, err := c.signer.Sign(ctx, []byte(msg))
	if err != nil {
		return "", fmt.Errorf("sign ESIA client secret: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(sig), nil
}

// SecretMessage is the exact string ESIA expects signed; tests and the emulator use it.
func SecretMessage(clientID, scope, scopeOrg, timestamp, state, redirectURI, code string) string {
	return clientID + scope + scopeOrg + timestamp + state + redirectURI + code
}

// AuthURL returns the /aas/oauth2/v2/ac address for state (a UUID v4).
func (c *Client) AuthURL(ctx context.Context, state string) (u string, err error) {
	defer func(start time.Time) { c.observe("authorize", start, err) }(time.Now())
	return c.authURL(ctx, state)
}

// authURL is AuthURL without the observation (Probe observes itself).
func (c *Client) authURL(ctx context.Context, state string) (string, error) {
	if _, err := uuid.Parse(state); err != nil {
		return "", fmt.Errorf("esia: state must be a UUID: %w", err)
	}
	ts := c.timestamp()
	secret, err := c.secret(ctx, ts, state, "")
	if err != nil {
		return "", err
	}
	q := url.Values{
		"client_id":               {c.cfg.ClientID},
		"client_secret":           {secret},
		"client_certificate_hash": {c.signer.CertificateHash()},
		"redirect_uri":            {c.cfg.RedirectURI},
		"scope":                   {c.scope()},
		"response_type":           {"code"},
		"state":                   {state},
		"access_type":             {c.cfg.AccessType},
		"timestamp":               {ts},
	}
	if c.cfg.ScopeOrg != "" {
		q.Set("scope_org", c.cfg.ScopeOrg)
	}
	return c.cfg.BaseURL + "/aas/oauth2/v2/ac?" + q.Encode(), nil
}

// Probe sends a fresh signed authorization request to ESIA from the server, without following
// redirects, and returns ESIA's refusal of it: an error redirected to the redirect URI, or an
// error page naming an ESIA code. nil means ESIA took the request (its login page, or a
// redirect to it). An error on the redirect back passes through the browser and can be forged;
// a probe's answer comes from ESIA itself.
func (c *Client) Probe(ctx context.Context) (refusal *Error, err error) {
	defer func(start time.Time) {
		if refusal != nil {
			c.observe("probe", start, refusal)
		} else {
			c.observe("probe", start, err)
		}
	}(time.Now())
	au, err := c.authURL(ctx, uuid.NewString())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, au, nil)
	if err != nil {
		return nil, fmt.Errorf("esia probe: %w", err)
	}
	hc := *c.http
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	sctx, span := c.span(ctx, req)
	resp, err := hc.Do(req.WithContext(sctx))
	if err != nil {
		endSpan(span, 0, err)
		return nil, networkError(err)
	}
	endSpan(span, resp.StatusCode, nil)
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch loc := resp.Header.Get("Location"); {
	case resp.StatusCode >= 300 && resp.StatusCode < 400 && strings.HasPrefix(loc, c.cfg.RedirectURI):
		u, err := url.Parse(loc)
		if err != nil {
			return nil, fmt.Errorf("%w: redirect %q", ErrBadResponse, loc)
		}
		var e *Error
		if errors.As(CallbackError(u.Query()), &e) {
			return e, nil
		}
		return nil, nil
	case resp.StatusCode >= 500:
		return nil, fmt.Errorf("%w: %w: authorization endpoint answered HTTP %d", ErrUnavailable, ErrServer, resp.StatusCode)
	case resp.StatusCode >= 400:
		if e := textError(body, resp.StatusCode); e != nil {
			return e, nil
		}
		return NewError("", fmt.Sprintf("authorization endpoint answered HTTP %d", resp.StatusCode), resp.StatusCode), nil
	}
	return nil, nil
}

// CallbackError returns the error ESIA put on the redirect back, or nil. The redirect passes
// through the browser, so only what can be checked is kept: the OAuth error when it looks like
// one, and the ESIA code — no free text reaches the logs.
func CallbackError(q url.Values) error {
	e := q.Get("error")
	if e == "" {
		return nil
	}
	if !oauthErrorPattern.MatchString(e) {
		e = "invalid_error"
	}
	return &Error{Code: codePattern.FindString(q.Get("error_description")), OAuthError: e, Description: codePattern.FindString(q.Get("error_description"))}
}

// oauthErrorPattern is what an OAuth error code looks like (RFC 6749 §4.1.2.1).
var oauthErrorPattern = regexp.MustCompile(`^[a-z_]{1,40}$`)

// Tokens is what the token endpoint returns, with the access token's checked claims.
type Tokens struct {
	AccessToken  string
	RefreshToken string
	IDToken      string
	ExpiresIn    int
	Claims       *AccessClaims
	// AuthTime is the ID token's auth_time: when the person last authenticated at ESIA (its
	// single sign-on may answer without asking). Zero when ESIA sent no ID token or one that
	// did not check out (IDTokenErr says why); the login itself does not depend on it.
	AuthTime   time.Time
	IDTokenErr error
}

type tokenResponse struct {
	AccessToken      string `json:"access_token"`
	RefreshToken     string `json:"refresh_token"`
	IDToken          string `json:"id_token"`
	State            string `json:"state"`
	TokenType        string `json:"token_type"`
	ExpiresIn        int    `json:"expires_in"`
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
}

// Exchange trades an authorization code for tokens. It is never retried: a code is single use.
func (c *Client) Exchange(ctx context.Context, code string) (*Tokens, error) {
	if code == "" {
		return nil, NewError("invalid_request", "no authorization code on the callback", 0)
	}
	return c.token(ctx, url.Values{"grant_type": {"authorization_code"}, "code": {code}}, code)
}

// Refresh trades a refresh token for new tokens (access_type=offline). Never retried.
func (c *Client) Refresh(ctx context.Context, refreshToken string) (*Tokens, error) {
	return c.token(ctx, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}}, "")
}

func (c *Client) token(ctx context.Context, form url.Values, code string) (_ *Tokens, err error) {
	defer func(start time.Time) { c.observe("token", start, err) }(time.Now())
	state := uuid.NewString()
	ts := c.timestamp()
	secret, err := c.secret(ctx, ts, state, code)
	if err != nil {
		return nil, err
	}
	form.Set("client_id", c.cfg.ClientID)
	form.Set("client_secret", secret)
	form.Set("client_certificate_hash", c.signer.CertificateHash())
	form.Set("state", state)
	form.Set("redirect_uri", c.cfg.RedirectURI)
	form.Set("scope", c.scope())
	form.Set("timestamp", ts)
	form.Set("token_type", "Bearer")
	if c.cfg.ScopeOrg != "" {
		form.Set("scope_org", c.cfg.ScopeOrg)
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.BaseURL+"/aas/oauth2/v3/te", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, fmt.Errorf("esia token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	body, status, err := c.do(req)
	if err != nil {
		return nil, err
	}
	var tr tokenResponse
	if err := json.Unmarshal(body, &tr); err != nil {
		// ESIA answers some errors as text/plain ("ESIA-007014: …"): keep the code.
		if e := textError(body, status); e != nil {
			return nil, e
		}
		if status >= 500 {
			return nil, fmt.Errorf("%w: %w: token endpoint answered HTTP %d", ErrUnavailable, ErrServer, status)
		}
		return nil, fmt.Errorf("%w: token endpoint (HTTP %d): %v", ErrBadResponse, status, err)
	}
	if tr.Error != "" || status != http.StatusOK {
		if status >= 500 && tr.Error == "" {
			return nil, fmt.Errorf("%w: %w: token endpoint answered HTTP %d", ErrUnavailable, ErrServer, status)
		}
		return nil, NewError(tr.Error, tr.ErrorDescription, status)
	}
	if tr.State != state {
		return nil, ErrStateMismatch
	}
	if tr.AccessToken == "" {
		return nil, fmt.Errorf("%w: no access_token", ErrBadResponse)
	}
	claims, err := c.VerifyAccessToken(tr.AccessToken)
	if err != nil {
		return nil, err
	}
	out := &Tokens{AccessToken: tr.AccessToken, RefreshToken: tr.RefreshToken, IDToken: tr.IDToken, ExpiresIn: tr.ExpiresIn, Claims: claims}
	if tr.IDToken != "" {
		if id, err := c.VerifyIDToken(tr.IDToken, claims.OID); err != nil {
			out.IDTokenErr = err
		} else {
			out.AuthTime = id.AuthTime
		}
	}
	return out, nil
}

// textError is the ESIA error of a non-JSON error answer that names an ESIA code, or nil.
func textError(body []byte, status int) *Error {
	if status < 400 {
		return nil
	}
	text := string(body)
	loc := codePattern.FindStringIndex(text)
	if loc == nil {
		return nil
	}
	text = text[loc[0]:]
	if i := strings.IndexAny(text, "<\r\n"); i > 0 {
		text = text[:i]
	}
	if len(text) > 300 {
		text = text[:300]
	}
	return NewError("", strings.TrimSpace(text), status)
}

// networkError classifies a failure to talk to ESIA: a timeout or a failed connection, both
// ErrUnavailable.
func networkError(err error) error {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("%w: %w: %v", ErrUnavailable, ErrTimeout, err)
	}
	return fmt.Errorf("%w: %w: %v", ErrUnavailable, ErrConnection, err)
}

// observe reports a call to ESIA to Config.Observe, when set.
func (c *Client) observe(call string, start time.Time, err error) {
	if c.cfg.Observe != nil {
		c.cfg.Observe(call, time.Since(start), err)
	}
}

// do sends req and reads a bounded body. Network failures and timeouts are ErrUnavailable.
func (c *Client) do(req *http.Request) (_ []byte, status int, err error) {
	ctx, span := c.span(req.Context(), req)
	defer func() { endSpan(span, status, err) }()
	resp, err := c.http.Do(req.WithContext(ctx))
	if err != nil {
		return nil, 0, networkError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxBodyBytes+1))
	if err != nil {
		return nil, resp.StatusCode, fmt.Errorf("reading response: %w", networkError(err))
	}
	if int64(len(body)) > c.cfg.MaxBodyBytes {
		return nil, resp.StatusCode, fmt.Errorf("%w: response larger than %d bytes", ErrBadResponse, c.cfg.MaxBodyBytes)
	}
	return body, resp.StatusCode, nil
}
