package broker_test

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/esia-broker/esia-broker/storage"
)

// TestTwoBrowsers: each of two browsers has its own valid browser id and session; nothing bound
// to one works in the other — a form's CSRF token, the ESIA callback's state, a login request.
func TestTwoBrowsers(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		e := newLinkEnv(t, s)
		a, b := newBrowser(t), newBrowser(t)
		e.esiaLogin(t, a, "parent-two-kids", nil, e.acceptAll(t, a))
		e.esiaLogin(t, b, "parent-no-match", nil, func(body string, resp *http.Response) *http.Response { return nil })
		_, pageA := e.get(t, a, "/account")
		_, pageB := e.get(t, b, "/account")
		tokA, tokB := formField("csrf").FindStringSubmatch(pageA), formField("csrf").FindStringSubmatch(pageB)
		if tokA == nil || tokB == nil || tokA[1] == tokB[1] {
			t.Fatalf("CSRF tokens: %v %v", tokA, tokB)
		}
		// Control: B's own token passes the CSRF check (an unknown device is then 404, not 403).
		if code, _ := e.postPage(t, b, "/account/devices/revoke", "", url.Values{"csrf": {tokB[1]}, "device": {"nope"}}); code != http.StatusNotFound {
			t.Fatalf("B with its own token: %d", code)
		}
		for _, path := range []string{"/consent", "/select", "/link/code", "/account/child", "/account/key", "/account/devices/revoke", "/child/login", "/oauth2/logout"} {
			code, body := e.postPage(t, b, path, "", url.Values{"csrf": {tokA[1]}, "device": {"nope"}, "action": {"reset"}, "student": {"s-1"}, "password": {"new-secret-42"}, "role": {"parent"}, "code": {"AAAA-BBBB-CCCC"}})
			if code != http.StatusForbidden || !strings.Contains(body, "устарела") {
				t.Errorf("%s with the other browser's CSRF token: %d %s", path, code, title(body))
			}
		}

		// A's login request opened in B.
		_, start := e.get(t, a, strings.TrimPrefix(e.rp.conf.AuthCodeURL("state-a-12345678", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("prompt", "login")), e.h.URL))
		m := regexp.MustCompile(`href="(/login/esia\?login=[^"]+)"`).FindStringSubmatch(start)
		if m == nil {
			t.Fatalf("no ESIA link on A's start page: %s", start)
		}
		if code, body := e.get(t, b, strings.ReplaceAll(m[1], "&amp;", "&")); code != http.StatusForbidden {
			t.Errorf("A's login request in B: %d %s", code, title(body))
		}

		// A's ESIA callback (code and state) replayed in B.
		u := startESIA(t, e.h, a, e.rp.conf.AuthCodeURL("state-a-87654321", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("prompt", "login")))
		forgetESIA(a, u)
		resp, err := a.Get(u.String())
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		req := formField("request").FindSubmatch(page)
		if req == nil {
			t.Fatalf("no persona page: %s", page)
		}
		stop := *a.Client
		stop.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err = stop.PostForm(u.String(), url.Values{"request": {string(req[1])}, "persona": {"parent-two-kids"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		callback := resp.Header.Get("Location")
		if !strings.Contains(callback, "/esia/callback?") {
			t.Fatalf("no callback from the emulator: %d %s", resp.StatusCode, callback)
		}
		if code, body := e.get(t, b, strings.TrimPrefix(callback, e.h.URL)); code != http.StatusForbidden || !strings.Contains(body, "не в тот браузер") {
			t.Errorf("A's callback in B: %d %s", code, title(body))
		}
	})
}
