package broker_test

import (
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/esia-broker/esia-broker/storage"
)

func TestRateLimitsWithRetryAfter(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		h := newHarness(t, s, "ESIA_BROKER_LIMITS_PAGES_PER_IP_PER_MINUTE=5", "ESIA_BROKER_LIMITS_TOKEN_PER_IP_PER_MINUTE=3")
		h.client("kiasuo", "secret-secret-secret")
		q := url.Values{"client_id": {"kiasuo"}, "response_type": {"code"}, "scope": {"openid"}, "redirect_uri": {rpRedirect}, "state": {"state-12345678"}}
		var last *http.Response
		var body []byte
		for range 6 {
			resp, err := newBrowser(t).Get(h.URL + "/oauth2/authorize?" + q.Encode())
			if err != nil {
				t.Fatal(err)
			}
			body, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			last = resp
		}
		ra, _ := strconv.Atoi(last.Header.Get("Retry-After"))
		if last.StatusCode != http.StatusTooManyRequests || ra < 1 || ra > 61 || !strings.Contains(string(body), "Слишком много запросов") {
			t.Errorf("6th authorize: %d Retry-After=%q", last.StatusCode, last.Header.Get("Retry-After"))
		}
		for i := range 4 {
			code, m := postForm(t, h.URL+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}}, "kiasuo", "secret-secret-secret")
			if i < 3 && code != 200 {
				t.Errorf("token %d: %d %v", i, code, m)
			}
			if i == 3 && (code != http.StatusTooManyRequests || m["error"] != "temporarily_unavailable") {
				t.Errorf("4th token: %d %v", code, m)
			}
		}
	})
}
