package broker_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/esia-broker/esia-broker/esia/esiatest"
	"github.com/esia-broker/esia-broker/provider"
	"github.com/esia-broker/esia-broker/upstream"

	"github.com/esia-broker/esia-broker/broker"
	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/storage/storagetest"

	"go.opentelemetry.io/otel/trace"
)

// fakeConnector is the test upstream: it "logs in" whoever its Subject names by sending the
// browser straight back to the broker's callback.
type fakeConnector struct {
	issuer  string
	Subject string
}

func (f *fakeConnector) ID() string { return "fake" }
func (f *fakeConnector) DisplayName() string {
	return "Войти через тестовый сервис"
}
func (f *fakeConnector) LoginURL(_ context.Context, state string) (string, string, error) {
	return f.issuer + "/fake/callback?state=" + url.QueryEscape(state), "data-for-" + state, nil
}
func (f *fakeConnector) HandleCallback(_ context.Context, r *http.Request, data string) (*upstream.Identity, error) {
	if data != "data-for-"+r.URL.Query().Get("state") {
		return nil, fmt.Errorf("flow data lost: %q", data)
	}
	return &upstream.Identity{Subject: f.Subject, FamilyName: "Иванова", GivenName: "Мария", MiddleName: "Петровна", Birthdate: day("1985-03-04"), AMR: []string{"esia"}}, nil
}

type harness struct {
	t      testing.TB
	Logs   *syncBuffer
	URL    string
	Direct string // this replica's own address (URL is the public one)
	Broker *broker.Broker
	Store  *storage.Store
	Conn   *fakeConnector
	Srv    *httptest.Server
}

// day moves the dates in a fixture to the test's calendar (esiatest.TestDay), so that everyone
// keeps the age the fixture was written with.
func day(text string) string {
	return esiatest.ShiftDates(text, esiatest.OffsetOf(esiatest.TestDay()))
}

func secret() string { return base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32))) }

func testConfig(t testing.TB, issuer string, extra ...string) *config.Config {
	t.Helper()
	env := []string{
		"ESIA_BROKER_ISSUER=" + issuer,
		"ESIA_BROKER_SECRETS_MASTER_KEY=" + secret(),
		"ESIA_BROKER_SECRETS_COOKIE_KEY=" + secret(),
		"ESIA_BROKER_SECRETS_SNILS_PEPPER=" + secret(),
		"ESIA_BROKER_SECRETS_TOKEN_KEY=" + secret(),
		"ESIA_BROKER_SESSION_SECURE_COOKIE=false",
	}
	cfg, err := config.Load("", append(env, extra...))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

func newHarness(t testing.TB, store *storage.Store, extraEnv ...string) *harness {
	return newHarnessWith(t, store, nil, extraEnv...)
}

// newHarnessWith starts a broker whose connectors come from conns (given the issuer); nil
// means the fake connector.
func newHarnessWith(t testing.TB, store *storage.Store, conns func(issuer string) []upstream.Connector, extraEnv ...string) *harness {
	return newHarnessAt(t, store, "", conns, extraEnv...)
}

// newHarnessAt starts a broker on its own port; issuer, when not empty, is the public address
// (a load balancer in front of several replicas).
func newHarnessAt(t testing.TB, store *storage.Store, issuer string, conns func(issuer string) []upstream.Connector, extraEnv ...string) *harness {
	t.Helper()
	return startHarness(t, store, issuer, conns, nil, extraEnv...)
}

// startHarness is newHarnessAt with a tracer provider for the broker and the store (nil: none).
func startHarness(t testing.TB, store *storage.Store, issuer string, conns func(issuer string) []upstream.Connector, tp trace.TracerProvider, extraEnv ...string) *harness {
	t.Helper()
	if tp != nil {
		store.SetTracer(tp)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if issuer == "" {
		issuer = "http://" + l.Addr().String()
	}
	conn := &fakeConnector{issuer: issuer, Subject: "1000299654"}
	connectors := []upstream.Connector{conn}
	if conns != nil {
		connectors = conns(issuer)
	}
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := broker.New(context.Background(), broker.Options{Config: testConfig(t, issuer, extraEnv...), Store: store, Connectors: connectors, Logger: logger, Calendar: esiatest.TestDay, Tracer: tp})
	if err != nil {
		t.Fatalf("broker.New: %v", err)
	}
	srv := &httptest.Server{Listener: l, Config: &http.Server{Handler: b.Handler()}}
	srv.Start()
	t.Cleanup(srv.Close)
	return &harness{t: t, URL: issuer, Direct: "http://" + l.Addr().String(), Broker: b, Store: store, Conn: conn, Srv: srv, Logs: logs}
}

const (
	rpRedirect   = "http://127.0.0.1:9/callback"
	rpPostLogout = "http://127.0.0.1:9/bye"
)

// client registers a relying party; secret "" makes it public.
func (h *harness) client(id, secret string, scopes ...string) *storage.Client {
	h.t.Helper()
	if len(scopes) == 0 {
		scopes = []string{"openid", "profile", "offline_access"}
	}
	c := &storage.Client{
		ID: id, Public: secret == "", RedirectURIs: []string{rpRedirect}, PostLogoutRedirectURIs: []string{rpPostLogout},
		GrantTypes: []string{"authorization_code", "refresh_token", "client_credentials"}, ResponseTypes: []string{"code"}, Scopes: scopes,
	}
	if secret != "" {
		c.SecretHash = provider.HashClientSecret(secret)
	}
	if err := h.Store.CreateClient(context.Background(), c); err != nil {
		h.t.Fatalf("create client: %v", err)
	}
	return c
}

// browser is a cookie-keeping HTTP client that stops at the RP's redirect URI.
type browser struct {
	*http.Client
}

func newBrowser(t testing.TB) *browser {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), "http://127.0.0.1:9/") {
			return http.ErrUseLastResponse
		}
		if len(via) > 10 {
			return fmt.Errorf("too many redirects")
		}
		return nil
	}}
	return &browser{Client: c}
}

var loginLink = regexp.MustCompile(`href="(/login/fake\?login=[^"]+)"`)

// login runs authURL through the start page and the fake upstream, and returns where the broker
// finally sent the browser (the RP's redirect URI with code or error).
func (h *harness) login(br *browser, authURL string) *url.URL {
	h.t.Helper()
	resp, err := br.Get(authURL)
	if err != nil {
		h.t.Fatalf("authorize: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode == http.StatusFound || resp.StatusCode == http.StatusSeeOther {
		u, _ := url.Parse(loc)
		return u
	}
	if consentForm.Match(body) {
		resp.Body = io.NopCloser(strings.NewReader(string(body)))
		return h.finish(br, resp)
	}
	m := loginLink.FindSubmatch(body)
	if m == nil {
		h.t.Fatalf("no login link on the start page (status %d): %s", resp.StatusCode, body)
	}
	link := strings.ReplaceAll(string(m[1]), "&amp;", "&")
	resp, err = br.Get(h.URL + link)
	if err != nil {
		h.t.Fatalf("login: %v", err)
	}
	return h.finish(br, resp)
}

var (
	consentForm = regexp.MustCompile(`action="/consent"[\s\S]*?name="csrf" value="([^"]+)"[\s\S]*?name="login" value="([^"]+)"`)
)

// finish answers the consent page (accepting) until the broker redirects to the RP, and returns
// that redirect.
func (h *harness) finish(br *browser, resp *http.Response) *url.URL {
	h.t.Helper()
	resp, body := acceptConsents(h.t, br, resp)
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		h.t.Fatalf("login ended with %d, not a redirect to the RP: %s", resp.StatusCode, body)
	}
	u, _ := url.Parse(resp.Header.Get("Location"))
	return u
}

// acceptConsents answers every consent page (on whichever broker shows it) and returns the first
// response that is not one, with its body read.
func acceptConsents(t testing.TB, br *browser, resp *http.Response) (*http.Response, string) {
	t.Helper()
	for range 6 {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := consentForm.FindSubmatch(body)
		if resp.StatusCode != http.StatusOK || m == nil {
			return resp, string(body)
		}
		base := resp.Request.URL.Scheme + "://" + resp.Request.URL.Host
		var err error
		resp, err = br.PostForm(base+"/consent", url.Values{"csrf": {string(m[1])}, "login": {string(m[2])}, "decision": {"accept"}})
		if err != nil {
			t.Fatal(err)
		}
	}
	t.Fatal("too many consent pages")
	return nil, ""
}

func storagetestOpenSQLite(t testing.TB) *storage.Store {
	return storagetest.Open(t, storagetest.NewSQLiteDSN(t))
}

// syncBuffer collects log output from concurrent handlers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func base64URLDecode(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(s) }
