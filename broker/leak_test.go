package broker_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/esia-broker/esia-broker/storage"
)

// TestESIAFaultsLeakNoGoroutines runs logins against a slow, a resetting and a dead ESIA, then
// checks that every goroutine they started has ended.
func TestESIAFaultsLeakNoGoroutines(t *testing.T) {
	settle := func() int {
		var n int
		for range 50 {
			runtime.GC()
			n = runtime.NumGoroutine()
			time.Sleep(20 * time.Millisecond)
			if runtime.NumGoroutine() == n {
				break
			}
		}
		return n
	}
	before := settle()
	t.Run("faults", func(t *testing.T) {
		for _, te := range []http.HandlerFunc{
			func(w http.ResponseWriter, r *http.Request) {
				select {
				case <-time.After(2 * time.Second):
				case <-r.Context().Done():
				}
			},
			func(w http.ResponseWriter, _ *http.Request) {
				c, _, _ := w.(http.Hijacker).Hijack()
				c.Close()
			},
			func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", 500) },
		} {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/v2/ac") {
					back, _ := url.Parse(r.URL.Query().Get("redirect_uri"))
					back.RawQuery = url.Values{"code": {"c0de"}, "state": {r.URL.Query().Get("state")}}.Encode()
					http.Redirect(w, r, back.String(), http.StatusFound)
					return
				}
				te(w, r)
			}))
			s := openSQLite(t)
			conns, _ := esiaUpstream(t, srv.URL, 300*time.Millisecond)
			h, r := kiasuoOn(t, s, conns)
			for range 3 {
				br := newBrowser(t)
				u := startESIA(t, h, br, r.conf.AuthCodeURL("state-12345678", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
				resp, err := br.Get(u.String())
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode < 500 {
					t.Errorf("fault gave %d", resp.StatusCode)
				}
				br.CloseIdleConnections()
			}
			srv.CloseClientConnections()
			srv.Close()
		}
	})
	http.DefaultClient.CloseIdleConnections()
	if after := settle(); after > before+5 {
		buf := make([]byte, 1<<16)
		n := runtime.Stack(buf, true)
		t.Errorf("goroutines: %d before, %d after the fault logins\n%s", before, after, buf[:n])
	}
}

// TestCrashBeforeLinksIsRepairedAtNextLogin: the process dies after ESIA answered and the account
// was written but before its links were (that state is made directly here); the next login
// links the children.
func TestCrashBeforeLinksIsRepairedAtNextLogin(t *testing.T) {
	s := openSQLite(t)
	e := newLinkEnv(t, s)
	ctx := context.Background()
	sub := "1000300001"
	if _, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: &sub, FamilyName: "Иванова"}); err != nil {
		t.Fatal(err)
	}
	if links, _ := s.Links(ctx, mustAccountID(t, s, sub), false); len(links) != 0 {
		t.Fatal("setup: links exist")
	}
	br := newBrowser(t)
	_, c := e.tokens(t, e.esiaLogin(t, br, "parent-two-kids", nil, e.acceptAll(t, br)))
	if studentIDs(c) != "s-1/sch-1/parent,s-2/sch-2/parent" {
		t.Errorf("after the repairing login: %+v", c)
	}
}
