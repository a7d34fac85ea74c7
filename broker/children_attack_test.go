package broker_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/esia-broker/esia-broker/esia/esiatest"
	"github.com/esia-broker/esia-broker/invites"
	"github.com/esia-broker/esia-broker/storage"
)

// childEnv is a broker whose persona parent-two-kids has made the login alex.ivanov for s-1.
func childEnv(t *testing.T, s *storage.Store, env ...string) (*linkEnv, *browser) {
	t.Helper()
	env = append([]string{"ESIA_BROKER_DEV=true", "ESIA_BROKER_CHILDREN_ARGON2_MEMORY_KIB=8192", "ESIA_BROKER_LIMITS_PAGES_PER_IP_PER_MINUTE=0"}, env...)
	e := newLinkEnv(t, s, env...)
	parent := newBrowser(t)
	e.esiaLogin(t, parent, "parent-two-kids", nil, e.acceptAll(t, parent))
	_, page := e.get(t, parent, "/account")
	code, body := e.postPage(t, parent, "/account/child", page, url.Values{"action": {"create"}, "student": {"s-1"}, "login": {"alex.ivanov"}, "password": {"correct-horse"}})
	if code != 200 {
		t.Fatalf("create the child's login: %d %s", code, body)
	}
	return e, parent
}

// childForm opens the child login form in br and returns the form page.
func (e *linkEnv) childForm(t *testing.T, br *browser, verifier string) string {
	t.Helper()
	_, start := e.get(t, br, strings.TrimPrefix(e.rp.conf.AuthCodeURL("state-child-1", oauth2.S256ChallengeOption(verifier), oidc.Nonce("nonce-child"), oauth2.SetAuthURLParam("prompt", "login")), e.h.URL))
	m := regexp.MustCompile(`href="(/child/login\?login=[^"]+)"`).FindStringSubmatch(start)
	if m == nil {
		t.Fatalf("no child login link: %s", start)
	}
	_, form := e.get(t, br, m[1])
	return form
}

// childSignIn logs alex.ivanov in with the right password in br and returns the answer (the
// redirect with the code) and the PKCE verifier of the authorization.
func (e *linkEnv) childSignIn(t *testing.T, br *browser) (*http.Response, string) {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	form := e.childForm(t, br, verifier)
	resp := e.post(t, br, "/child/login", form, url.Values{"login_request": {formField("login_request").FindStringSubmatch(form)[1]}, "login": {"alex.ivanov"}, "password": {"correct-horse"}})
	resp.Body.Close()
	return resp, verifier
}

// TestChildGuessesOverHTTP: 60 wrong passwords for one child login at once from one address;
// at most 5 are answered «wrong password» (a password checked), the rest are refused as locked,
// and the right password is then refused from that address (before: 20–41 of 32–60 checked,
// and the right password logged in).
func TestChildGuessesOverHTTP(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		e, _ := childEnv(t, s, "ESIA_BROKER_CHILDREN_HASH_QUEUE=128", "ESIA_BROKER_CHILDREN_HASH_WAIT=30s")
		const n = 60
		type attempt struct {
			br   *browser
			form string
		}
		var atts []attempt
		for range n {
			br := newBrowser(t)
			atts = append(atts, attempt{br, e.childForm(t, br, oauth2.GenerateVerifier())})
		}
		var mu sync.Mutex
		codes := map[int]int{}
		var wg sync.WaitGroup
		for _, a := range atts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				v := url.Values{"login_request": {formField("login_request").FindStringSubmatch(a.form)[1]}, "login": {"alex.ivanov"}, "password": {"wrong-guess"}, "csrf": {formField("csrf").FindStringSubmatch(a.form)[1]}}
				resp, err := a.br.PostForm(e.h.URL+"/child/login", v)
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				mu.Lock()
				codes[resp.StatusCode]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		if codes[http.StatusUnauthorized] > 5 || codes[http.StatusUnauthorized]+codes[http.StatusTooManyRequests] != n {
			t.Errorf("answers %v: want at most 5 checked (401), the rest locked (429)", codes)
		}
		t.Logf("answers to %d concurrent wrong passwords: %v", n, codes)
		if resp, body, _ := e.childLogin(t, "alex.ivanov", "correct-horse"); resp.StatusCode != http.StatusTooManyRequests {
			t.Errorf("the right password from the guessing address: %d %s", resp.StatusCode, title(body))
		}
	})
}

// TestChildLoginBusyAnswers503: past the hash gate a child login is answered at once with 503
// and Retry-After; nothing hangs.
func TestChildLoginBusyAnswers503(t *testing.T) {
	e, _ := childEnv(t, openSQLite(t), "ESIA_BROKER_CHILDREN_HASH_MEMORY_MIB=8", "ESIA_BROKER_CHILDREN_HASH_QUEUE=0",
		"ESIA_BROKER_CHILDREN_HASH_WAIT=100ms", "ESIA_BROKER_CHILDREN_FAILURES_PER_IP=1000", "ESIA_BROKER_CHILDREN_FAILURES_PER_LOGIN=1000", "ESIA_BROKER_CHILDREN_FAILURES_PER_LOGIN_ALL=1000")
	const n = 24
	var forms []string
	var brs []*browser
	for range n {
		br := newBrowser(t)
		brs = append(brs, br)
		forms = append(forms, e.childForm(t, br, oauth2.GenerateVerifier()))
	}
	var mu sync.Mutex
	codes := map[int]int{}
	retry := 0
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := url.Values{"login_request": {formField("login_request").FindStringSubmatch(forms[i])[1]}, "login": {"alex.ivanov"}, "password": {"wrong-guess"}, "csrf": {formField("csrf").FindStringSubmatch(forms[i])[1]}}
			resp, err := brs[i].PostForm(e.h.URL+"/child/login", v)
			if err != nil {
				t.Error(err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			mu.Lock()
			codes[resp.StatusCode]++
			if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" && strings.Contains(string(body), "попробуйте снова") {
				retry++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if codes[http.StatusServiceUnavailable] == 0 || retry != codes[http.StatusServiceUnavailable] || codes[http.StatusUnauthorized]+codes[http.StatusServiceUnavailable] != n {
		t.Errorf("answers %v (%d of the 503s with Retry-After and the page)", codes, retry)
	}
}

// TestEndOfRightEndsChildAccess: when the child's only parent link goes, the child's refresh
// token, browser session and authorizations end at once.
func TestEndOfRightEndsChildAccess(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		e, _ := childEnv(t, s)
		ctx := context.Background()
		child := newBrowser(t)
		resp, verifier := e.childSignIn(t, child)
		tok, _ := e.tokens(t, loginResult{final: resp, verifier: verifier})
		if tok.RefreshToken == "" {
			t.Fatal("no refresh token for the child")
		}
		links, err := s.Links(ctx, mustAccountID(t, s, "1000300001"), false)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range links {
			if l.StudentID == "s-1" {
				if _, err := s.RevokeLink(ctx, l.ID); err != nil {
					t.Fatal(err)
				}
			}
		}
		if c, m := postForm(t, e.h.URL+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}, "kiasuo", "secret-secret-secret"); c != http.StatusBadRequest {
			t.Errorf("the child's refresh after the last parent link went: %d %v", c, m)
		}
		stop := *child.Client
		stop.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		r2, err := stop.Get(e.rp.conf.AuthCodeURL("state-again-1", oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oidc.Nonce("nonce-again")))
		if err != nil {
			t.Fatal(err)
		}
		r2.Body.Close()
		if strings.Contains(r2.Header.Get("Location"), "code=") {
			t.Errorf("the child's browser session still got a code: %s", r2.Header.Get("Location"))
		}
	})
}

// TestBrowsersAndIntents: a CSRF token obtained with a planted browser id does not work in the
// victim's browser; the browser id changes at login; a link intent opened in one browser is
// refused in another; no log line carries the intent.
func TestBrowsersAndIntents(t *testing.T) {
	e, parent := childEnv(t, openSQLite(t))
	u, _ := url.Parse(e.h.URL)
	browserCookie := func(br *browser) string {
		for _, c := range br.Jar.Cookies(u) {
			if c.Name == "esia_broker_browser" {
				return c.Value
			}
		}
		return ""
	}
	// Login renews the browser id.
	br := newBrowser(t)
	e.get(t, br, "/child/login?login=none")
	_, start := e.get(t, br, strings.TrimPrefix(e.rp.conf.AuthCodeURL("state-renew-1", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), e.h.URL))
	before := browserCookie(br)
	if before == "" || !strings.Contains(start, "/login/") {
		t.Fatalf("no browser id before the login: %q", before)
	}
	e.esiaLogin(t, br, "parent-no-match", nil, func(body string, resp *http.Response) *http.Response { return nil })
	if after := browserCookie(br); after == "" || after == before {
		t.Errorf("the browser id was not renewed at login: %q → %q", before, after)
	}
	// Planted id: the attacker loads a form with the value planted and takes its CSRF token.
	planted := strings.Repeat("B", 43)
	attacker := newBrowser(t)
	attacker.Jar.SetCookies(u, []*http.Cookie{{Name: "esia_broker_browser", Value: planted, Path: "/"}})
	cform := e.childForm(t, attacker, oauth2.GenerateVerifier())
	token := ""
	if m := formField("csrf").FindStringSubmatch(cform); m != nil {
		token = m[1]
	}
	if token == "" {
		t.Fatalf("no CSRF token on the child login form: %s", cform)
	}
	parent.Jar.SetCookies(u, []*http.Cookie{{Name: "esia_broker_browser", Value: planted, Path: "/"}})
	resp, err := parent.PostForm(e.h.URL+"/account/child", url.Values{"action": {"reset"}, "student": {"s-1"}, "password": {"attacker-chose-this"}, "csrf": {token}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a forged reset with a planted browser id: %d, want 403", resp.StatusCode)
	}
	// A link intent is bound to the first browser.
	code, m := postForm(t, e.h.URL+"/oauth2/token", url.Values{"grant_type": {"client_credentials"}, "scope": {"links:write"}}, "kiasuo", "secret-secret-secret")
	if code != 200 {
		t.Fatalf("client credentials: %d %v", code, m)
	}
	req, _ := http.NewRequest(http.MethodPost, e.h.URL+"/api/v1/link-intents", strings.NewReader(`{"students":["s-4"],"relation":"parent"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+m["access_token"].(string))
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	intentURL := regexp.MustCompile(`"url":"([^"]+)"`).FindStringSubmatch(string(body))
	if intentURL == nil {
		t.Fatalf("intent: %d %s", r.StatusCode, body)
	}
	// A link-preview bot (no cookies) opens it first: that binds nothing.
	if resp, err := http.Get(intentURL[1]); err != nil || resp.StatusCode != 200 {
		t.Fatalf("a preview bot's GET: %v %v", resp, err)
	}
	first, second := newBrowser(t), newBrowser(t)
	path := strings.TrimPrefix(intentURL[1], e.h.URL)
	c, page := e.get(t, first, path)
	if c != 200 || !strings.Contains(page, "Петров") {
		t.Fatalf("the intent in the first browser: %d", c)
	}
	if c, _ := e.get(t, second, path); c != 200 {
		t.Errorf("before anyone pressed the button, a second browser sees the page: %d", c)
	}
	if c, body := e.postPage(t, first, path, page, url.Values{"connector": {"esia"}}); c != 200 || formField("request").FindStringSubmatch(body) == nil {
		t.Errorf("the first browser's button did not lead to ESIA's page: %d %s", c, title(body))
	}
	if c, _ := e.get(t, second, path); c != http.StatusForbidden {
		t.Errorf("the intent in a second browser after the first pressed the button: %d, want 403", c)
	}
	_, page2 := e.get(t, first, path)
	if c, _ := e.postPage(t, second, path, page2, url.Values{"connector": {"esia"}}); c != http.StatusForbidden {
		t.Errorf("the second browser pressing the button: %d, want 403", c)
	}
	secret := intentURL[1][strings.LastIndex(intentURL[1], "/")+1:]
	if strings.Contains(e.h.Logs.String(), secret) {
		t.Error("a log line carries the link intent")
	}
	if !strings.Contains(e.h.Logs.String(), `/link/{intent}`) {
		t.Error("the access log does not name the intent route by its template")
	}
}

// TestChildLoginNameProbingIsLimited: a parent who keeps hitting logins that are taken is
// stopped after 10.
func TestChildLoginNameProbingIsLimited(t *testing.T) {
	e, parent := childEnv(t, openSQLite(t))
	last := 0
	for i := range 12 {
		_, page := e.get(t, parent, "/account")
		code, _ := e.postPage(t, parent, "/account/child", page, url.Values{"action": {"create"}, "student": {"s-2"}, "login": {"alex.ivanov"}, "password": {"correct-horse"}})
		last = code
		if code == http.StatusTooManyRequests {
			if i < 9 {
				t.Errorf("locked after %d taken logins", i+1)
			}
			break
		}
		if code != http.StatusBadRequest {
			t.Fatalf("taken login %d: %d", i+1, code)
		}
	}
	if last != http.StatusTooManyRequests {
		t.Errorf("12 probes of taken logins were all answered; want a lock-out after 10")
	}
	ev, err := e.store.AuditEvents(context.Background(), 50)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, a := range ev {
		if a.Action == "child.create_login_taken" {
			n++
		}
	}
	if n != 10 {
		t.Errorf("%d probes of taken logins audited, want 10", n)
	}
}

// TestChildSessionCannotBecomeAParent: a child logged in with a sub-account cannot redeem a
// parent slip (slips go home in backpacks) nor manage children's logins.
func TestChildSessionCannotBecomeAParent(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		e, _ := childEnv(t, s)
		slips, err := e.inv.Issue(context.Background(), invites.IssueRequest{Selection: invites.Selection{SchoolID: "sch-1", IDs: []string{"s-4"}}, Role: invites.RoleParent, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		child := newBrowser(t)
		resp, _ := e.childSignIn(t, child)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("child login: %d", resp.StatusCode)
		}
		_, page := e.get(t, child, "/link/code?role=parent")
		code, body := e.postPage(t, child, "/link/code", page, url.Values{"role": {"parent"}, "code": {slips[0].Code}})
		if code != http.StatusForbidden {
			t.Errorf("a child's session redeemed a parent slip: %d %s", code, title(body))
		}
		childID := ""
		if c, err := s.ChildByStudent(context.Background(), "s-1"); err == nil {
			childID = c.AccountID
		}
		if ls, _ := s.Links(context.Background(), childID, false); len(ls) != 0 {
			t.Errorf("the child's account got links: %+v", ls)
		}
		_, acct := e.get(t, child, "/account")
		if code, _ := e.postPage(t, child, "/account/child", acct, url.Values{"action": {"reset"}, "student": {"s-1"}, "password": {"child-chose-this"}}); code == http.StatusOK {
			t.Error("a child's session reset a password")
		}
	})
}

// TestCodeAfterTheCutOff: a code a child got before the 14th birthday is not exchanged after it
// (the exchange re-checks the right, as refresh does).
func TestCodeAfterTheCutOff(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		e, _ := childEnv(t, s)
		ctx := context.Background()
		child := newBrowser(t)
		resp, verifier := e.childSignIn(t, child)
		loc, _ := url.Parse(resp.Header.Get("Location"))
		code := loc.Query().Get("code")
		if code == "" {
			t.Fatalf("no code: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		st, err := s.Student(ctx, "s-1")
		if err != nil {
			t.Fatal(err)
		}
		g, _ := s.Guardians(ctx, "s-1")
		st.Birthdate = esiatest.TestDay().AddDate(-14, 0, 0).Format("2006-01-02") // the roster now says: 14 today
		if _, err := s.UpsertStudent(ctx, st, g); err != nil {
			t.Fatal(err)
		}
		if _, err := e.rp.conf.Exchange(e.rp.ctx, code, oauth2.VerifierOption(verifier)); err == nil {
			t.Error("a code issued before the 14th birthday was exchanged after it")
		}
	})
}

// TestStrangersCannotKeepAChildOut: wrong passwords from many sources lock the login's limit
// from everywhere; the child's own browser (where the login succeeded before) still gets in,
// while a new browser waits out the short slow-down.
func TestStrangersCannotKeepAChildOut(t *testing.T) {
	e, _ := childEnv(t, openSQLite(t), "ESIA_BROKER_HTTP_TRUSTED_PROXIES=127.0.0.1/32")
	try := func(br *browser, password, source string) int {
		t.Helper()
		form := e.childForm(t, br, oauth2.GenerateVerifier())
		v := url.Values{"login_request": {formField("login_request").FindStringSubmatch(form)[1]}, "login": {"alex.ivanov"}, "password": {password}, "csrf": {formField("csrf").FindStringSubmatch(form)[1]}}
		req, _ := http.NewRequest(http.MethodPost, e.h.URL+"/child/login", strings.NewReader(v.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Forwarded-For", source)
		resp, err := br.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	childBrowser := newBrowser(t)
	if code := try(childBrowser, "correct-horse", "192.0.2.10"); code != http.StatusSeeOther {
		t.Fatalf("the child's first login: %d", code)
	}
	for i := range 20 {
		try(newBrowser(t), "wrong-guess", "198.51.100."+strconv.Itoa(i+1))
	}
	if code := try(newBrowser(t), "correct-horse", "192.0.2.11"); code != http.StatusTooManyRequests {
		t.Errorf("a new browser during the slow-down: %d, want 429", code)
	}
	if code := try(childBrowser, "correct-horse", "192.0.2.10"); code != http.StatusSeeOther {
		t.Errorf("the child's own browser during strangers' guessing: %d, want a login", code)
	}
}
