package broker_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/upstream"
	"github.com/esia-broker/esia-broker/upstream/esiaconn"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/esia-broker/esia-broker/esia"
	"github.com/esia-broker/esia-broker/esia/esiatest"
	"github.com/esia-broker/esia-broker/storage"
)

var esiaScopes = []string{"openid", "fullname", "birthdate", "gender", "snils"}

// esiaUpstream starts the ESIA emulator and returns a connector factory for the harness. base,
// when not empty, replaces the emulator's address for the ESIA client (a dead or fake ESIA).
func esiaUpstream(t *testing.T, base string, timeout time.Duration) (func(string) []upstream.Connector, *httptest.Server) {
	t.Helper()
	conns, srv, _ := esiaUpstreamWith(t, base, timeout, esiaconn.Config{})
	return conns, srv
}

// esiaUpstreamWith is esiaUpstream with connector options; the last result gives the emulator
// once the harness has made the connectors.
func esiaUpstreamWith(t *testing.T, base string, timeout time.Duration, opts esiaconn.Config) (func(string) []upstream.Connector, *httptest.Server, func() *esiatest.Server) {
	t.Helper()
	return esiaUpstreamEmu(t, base, timeout, opts, nil)
}

// esiaUpstreamEmu is esiaUpstreamWith with the emulator's options changed by mod.
func esiaUpstreamEmu(t *testing.T, base string, timeout time.Duration, opts esiaconn.Config, mod func(*esiatest.Options)) (func(string) []upstream.Connector, *httptest.Server, func() *esiatest.Server) {
	t.Helper()
	key, cert, err := esiatest.NewClientCredentials("ESIA_BROKER_TEST")
	if err != nil {
		t.Fatal(err)
	}
	var emu *esiatest.Server
	srv := httptest.NewUnstartedServer(nil)
	srv.Start()
	t.Cleanup(srv.Close)
	return func(issuer string) []upstream.Connector {
		eo := esiatest.Options{Personas: esiatest.PersonasOn(esiatest.TestDay()), Clients: []esiatest.Client{{ID: "ESIA_BROKER_TEST", CertDER: cert, RedirectURIs: []string{issuer + "/esia/callback", issuer + "/oauth2/logout/done"}, Scopes: esiaScopes}}}
		if mod != nil {
			mod(&eo)
		}
		emu, err = esiatest.New(eo)
		if err != nil {
			t.Fatal(err)
		}
		srv.Config.Handler = emu.Handler()
		signer, err := esia.NewKeySigner(key, cert)
		if err != nil {
			t.Fatal(err)
		}
		if base == "" {
			base = srv.URL
		}
		c, err := esia.New(esia.Config{BaseURL: base, ClientID: "ESIA_BROKER_TEST", RedirectURI: issuer + "/esia/callback", Scopes: esiaScopes, Verifier: emu.TokenVerifier(), Timeout: timeout}, signer)
		if err != nil {
			t.Fatal(err)
		}
		return []upstream.Connector{openESIA(t, c, opts)}
	}, srv, func() *esiatest.Server { return emu }
}

// kiasuoOn starts a broker on store s with the connectors of conns, registers the relying
// party kiasuo and returns both.
func kiasuoOn(t *testing.T, s *storage.Store, conns func(string) []upstream.Connector) (*harness, *rp) {
	t.Helper()
	h := newHarnessWith(t, s, conns)
	h.client("kiasuo", "secret-secret-secret")
	return h, newRP(t, h, "kiasuo", "secret-secret-secret")
}

// forgetESIA drops the emulator's single sign-on cookie from the browser, as if its ESIA session
// had ended: the next visit to ESIA shows the persona page again.
func forgetESIA(br *browser, esiaURL *url.URL) {
	br.Jar.SetCookies(esiaURL, []*http.Cookie{{Name: esiatest.SSOCookie, Value: "", Path: "/", MaxAge: -1}})
}

var esiaLink = regexp.MustCompile(`href="(/login/esia\?login=[^"]+)"`)

// startESIA runs the RP's authorization through the start page and returns the emulator URL the
// broker sent the browser to.
func startESIA(t *testing.T, h *harness, br *browser, authURL string) *url.URL {
	t.Helper()
	resp, err := br.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := esiaLink.FindSubmatch(body)
	if m == nil {
		t.Fatalf("no «Войти через Госуслуги» on the start page: %s", body)
	}
	stop := *br.Client
	stop.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return followToESIA(t, &stop, h.URL+strings.ReplaceAll(string(m[1]), "&amp;", "&"))
}

// followToESIA follows redirects from start until the one to ESIA's /aas/oauth2/v2/ac, through
// ESIA's logout when the broker sends the browser there first, and returns it.
func followToESIA(t *testing.T, stop *http.Client, start string) *url.URL {
	t.Helper()
	next := start
	for range 5 {
		resp, err := stop.Get(next)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		u, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
		if err != nil || resp.StatusCode != http.StatusFound {
			t.Fatalf("not sent to ESIA: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		if strings.Contains(u.Path, "/aas/oauth2/v2/ac") {
			return u
		}
		next = u.String()
	}
	t.Fatalf("not sent to ESIA after 5 redirects from %s", start)
	return nil
}

// choosePersona answers the emulator's persona page and follows the redirects; it returns the
// last response (the RP's redirect, or a broker page).
func choosePersona(t *testing.T, br *browser, esiaURL *url.URL, persona string) (*http.Response, string) {
	t.Helper()
	resp, err := br.Get(esiaURL.String())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="request" value="([^"]+)"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("no persona page: %s", page)
	}
	form := url.Values{"request": {string(m[1])}}
	if persona == "" {
		form.Set("cancel", "1")
	} else {
		form.Set("persona", persona)
	}
	resp, err = br.PostForm(esiaURL.String(), form)
	if err != nil {
		t.Fatal(err)
	}
	return acceptConsents(t, br, resp)
}

// nothingWritten checks that a failed login left no account, session, code or token.
func nothingWritten(t *testing.T, s *storage.Store) {
	t.Helper()
	ctx := context.Background()
	if n, _ := s.CountAccounts(ctx); n != 0 {
		t.Errorf("%d accounts written", n)
	}
	counts, _ := s.TokenCounts(ctx)
	for table, n := range counts {
		if n != 0 {
			t.Errorf("%d rows in %s", n, table)
		}
	}
}

func TestESIAPersonas(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		conns, _ := esiaUpstream(t, "", 5*time.Second)
		h, r := kiasuoOn(t, s, conns)
		tests := []struct {
			persona, wantName, oid string
		}{
			{"parent-two-kids", "Иванова Мария Петровна", "1000300001"},
			{"parent-no-match", "Петров Сергей Николаевич", "1000300002"},
			{"student-15", "Кузнецов Иван Андреевич", "1000300004"},
			{"parent-three-kids", "Смирнова Ольга Сергеевна", "1000300005"},
		}
		for _, tc := range tests {
			t.Run(tc.persona, func(t *testing.T) {
				br := newBrowser(t)
				verifier, nonce := oauth2.GenerateVerifier(), "nonce-"+tc.persona
				u := startESIA(t, h, br, r.conf.AuthCodeURL("state-"+tc.persona, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce)))
				resp, body := choosePersona(t, br, u, tc.persona)
				loc, _ := url.Parse(resp.Header.Get("Location"))
				if loc == nil || loc.Query().Get("code") == "" {
					t.Fatalf("no code for %s: %d %s", tc.persona, resp.StatusCode, body)
				}
				tok, err := r.conf.Exchange(r.ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
				if err != nil {
					t.Fatal(err)
				}
				idt, err := r.verifier.Verify(r.ctx, tok.Extra("id_token").(string))
				if err != nil {
					t.Fatal(err)
				}
				var c struct {
					Name string   `json:"name"`
					AMR  []string `json:"amr"`
				}
				_ = idt.Claims(&c)
				if c.Name != tc.wantName || len(c.AMR) != 1 || c.AMR[0] != "esia" {
					t.Errorf("claims %+v", c)
				}
				a, err := s.AccountByUpstream(context.Background(), "esia", tc.oid)
				if err != nil || a.ID != idt.Subject {
					t.Errorf("account for oid %s: %+v %v", tc.oid, a, err)
				}
			})
		}
	})
}

func TestESIAFailuresWriteNothing(t *testing.T) {
	type check func(t *testing.T, status int, body string)
	page := func(status int, words ...string) check {
		return func(t *testing.T, got int, body string) {
			t.Helper()
			if got != status {
				t.Errorf("status %d, want %d", got, status)
			}
			for _, w := range append(words, `lang="ru"`, "Попробовать снова") {
				if !strings.Contains(body, w) {
					t.Errorf("page lacks %q: %s", w, body)
				}
			}
		}
	}
	t.Run("unconfirmed account", func(t *testing.T) {
		forEachStore(t, func(t *testing.T, s *storage.Store) {
			conns, _ := esiaUpstream(t, "", 5*time.Second)
			h, r := kiasuoOn(t, s, conns)
			br := newBrowser(t)
			u := startESIA(t, h, br, r.conf.AuthCodeURL("state-12345678", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			resp, body := choosePersona(t, br, u, "unconfirmed")
			page(403, "не подтверждена", "МФЦ")(t, resp.StatusCode, body)
			nothingWritten(t, s)
		})
	})
	t.Run("user cancels at ESIA", func(t *testing.T) {
		s := openSQLite(t)
		conns, _ := esiaUpstream(t, "", 5*time.Second)
		h, r := kiasuoOn(t, s, conns)
		br := newBrowser(t)
		u := startESIA(t, h, br, r.conf.AuthCodeURL("state-12345678", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		resp, body := choosePersona(t, br, u, "")
		page(400, "Вход отменён")(t, resp.StatusCode, body)
		nothingWritten(t, s)
	})
	// Every ESIA error code the broker knows, as ESIA puts it on the redirect back, with the
	// OAuth error ESIA sends with it: the code decides, not the OAuth error.
	for _, info := range esia.Codes() {
		t.Run("ESIA error "+info.Code, func(t *testing.T) {
			s := openSQLite(t)
			conns, _ := esiaUpstream(t, "", 5*time.Second)
			h, r := kiasuoOn(t, s, conns)
			br := newBrowser(t)
			u := startESIA(t, h, br, r.conf.AuthCodeURL("state-12345678", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			q := url.Values{"state": {u.Query().Get("state")}, "error": {info.OAuthError}, "error_description": {info.Code + ": something went wrong"}}
			resp, err := br.Get(h.URL + "/esia/callback?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var status int
			var want []string
			switch info.Class {
			case esia.ClassCancelled:
				status, want = 400, []string{"Вход отменён"}
			case esia.ClassUnconfirmed:
				status, want = 403, []string{"не подтверждена"}
			case esia.ClassExpired:
				status, want = 400, []string{"Время входа истекло"}
			case esia.ClassConfiguration:
				// Forged here (ESIA itself takes the broker's requests): the probe does not
				// confirm it, so the parent is asked to try again and no operator is alarmed.
				status, want = 502, []string{"Госуслуги отклонили вход", info.Code, "Попробуйте войти ещё раз"}
			case esia.ClassUnavailable:
				status, want = 503, []string{"Госуслуги не отвечают"}
			default:
				t.Fatalf("class %d has no page", info.Class)
			}
			page(status, want...)(t, resp.StatusCode, string(body))
			if info.Class != esia.ClassCancelled && strings.Contains(string(body), "отменили") {
				t.Errorf("%s (%s) told the parent they cancelled: %s", info.Code, info.OAuthError, body)
			}
			if logs := h.Logs.String(); strings.Contains(logs, "upstream refuses the broker's configuration") {
				t.Errorf("a forged callback alarmed the operator: %s", logs)
			}
			nothingWritten(t, s)
		})
	}
	// access_denied without a code is a refusal; with an unknown code the code is shown.
	for _, tc := range []struct{ oauth, desc, want string }{
		{"access_denied", "the user said no", "Вход отменён"},
		{"access_denied", "ESIA-009999: something new", "ESIA-009999"},
		{"invalid_client", "no code at all", "Госуслуги отклонили вход"},
	} {
		t.Run("callback error "+tc.oauth+" "+tc.desc, func(t *testing.T) {
			s := openSQLite(t)
			conns, _ := esiaUpstream(t, "", 5*time.Second)
			h, r := kiasuoOn(t, s, conns)
			br := newBrowser(t)
			u := startESIA(t, h, br, r.conf.AuthCodeURL("state-12345678", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			q := url.Values{"state": {u.Query().Get("state")}, "error": {tc.oauth}, "error_description": {tc.desc}}
			resp, err := br.Get(h.URL + "/esia/callback?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 400 || !strings.Contains(string(body), tc.want) {
				t.Errorf("%d, page lacks %q: %s", resp.StatusCode, tc.want, body)
			}
		})
	}
	fake := func(te http.HandlerFunc) func(t *testing.T) (*harness, *storage.Store, *rp) {
		return func(t *testing.T) (*harness, *storage.Store, *rp) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/v2/ac") {
					back, _ := url.Parse(r.URL.Query().Get("redirect_uri"))
					back.RawQuery = url.Values{"code": {"c0de"}, "state": {r.URL.Query().Get("state")}}.Encode()
					http.Redirect(w, r, back.String(), http.StatusFound)
					return
				}
				te(w, r)
			}))
			t.Cleanup(srv.Close)
			s := openSQLite(t)
			conns, _ := esiaUpstream(t, srv.URL, 300*time.Millisecond)
			h := newHarnessWith(t, s, conns)
			h.client("kiasuo", "secret-secret-secret")
			return h, s, newRP(t, h, "kiasuo", "secret-secret-secret")
		}
	}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) (*harness, *storage.Store, *rp)
		want  check
	}{
		{"ESIA down", func(t *testing.T) (*harness, *storage.Store, *rp) {
			dead := httptest.NewServer(http.NotFoundHandler())
			deadURL := dead.URL
			dead.Close()
			s := openSQLite(t)
			conns, _ := esiaUpstream(t, deadURL, 300*time.Millisecond)
			h := newHarnessWith(t, s, conns)
			h.client("kiasuo", "secret-secret-secret")
			return h, s, newRP(t, h, "kiasuo", "secret-secret-secret")
		}, page(503, "Госуслуги не отвечают")},
		{"ESIA slow", fake(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(3 * time.Second):
			case <-r.Context().Done():
			}
		}), page(503, "Госуслуги не отвечают")},
		{"ESIA answers 500", fake(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", 500) }), page(503, "Госуслуги не отвечают")},
		{"ESIA answers garbage", fake(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("<<garbage>>")) }), page(502, "неверный ответ")},
		{"ESIA resets the connection", fake(func(w http.ResponseWriter, _ *http.Request) {
			c, _, _ := w.(http.Hijacker).Hijack()
			c.Close()
		}), page(503, "Госуслуги не отвечают")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, s, r := tc.setup(t)
			br := newBrowser(t)
			u := startESIA(t, h, br, r.conf.AuthCodeURL("state-12345678", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			if strings.Contains(tc.name, "down") {
				// The browser cannot reach a dead ESIA either: play its redirect back with a code.
				u, _ = url.Parse(h.URL + "/esia/callback?" + url.Values{"code": {"c0de"}, "state": {u.Query().Get("state")}}.Encode())
			}
			start := time.Now()
			resp, err := br.Get(u.String())
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if time.Since(start) > 2*time.Second {
				t.Errorf("the page took %s: ESIA's wait is not bounded", time.Since(start))
			}
			tc.want(t, resp.StatusCode, string(body))
			nothingWritten(t, s)
		})
	}
}

func TestESIACallbackReplayAndForgery(t *testing.T) {
	s := openSQLite(t)
	conns, _ := esiaUpstream(t, "", 5*time.Second)
	h, r := kiasuoOn(t, s, conns)
	br := newBrowser(t)
	u := startESIA(t, h, br, r.conf.AuthCodeURL("state-12345678", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))

	// The callback in another browser (no cookie of the one that started) is refused and burns the flow.
	stranger := newBrowser(t)
	forged := h.URL + "/esia/callback?" + url.Values{"code": {"x"}, "state": {u.Query().Get("state")}}.Encode()
	resp, _ := stranger.Get(forged)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "не в тот браузер") {
		t.Errorf("foreign browser: %d %s", resp.StatusCode, body)
	}
	for name, state := range map[string]string{"replayed": u.Query().Get("state"), "forged": "3f1c1c5e-0000-4000-8000-000000000000", "empty": ""} {
		resp, _ := br.Get(h.URL + "/esia/callback?" + url.Values{"code": {"x"}, "state": {state}}.Encode())
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "Время входа истекло") {
			t.Errorf("%s state: %d %s", name, resp.StatusCode, body)
		}
	}
	nothingWritten(t, s)
}

func openSQLite(t testing.TB) *storage.Store {
	t.Helper()
	return storagetestOpenSQLite(t)
}

// TestIdpGoesStraightToUpstream: with idp=esia the authorization request goes to ESIA at once
// (no start page, no /login hop); a returning user with consent given comes back from the
// callback straight to the client; an unknown idp shows the start page; an upstream that
// cannot be signed for shows a page whose «Повторить» still works.
func TestIdpGoesStraightToUpstream(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		conns, _ := esiaUpstream(t, "", 5*time.Second)
		_, r := kiasuoOn(t, s, conns)
		br := newBrowser(t)
		stop := *br.Client
		stop.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		authURL := func(verifier string) string {
			return r.conf.AuthCodeURL("state-idp-test", oauth2.S256ChallengeOption(verifier), oidc.Nonce("nonce-idp-test"), oauth2.SetAuthURLParam("idp", "esia"), oauth2.SetAuthURLParam("prompt", "login"))
		}
		for i, firstLogin := range []bool{true, false} {
			verifier := oauth2.GenerateVerifier()
			// Straight to ESIA (prompt=login: through ESIA's logout first), no start page.
			esiaURL := followToESIA(t, &stop, authURL(verifier))
			var back *url.URL
			if firstLogin {
				resp, body := choosePersona(t, br, esiaURL, "parent-two-kids")
				if back, _ = url.Parse(resp.Header.Get("Location")); back == nil || back.Query().Get("code") == "" {
					t.Fatalf("first login: no code: %d %s", resp.StatusCode, body)
				}
			} else {
				// Through the persona page by hand, to see what the callback itself answers.
				forgetESIA(br, esiaURL)
				page, _ := br.Get(esiaURL.String())
				body, _ := io.ReadAll(page.Body)
				page.Body.Close()
				m := regexp.MustCompile(`name="request" value="([^"]+)"`).FindSubmatch(body)
				if m == nil {
					t.Fatalf("no persona page: %s", body)
				}
				resp, err := stop.PostForm(esiaURL.String(), url.Values{"request": {string(m[1])}, "persona": {"parent-two-kids"}})
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				resp, err = stop.Get(resp.Header.Get("Location")) // the broker's /esia/callback
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if back, _ = url.Parse(resp.Header.Get("Location")); (resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther) || back == nil || !strings.HasPrefix(back.String(), rpRedirect) || back.Query().Get("code") == "" {
					t.Fatalf("returning login: the callback answered %d → %q, want the client's redirect with a code", resp.StatusCode, resp.Header.Get("Location"))
				}
			}
			tok, err := r.conf.Exchange(r.ctx, back.Query().Get("code"), oauth2.VerifierOption(verifier))
			if err != nil {
				t.Fatalf("login %d: exchange: %v", i, err)
			}
			if _, err := r.verifier.Verify(r.ctx, tok.Extra("id_token").(string)); err != nil {
				t.Fatalf("login %d: id token: %v", i, err)
			}
		}

		resp, err := newBrowser(t).Get(r.conf.AuthCodeURL("state-idp-test", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("idp", "nope")))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !esiaLink.Match(body) {
			t.Errorf("unknown idp: %d, want the start page with «Войти через Госуслуги»", resp.StatusCode)
		}
	})
}

func TestIdpWithBrokenSigner(t *testing.T) {
	s := openSQLite(t)
	conns := func(issuer string) []upstream.Connector {
		c, err := esia.New(esia.Config{BaseURL: "http://127.0.0.1:9", ClientID: "ESIA_BROKER_TEST", RedirectURI: issuer + "/esia/callback", Scopes: esiaScopes, Timeout: time.Second},
			&esia.CommandSigner{Argv: []string{"false"}, Hash: "00", Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return []upstream.Connector{openESIA(t, c, esiaconn.Config{})}
	}
	h, r := kiasuoOn(t, s, conns)
	br := newBrowser(t)
	resp, err := br.Get(r.conf.AuthCodeURL("state-idp-test", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("idp", "esia")))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	retry := regexp.MustCompile(`href="(/login/esia\?login=[^"]+)"`).FindSubmatch(body)
	if resp.StatusCode < 500 || retry == nil {
		t.Fatalf("broken signer: %d, want an error page with a retry link: %s", resp.StatusCode, body)
	}
	resp, err = br.Get(h.URL + strings.ReplaceAll(string(retry[1]), "&amp;", "&"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode < 500 || strings.Contains(string(body), "Время входа истекло") {
		t.Errorf("retry: %d, want the upstream error again (the login request kept), got: %s", resp.StatusCode, body)
	}
	nothingWritten(t, s)
}

// TestLogoutEndsESIASession: on a shared school computer, parent A logs out of the diary; the
// broker's logout also ends ESIA's session, so parent B who presses «Войти через Госуслуги»
// next sees ESIA's login, not A's account. With the session kept (KeepESIASession) or before
// the fix, B is logged in as A at once.
func TestLogoutEndsESIASession(t *testing.T) {
	for _, keep := range []bool{false, true} {
		t.Run(map[bool]string{false: "default", true: "ESIA session kept"}[keep], func(t *testing.T) {
			s := openSQLite(t)
			conns, _, emu := esiaUpstreamWith(t, "", 5*time.Second, esiaconn.Config{KeepESIASession: keep})
			h, r := kiasuoOn(t, s, conns)
			br := newBrowser(t)
			u := startESIA(t, h, br, r.conf.AuthCodeURL("state-12345678", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			resp, body := choosePersona(t, br, u, "parent-two-kids")
			back, _ := url.Parse(resp.Header.Get("Location"))
			if back == nil || back.Query().Get("code") == "" {
				t.Fatalf("A's login: %d %s", resp.StatusCode, body)
			}
			if emu().Sessions() != 1 {
				t.Fatalf("ESIA sessions after login: %d", emu().Sessions())
			}
			// A logs out from the diary's page (the account page's «Выйти» posts the same form).
			stop := *br.Client
			stop.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			resp, err := stop.Get(h.URL + "/oauth2/logout?" + url.Values{"client_id": {"kiasuo"}, "post_logout_redirect_uri": {rpPostLogout}, "state": {"bye-1"}}.Encode())
			if err != nil {
				t.Fatal(err)
			}
			page, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(page)
			if csrf == nil {
				t.Fatalf("no logout confirmation: %d %s", resp.StatusCode, page)
			}
			resp, err = stop.PostForm(h.URL+"/oauth2/logout", url.Values{"csrf": {string(csrf[1])}, "client_id": {"kiasuo"}, "post_logout_redirect_uri": {rpPostLogout}, "state": {"bye-1"}})
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			loc := resp.Header.Get("Location")
			if keep {
				if loc != rpPostLogout+"?state=bye-1" {
					t.Fatalf("logout with the ESIA session kept: %d → %q", resp.StatusCode, loc)
				}
			} else {
				want := emuURL(t, u) + "/idp/ext/Logout?" + url.Values{"client_id": {"ESIA_BROKER_TEST"}, "redirect_url": {h.URL + "/oauth2/logout/done"}}.Encode()
				if resp.StatusCode != http.StatusFound || loc != want {
					t.Fatalf("logout: %d → %q, want ESIA's logout %q", resp.StatusCode, loc, want)
				}
				// Through ESIA's logout and back: the broker ends where the diary asked.
				for range 2 {
					resp, err = stop.Get(loc)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					loc = resp.Header.Get("Location")
				}
				if loc != rpPostLogout+"?state=bye-1" {
					t.Fatalf("after ESIA's logout: %d → %q, want the diary's post-logout address", resp.StatusCode, loc)
				}
			}
			// Parent B at the same computer presses «Войти через Госуслуги».
			u = startESIA(t, h, br, r.conf.AuthCodeURL("state-87654321", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			resp, err = stop.Get(u.String())
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			sawLogin := resp.StatusCode == http.StatusOK
			if sawLogin == keep {
				t.Errorf("B sees ESIA's login page = %v (status %d), want %v; ESIA sessions: %d", sawLogin, resp.StatusCode, !keep, emu().Sessions())
			}
		})
	}
	t.Run("a forged return address in the logout cookie is checked again", func(t *testing.T) {
		s := openSQLite(t)
		conns, _ := esiaUpstream(t, "", 5*time.Second)
		h := newHarnessWith(t, s, conns)
		h.client("kiasuo", "secret-secret-secret")
		for _, tc := range []struct{ cookie, wantLoc string }{
			{base64.RawURLEncoding.EncodeToString([]byte(url.Values{"c": {"kiasuo"}, "u": {"https://evil.example/"}}.Encode())), ""},
			{base64.RawURLEncoding.EncodeToString([]byte(url.Values{"c": {"nosuch"}, "u": {rpPostLogout}}.Encode())), ""},
			{"!!garbage", ""},
			{base64.RawURLEncoding.EncodeToString([]byte(url.Values{"c": {"kiasuo"}, "u": {rpPostLogout}, "s": {"x"}}.Encode())), rpPostLogout + "?state=x"},
		} {
			req, _ := http.NewRequest(http.MethodGet, h.URL+"/oauth2/logout/done", nil)
			req.AddCookie(&http.Cookie{Name: "esia_broker_logout", Value: tc.cookie})
			resp, err := http.DefaultTransport.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header.Get("Location"); got != tc.wantLoc {
				t.Errorf("cookie %q: %d → %q, want %q", tc.cookie, resp.StatusCode, got, tc.wantLoc)
			}
		}
	})
}

// emuURL is the emulator's base address, from a URL on it.
func emuURL(t *testing.T, u *url.URL) string {
	t.Helper()
	return u.Scheme + "://" + u.Host
}

// TestMisconfiguredESIA: a broker whose key is not the one registered at ESIA gets
// access_denied with ESIA-007053 on the redirect back. Parents see «сервис временно
// недоступен», not «Вы отменили вход», and the operator gets an error-level log and a metric.
func TestMisconfiguredESIA(t *testing.T) {
	s := openSQLite(t)
	// ESIA has another certificate registered for the мнемоника than the broker's.
	_, registeredCert, _ := esiatest.NewClientCredentials("ESIA_BROKER_TEST")
	conns, _, _ := esiaUpstreamEmu(t, "", 5*time.Second, esiaconn.Config{}, func(o *esiatest.Options) { o.Clients[0].CertDER = registeredCert })
	h, r := kiasuoOn(t, s, conns)
	br := newBrowser(t)
	u := startESIA(t, h, br, r.conf.AuthCodeURL("state-12345678", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	resp, err := br.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "Сервис временно недоступен") || !strings.Contains(string(body), esia.CodeClientSecret) || strings.Contains(string(body), "отменили") {
		t.Errorf("misconfigured broker: %d %s", resp.StatusCode, body)
	}
	if logs := h.Logs.String(); !strings.Contains(logs, "upstream refuses the broker's configuration") || !strings.Contains(logs, esia.CodeClientSecret) || !strings.Contains(logs, `"level":"ERROR"`) {
		t.Errorf("no error-level log for the operator: %s", logs)
	}
	nothingWritten(t, s)
}

// TestCertificateExpiry: the certificates the ESIA connector depends on are logged at start
// (a warning when one expires within 30 days, an error when it has expired) and exported.
func TestCertificateExpiry(t *testing.T) {
	soon, later, gone := time.Now().Add(10*24*time.Hour), time.Now().AddDate(1, 0, 0), time.Now().Add(-time.Hour)
	conns, _, _ := esiaUpstreamWith(t, "", time.Second, esiaconn.Config{Certificates: []upstream.CertificateInfo{
		{Role: "client", Subject: "CN=ESIA_BROKER", NotBefore: gone.AddDate(-1, 0, 0), NotAfter: later},
		{Role: "esia", Subject: "CN=ESIA test", NotAfter: soon},
		{Role: "esia", Subject: "CN=ESIA old", NotAfter: gone},
	}})
	h := newHarnessWith(t, openSQLite(t), conns)
	rec := httptest.NewRecorder()
	h.Broker.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, c := range []struct {
		labels string
		at     time.Time
	}{{`role="client",subject="CN=ESIA_BROKER"`, later}, {`role="esia",subject="CN=ESIA test"`, soon}, {`role="esia",subject="CN=ESIA old"`, gone}} {
		line := regexp.MustCompile(`esia_broker_certificate_expiry_timestamp_seconds\{connector="esia",` + regexp.QuoteMeta(c.labels) + `\} (\S+)`).FindStringSubmatch(rec.Body.String())
		if line == nil {
			t.Errorf("no expiry metric for %s", c.labels)
			continue
		}
		if got, err := strconv.ParseFloat(line[1], 64); err != nil || int64(got) != c.at.Unix() {
			t.Errorf("%s: %s, want %d", c.labels, line[1], c.at.Unix())
		}
	}
	if !strings.Contains(rec.Body.String(), fmt.Sprintf(`esia_broker_certificate_not_before_timestamp_seconds{connector="esia",role="client",subject="CN=ESIA_BROKER"} %s`, strconv.FormatFloat(float64(gone.AddDate(-1, 0, 0).Unix()), 'g', -1, 64))) {
		t.Errorf("no not-before metric for the client certificate: %s", rec.Body.String())
	}
	logs := h.Logs.String()
	for _, want := range []string{`"level":"INFO","msg":"certificate","connector":"esia","role":"client"`, `"level":"WARN","msg":"certificate expires soon"`, `"level":"ERROR","msg":"certificate has expired"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s: %s", want, logs)
		}
	}
}

// TestESIASessionNotReused: the next person never gets the previous one's ESIA session — not
// when the logout's trip through ESIA did not complete (ESIA down, the tab closed), and not when
// a diary asks for a fresh login (prompt=login, max_age) while ESIA's session is open.
func TestESIASessionNotReused(t *testing.T) {
	setup := func(t *testing.T) (*harness, *rp, *browser, *http.Client, func() *esiatest.Server) {
		conns, _, emu := esiaUpstreamWith(t, "", 5*time.Second, esiaconn.Config{})
		h, r := kiasuoOn(t, openSQLite(t), conns)
		br := newBrowser(t)
		u := startESIA(t, h, br, r.conf.AuthCodeURL("state-12345678", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		if resp, body := choosePersona(t, br, u, "parent-two-kids"); resp.StatusCode/100 != 3 {
			t.Fatalf("A's login: %d %s", resp.StatusCode, body)
		}
		stop := *br.Client
		stop.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		return h, r, br, &stop, emu
	}
	// personaPage tells whether ESIA shows its login (true) or answers at once with a code.
	personaPage := func(t *testing.T, stop *http.Client, u *url.URL) bool {
		t.Helper()
		resp, err := stop.Get(u.String())
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}
	t.Run("logout whose ESIA step failed", func(t *testing.T) {
		h, r, br, stop, emu := setup(t)
		csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`)
		resp, _ := stop.Get(h.URL + "/oauth2/logout")
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		m := csrf.FindSubmatch(page)
		if m == nil {
			t.Fatalf("no logout form: %s", page)
		}
		resp, err := stop.PostForm(h.URL+"/oauth2/logout", url.Values{"csrf": {string(m[1])}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if !strings.Contains(resp.Header.Get("Location"), "/idp/ext/Logout") {
			t.Fatalf("logout: %d → %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		// The browser never reaches ESIA's logout (ESIA down, the tab closed).
		if emu().Sessions() != 1 {
			t.Fatalf("ESIA sessions: %d", emu().Sessions())
		}
		u := startESIA(t, h, br, r.conf.AuthCodeURL("state-87654321", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		if !personaPage(t, stop, u) || emu().Sessions() != 0 {
			t.Errorf("the next person was let in on the previous ESIA session (sessions %d)", emu().Sessions())
		}
	})
	for _, extra := range []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("prompt", "login"), oauth2.SetAuthURLParam("max_age", "0")} {
		t.Run(fmt.Sprintf("fresh login %v", extra), func(t *testing.T) {
			h, r, br, stop, _ := setup(t)
			// Control: the broker's session gone, ESIA's session answers at once.
			hu, _ := url.Parse(h.URL)
			br.Jar.SetCookies(hu, []*http.Cookie{{Name: "esia_broker_session", Value: "", Path: "/", MaxAge: -1}})
			u := startESIA(t, h, br, r.conf.AuthCodeURL("state-00000001", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			if personaPage(t, stop, u) {
				t.Fatal("control: ESIA's single sign-on did not answer at once")
			}
			u = startESIA(t, h, br, r.conf.AuthCodeURL("state-00000002", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), extra))
			if !personaPage(t, stop, u) {
				t.Error("a fresh login reused ESIA's open session")
			}
		})
	}
	t.Run("logout/done does not claim a logout that did not happen", func(t *testing.T) {
		h, _, _, stop, _ := setup(t)
		resp, err := stop.Get(h.URL + "/oauth2/logout/done")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "/account" || strings.Contains(string(body), "Вы вышли") {
			t.Errorf("with a live session: %d → %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
}

// TestFreshLoginNotSkipped: the browser cannot skip ESIA's logout by asking for the continued
// login itself (fresh=1): ESIA's ID token then shows an auth_time from before, and the broker
// refuses the login with «Войдите заново», whose retry goes through ESIA's logout and ends with a
// real login.
func TestFreshLoginNotSkipped(t *testing.T) {
	for _, tc := range []struct {
		name   string
		logout bool
		extra  []oauth2.AuthCodeOption
	}{
		{"a logout that did not reach ESIA", true, nil},
		{"prompt=login", false, []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("prompt", "login")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A logs in at ESIA "two minutes ago" (the emulator's clock is behind until A is in).
			var behind atomic.Int64
			behind.Store(int64(2 * time.Minute))
			conns, _, emu := esiaUpstreamEmu(t, "", 5*time.Second, esiaconn.Config{}, func(o *esiatest.Options) {
				o.Now = func() time.Time { return time.Now().Add(-time.Duration(behind.Load())) }
			})
			h, r := kiasuoOn(t, openSQLite(t), conns)
			br := newBrowser(t)
			u := startESIA(t, h, br, r.conf.AuthCodeURL("state-12345678", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
			if resp, body := choosePersona(t, br, u, "parent-two-kids"); resp.StatusCode/100 != 3 {
				t.Fatalf("A's login: %d %s", resp.StatusCode, body)
			}
			behind.Store(0)
			stop := *br.Client
			stop.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			if tc.logout {
				_, page := getBody(t, &stop, h.URL+"/oauth2/logout")
				m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(page)
				if m == nil {
					t.Fatalf("no logout form: %s", page)
				}
				resp, err := stop.PostForm(h.URL+"/oauth2/logout", url.Values{"csrf": {m[1]}})
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close() // the browser never follows it to ESIA
			}
			if emu().Sessions() != 1 {
				t.Fatalf("ESIA sessions: %d", emu().Sessions())
			}
			// Without a broker session the start page shows; with one (prompt=login, max_age) too.
			_, start := getBody(t, br.Client, r.conf.AuthCodeURL("state-fresh", append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(oauth2.GenerateVerifier())}, tc.extra...)...))
			m := esiaLink.FindStringSubmatch(start)
			if m == nil {
				t.Fatalf("no start page: %s", start)
			}
			// The browser asks for the continued login itself, skipping ESIA's logout.
			u = followToESIA(t, &stop, h.URL+strings.ReplaceAll(m[1], "&amp;", "&")+"&fresh=1")
			resp, err := br.Get(u.String()) // ESIA's single sign-on answers at once; on to the broker
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "Войдите заново") {
				t.Fatalf("the skipped logout was let through: %d %s", resp.StatusCode, title(string(body)))
			}
			retry := regexp.MustCompile(`href="(/login/esia\?login=[^"]+)"`).FindStringSubmatch(string(body))
			if retry == nil {
				t.Fatalf("no retry: %s", body)
			}
			u = followToESIA(t, &stop, h.URL+strings.ReplaceAll(retry[1], "&amp;", "&"))
			if resp, body := choosePersona(t, br, u, "parent-no-match"); resp.StatusCode/100 != 3 {
				t.Errorf("the retried login: %d %s", resp.StatusCode, body)
			}
		})
	}
}

func getBody(t *testing.T, c *http.Client, u string) (int, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

// openESIA makes the ESIA connector over client c.
func openESIA(t testing.TB, c *esia.Client, cfg esiaconn.Config) upstream.Connector {
	t.Helper()
	cfg.Client = c
	conn, err := cfg.Open()
	if err != nil {
		t.Fatal(err)
	}
	return conn
}
