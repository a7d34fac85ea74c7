package broker_test

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/esia-broker/esia-broker/storage/storagetest"
)

// TestEveryFormChecksCSRF: every POST route of the browser (all but the OAuth and API
// endpoints, which authenticate clients, not browsers) refuses a form without this browser's
// CSRF token, before anything else, whatever the route.
func TestEveryFormChecksCSRF(t *testing.T) {
	h := newHarness(t, storagetest.Open(t, storagetest.NewSQLiteDSN(t)))
	forms := 0
	for _, rt := range h.Broker.Routes() {
		if !slices.Contains(rt.Methods, http.MethodPost) || strings.HasPrefix(rt.Path, "/oauth2/") || strings.HasPrefix(rt.Path, "/api/") {
			continue
		}
		forms++
		path := strings.NewReplacer("{intent}", "some-intent", "{connector}", "fake").Replace(rt.Path)
		t.Run(rt.Path, func(t *testing.T) {
			resp, err := http.PostForm(h.URL+path, url.Values{"login": {"x"}, "csrf": {"forged"}})
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "Страница устарела") {
				t.Errorf("POST %s without this browser's CSRF token: %d %.200s", path, resp.StatusCode, body)
			}
		})
	}
	if forms < 9 {
		t.Errorf("%d browser forms found, want the 9 the broker has at least", forms)
	}
}

// TestAccountPagesNeedALogin: the pages and forms that act for an account (mounted with
// WithAccount) answer 401 «Нужно войти» to a browser without a session, its CSRF token valid.
func TestAccountPagesNeedALogin(t *testing.T) {
	h := newHarness(t, storagetest.Open(t, storagetest.NewSQLiteDSN(t)))
	br := newBrowser(t)
	resp, err := br.Get(h.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	home, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindSubmatch(home)
	if m == nil {
		t.Fatal("the start page has no CSRF token")
	}
	csrf := string(m[1])
	check := func(t *testing.T, resp *http.Response, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), "Нужно войти") {
			t.Errorf("%d %.200s", resp.StatusCode, body)
		}
	}
	for _, path := range []string{"/account", "/link/role", "/link/code"} {
		t.Run("GET "+path, func(t *testing.T) {
			resp, err := br.Get(h.URL + path)
			check(t, resp, err)
		})
	}
	for _, path := range []string{"/link/code", "/account/child", "/account/key", "/account/devices/revoke"} {
		t.Run("POST "+path, func(t *testing.T) {
			resp, err := br.PostForm(h.URL+path, url.Values{"csrf": {csrf}, "role": {"parent"}, "code": {"7KQ4-M2XD-9PRT"}, "action": {"reset"}, "device": {"d"}})
			check(t, resp, err)
		})
	}
}
