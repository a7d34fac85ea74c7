package broker_test

import (
	"io"
	"net/http"
	"net/url"
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
