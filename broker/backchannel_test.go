package broker_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	zrp "github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/oidc"

	"github.com/esia-broker/esia-broker/storage"
)

// diaryStandIn is a diary's back-channel logout endpoint: it keeps the logout tokens it takes,
// and can be down (its port closed) or failing (503).
type diaryStandIn struct {
	t       *testing.T
	addr    string
	srv     *httptest.Server
	failing atomic.Bool
	mu      sync.Mutex
	tokens  []string
}

func newDiaryStandIn(t *testing.T) *diaryStandIn {
	d := &diaryStandIn{t: t}
	d.srv = httptest.NewServer(d)
	d.addr = d.srv.Listener.Addr().String()
	t.Cleanup(func() { d.srv.Close() })
	return d
}

func (d *diaryStandIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if d.failing.Load() {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/backchannel" || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	d.mu.Lock()
	d.tokens = append(d.tokens, r.PostFormValue("logout_token"))
	d.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
}

func (d *diaryStandIn) URI() string { return "http://" + d.addr + "/backchannel" }

// down closes the diary's port; up opens it again on the same address.
func (d *diaryStandIn) down() { d.srv.Close() }
func (d *diaryStandIn) up() {
	l, err := net.Listen("tcp", d.addr)
	if err != nil {
		d.t.Fatalf("reopen the diary's port: %v", err)
	}
	d.srv = &httptest.Server{Listener: l, Config: &http.Server{Handler: d}}
	d.srv.Start()
}

func (d *diaryStandIn) received() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.tokens...)
}

// verifyLogoutToken checks a logout token as a diary on zitadel/oidc does: the signature by
// the broker's JWKS, then the claims Back-Channel Logout 1.0 §2.4 requires.
func verifyLogoutToken(t *testing.T, jwksURL, raw, issuer, clientID string) oidc.LogoutTokenClaims {
	t.Helper()
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil {
		t.Fatalf("logout token: %v", err)
	}
	if typ, _ := jws.Signatures[0].Header.ExtraHeaders["typ"].(string); typ != "logout+jwt" {
		t.Errorf("logout token typ %q", typ)
	}
	payload, err := zrp.NewRemoteKeySet(http.DefaultClient, jwksURL).VerifySignature(context.Background(), jws)
	if err != nil {
		t.Fatalf("logout token signature: %v", err)
	}
	var c oidc.LogoutTokenClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	if c.Issuer != issuer || len(c.Audience) != 1 || c.Audience[0] != clientID || c.JWTID == "" || c.Subject == "" && c.SessionID == "" {
		t.Errorf("logout token claims: %+v", c)
	}
	if _, ok := c.Events["http://schemas.openid.net/event/backchannel-logout"]; !ok {
		t.Errorf("logout token events: %v", c.Events)
	}
	if _, ok := c.Claims["nonce"]; ok {
		t.Error("a logout token carries a nonce (§2.4 forbids it)")
	}
	if exp, iat := c.Expiration.AsTime(), c.IssuedAt.AsTime(); !exp.After(iat) || exp.Sub(iat) > 10*time.Minute || time.Since(iat) > time.Minute {
		t.Errorf("logout token iat %s exp %s", iat, exp)
	}
	return c
}

// skewClock steps the store's clock forward (the back-off and the delivery window are the
// store's); the rest runs on time.Now.
func skewClock(s *storage.Store) func(time.Duration) {
	var skew atomic.Int64
	s.SetClock(func() time.Time { return time.Now().Add(time.Duration(skew.Load())) })
	return func(d time.Duration) { skew.Add(int64(d)) }
}

func backchannelClient(t *testing.T, h *harness, id, uri string) {
	t.Helper()
	c := h.client(id, id+"-secret-secret", "openid", "profile", "offline_access")
	c.BackchannelLogoutURI = uri
	if err := h.Store.UpdateClient(context.Background(), c); err != nil {
		t.Fatal(err)
	}
}

// TestBackchannelLogoutReachesADiaryThatWasDown: the diary's server logs a person out; the
// diary's back-channel endpoint is down, then failing, while the broker restarts; once it is
// up it receives the logout token once — signed, for its session — and never again (issue 16,
// item 8).
func TestBackchannelLogoutReachesADiaryThatWasDown(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := t.Context()
		step := skewClock(s)
		diary := newDiaryStandIn(t)
		h1 := newHarness(t, s)
		backchannelClient(t, h1, "kiasuo", diary.URI())
		z := newZitadelRP(t, h1, "kiasuo", "kiasuo-secret-secret", []string{"openid", "profile"})
		tokens := z.login(newBrowser(t))
		sid, _ := tokens.IDTokenClaims.Claims["sid"].(string)

		diary.down()
		if _, err := zrp.EndSession(ctx, z.party, tokens.IDToken, "", "", "", nil); err != nil {
			t.Fatalf("logout from the diary's server: %v", err)
		}
		if n, err := h1.Broker.DeliverLogouts(ctx); err != nil || n != 0 {
			t.Fatalf("delivery to a diary that is down: %d %v", n, err)
		}
		if m := metricsText(t, h1); !strings.Contains(m, `esia_broker_backchannel_logouts_total{result="failed"} 1`) {
			t.Errorf("the failure is not counted:\n%s", grepLines(m, "backchannel"))
		}

		// The broker restarts (a new process on the same database, same public address).
		h1.Srv.Close()
		h2 := newHarnessAt(t, s, h1.URL, nil)
		if n, _ := h2.Broker.DeliverLogouts(ctx); n != 0 {
			t.Error("delivered before the back-off ended")
		}
		step(10 * time.Second)
		diary.up()
		diary.failing.Store(true)
		if n, err := h2.Broker.DeliverLogouts(ctx); err != nil || n != 0 {
			t.Fatalf("delivery to a failing diary: %d %v", n, err)
		}
		diary.failing.Store(false)
		if n, _ := h2.Broker.DeliverLogouts(ctx); n != 0 {
			t.Error("delivered before the second back-off ended")
		}
		step(30 * time.Second)
		if n, err := h2.Broker.DeliverLogouts(ctx); err != nil || n != 1 {
			t.Fatalf("delivery once the diary is up: %d %v", n, err)
		}
		step(2 * time.Hour)
		if n, _ := h2.Broker.DeliverLogouts(ctx); n != 0 {
			t.Errorf("delivered again: %d", n)
		}
		got := diary.received()
		if len(got) != 1 {
			t.Fatalf("the diary received %d logout tokens, want 1", len(got))
		}
		c := verifyLogoutToken(t, h2.Direct+"/oauth2/jwks", got[0], h1.URL, "kiasuo")
		if c.SessionID != sid || c.Subject != tokens.IDTokenClaims.Subject {
			t.Errorf("logout token sid %q sub %q, want the ID token's %q %q", c.SessionID, c.Subject, sid, tokens.IDTokenClaims.Subject)
		}
		if m := metricsText(t, h2); !strings.Contains(m, `esia_broker_backchannel_logouts_total{result="delivered"} 1`) || !strings.Contains(m, "esia_broker_backchannel_logouts_pending 0") {
			t.Errorf("metrics after delivery:\n%s", grepLines(m, "backchannel"))
		}

	})
}

// TestBackchannelLogoutOnceAcrossReplicas: logouts of five sessions, and an account disabled
// (every session of the person), are delivered by two replicas running 50 delivery rounds at
// once: each logout token arrives exactly once. A diary that never answers is given up after
// the delivery window, audited.
func TestBackchannelLogoutOnceAcrossReplicas(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := t.Context()
		step := skewClock(s)
		diary := newDiaryStandIn(t)
		h1 := newHarness(t, s)
		backchannelClient(t, h1, "kiasuo", diary.URI())
		h2 := newHarnessAt(t, s, h1.URL, nil)
		z := newZitadelRP(t, h1, "kiasuo", "kiasuo-secret-secret", []string{"openid", "profile"})
		sids := map[string]bool{}
		for range 5 {
			tokens := z.login(newBrowser(t))
			sid, _ := tokens.IDTokenClaims.Claims["sid"].(string)
			sids[sid] = true
			if _, err := zrp.EndSession(ctx, z.party, tokens.IDToken, "", "", "", nil); err != nil {
				t.Fatal(err)
			}
		}
		// A sixth session ends because the account is disabled: a logout of every session.
		tokens := z.login(newBrowser(t))
		if err := s.RevokeTokensOf(ctx, tokens.IDTokenClaims.Subject); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var delivered atomic.Int32
		for i := range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				h := h1
				if i%2 == 1 {
					h = h2
				}
				n, err := h.Broker.DeliverLogouts(ctx)
				if err != nil {
					t.Error(err)
				}
				delivered.Add(int32(n))
			}()
		}
		wg.Wait()
		got := diary.received()
		if len(got) != 6 || delivered.Load() != 6 {
			t.Fatalf("the diary received %d logout tokens (delivered %d), want 6", len(got), delivered.Load())
		}
		seen := map[string]bool{}
		all := 0
		for _, raw := range got {
			c := verifyLogoutToken(t, h1.Direct+"/oauth2/jwks", raw, h1.URL, "kiasuo")
			switch {
			case c.SessionID == "" && c.Subject == tokens.IDTokenClaims.Subject:
				all++
			case sids[c.SessionID] && !seen[c.SessionID]:
				seen[c.SessionID] = true
			default:
				t.Errorf("unexpected logout token sid %q sub %q", c.SessionID, c.Subject)
			}
		}
		if len(seen) != 5 || all != 1 {
			t.Errorf("sessions logged out: %d of 5, every-session tokens %d", len(seen), all)
		}

		// A logout token is signed with the ID tokens' keys but is not one: as an
		// id_token_hint it ends no session.
		br := newBrowser(t)
		z.login(br)
		status := func() int {
			resp, err := br.Get(h1.URL + "/account")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return resp.StatusCode
		}
		if got := status(); got != http.StatusOK {
			t.Fatalf("account page of a fresh session: %d", got)
		}
		resp, err := br.Get(h1.URL + "/oauth2/logout?" + url.Values{"id_token_hint": {got[0]}, "client_id": {"kiasuo"}}.Encode())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := status(); got != http.StatusOK {
			t.Errorf("a logout token as id_token_hint ended the session: account page %d", got)
		}

		// A diary that never answers: tried with back-off, given up after 24 hours, audited.
		diary.failing.Store(true)
		tokens = z.login(newBrowser(t))
		if _, err := zrp.EndSession(ctx, z.party, tokens.IDToken, "", "", "", nil); err != nil {
			t.Fatal(err)
		}
		for range 12 {
			if n, err := h1.Broker.DeliverLogouts(ctx); err != nil || n != 0 {
				t.Fatalf("a failing diary: %d %v", n, err)
			}
			step(3 * time.Hour)
		}
		ev, err := s.AuditEvents(ctx, 20)
		if err != nil {
			t.Fatal(err)
		}
		abandoned := 0
		for _, e := range ev {
			if e.Action == "logout.backchannel_abandoned" && e.Target == "kiasuo" {
				abandoned++
			}
		}
		if n, _ := s.PendingLogouts(ctx); n != 0 || abandoned != 1 {
			t.Errorf("after the window: %d pending, %d abandoned in the audit log", n, abandoned)
		}
	})
}

// metricsText scrapes the broker's metrics.
func metricsText(t *testing.T, h *harness) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.Broker.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	return rec.Body.String()
}

func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestFrontchannelLogout: the diary asks the browser to log out (RP-Initiated Logout with its
// ID token and return address); the «Вы вышли» page loads, in hidden frames, the
// front-channel logout URI of each diary the person used, with iss and sid, allows exactly
// those origins as frames, and then goes on to the diary's return address. A diary the person
// never used gets no frame.
func TestFrontchannelLogout(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := t.Context()
		h := newHarness(t, s)
		for id, uri := range map[string]string{"kiasuo": "https://diary.example/logout/frame?tab=1", "asiou": "https://asiou.example/fc"} {
			c := h.client(id, id+"-secret-secret", "openid", "profile")
			c.FrontchannelLogoutURI = uri
			if err := s.UpdateClient(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		z := newZitadelRP(t, h, "kiasuo", "kiasuo-secret-secret", []string{"openid", "profile"})
		br := newBrowser(t)
		tokens := z.login(br)
		sid, _ := tokens.IDTokenClaims.Claims["sid"].(string)
		end, err := url.Parse(h.URL + "/oauth2/logout")
		if err != nil {
			t.Fatal(err)
		}
		end.RawQuery = url.Values{"id_token_hint": {tokens.IDToken}, "post_logout_redirect_uri": {rpPostLogout}, "state": {"st-1"}}.Encode()
		resp, err := br.Get(end.String())
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		page := string(body)
		frame := "https://diary.example/logout/frame?" + url.Values{"iss": {h.URL}, "sid": {sid}, "tab": {"1"}}.Encode()
		if resp.StatusCode != http.StatusOK || !strings.Contains(page, `src="`+html.EscapeString(frame)+`"`) {
			t.Fatalf("«Вы вышли»: %d, want a frame %s in\n%s", resp.StatusCode, frame, page)
		}
		if strings.Contains(page, "asiou.example") {
			t.Error("a diary the person never used got a frame")
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.HasSuffix(csp, "; frame-src https://diary.example") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("CSP %q", csp)
		}
		back := html.EscapeString(rpPostLogout + "?state=st-1")
		if !strings.Contains(page, `href="`+back+`"`) || !strings.Contains(page, `content="2;url=`+back+`"`) {
			t.Errorf("no way on to the diary's return address %s:\n%s", back, page)
		}
		// The session ended: a second logout has nobody to log out and no frames.
		resp, err = br.Get(h.URL + "/oauth2/logout/done")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), "<iframe") {
			t.Error("frames again after the session ended")
		}
	})
}

// TestLogoutReachesTheSessionsDiaries: a logout is told to the diaries the ended session gave
// codes to — a child's sub-account session too, though children give no consent — and not to
// other diaries the person once consented to (they would learn the sid of a session that was
// never theirs).
func TestLogoutReachesTheSessionsDiaries(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := t.Context()
		e := newLinkEnv(t, s, "ESIA_BROKER_DEV=true", "ESIA_BROKER_CHILDREN_ARGON2_MEMORY_KIB=8192")
		used, unused := newDiaryStandIn(t), newDiaryStandIn(t)
		c, err := s.Client(ctx, "kiasuo")
		if err != nil {
			t.Fatal(err)
		}
		c.BackchannelLogoutURI = used.URI()
		if err := s.UpdateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
		backchannelClient(t, e.h, "asiou", unused.URI())

		parent := newBrowser(t)
		res := e.esiaLogin(t, parent, "parent-two-kids", nil, e.acceptAll(t, parent))
		ptok, pclaims := e.tokens(t, res)
		// The parent once consented to the other diary, in another session.
		if err := s.SaveConsent(ctx, &storage.Consent{AccountID: pclaims.Sub, ClientID: "asiou", TextVersion: "2026-11", Scopes: "openid", GrantedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		_, page := e.get(t, parent, "/account")
		if code, body := e.postPage(t, parent, "/account/child", page, url.Values{"action": {"create"}, "student": {"s-1"}, "login": {"alex.bc"}, "password": {"correct-horse"}}); code != 200 {
			t.Fatalf("create the child's login: %d %s", code, body)
		}
		child := newBrowser(t)
		resp, body, verifier := e.childLoginIn(t, child, "alex.bc", "correct-horse")
		if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("child login: %d %s", resp.StatusCode, body)
		}
		ctok, cclaims := e.tokens(t, loginResult{final: resp, verifier: verifier})

		logout := func(idToken string) {
			t.Helper()
			resp, err := http.PostForm(e.h.URL+"/oauth2/logout", url.Values{"id_token_hint": {idToken}})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if _, err := e.h.Broker.DeliverLogouts(ctx); err != nil {
				t.Fatal(err)
			}
		}
		sidOf := func(tok interface{ Extra(string) any }) string {
			raw, _ := tok.Extra("id_token").(string)
			parts := strings.Split(raw, ".")
			payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
			var c struct {
				SID string `json:"sid"`
			}
			_ = json.Unmarshal(payload, &c)
			return c.SID
		}

		logout(ctok.Extra("id_token").(string))
		got := used.received()
		if len(got) != 1 {
			t.Fatalf("the child's logout reached the diary %d times, want 1", len(got))
		}
		lc := verifyLogoutToken(t, e.h.URL+"/oauth2/jwks", got[0], e.h.URL, "kiasuo")
		if lc.Subject != cclaims.Sub || lc.SessionID != sidOf(ctok) {
			t.Errorf("the child's logout token: sub %q sid %q, want %q %q", lc.Subject, lc.SessionID, cclaims.Sub, sidOf(ctok))
		}

		logout(ptok.Extra("id_token").(string))
		if n := len(used.received()); n != 2 {
			t.Errorf("the parent's logout: the diary of the session got %d tokens in all, want 2", n)
		}
		if n := len(unused.received()); n != 0 {
			t.Errorf("a diary the ended session never used got %d logout tokens", n)
		}
	})
}
