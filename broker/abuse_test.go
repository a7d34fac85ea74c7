package broker_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/esia-broker/esia-broker/upstream"

	"github.com/esia-broker/esia-broker/storage"
)

const xss = `"><script>alert(1)</script><img src=x onerror=alert(2)>`

// xssConnector logs in a person whose names are markup.
type xssConnector struct{ fakeConnector }

func (x *xssConnector) HandleCallback(ctx context.Context, r *http.Request, data string) (*upstream.Identity, error) {
	id, err := x.fakeConnector.HandleCallback(ctx, r, data)
	if err == nil {
		id.FamilyName, id.GivenName = xss, "<b>bold</b>"
	}
	return id, err
}

func assertEscaped(t *testing.T, where, body string) {
	t.Helper()
	for _, raw := range []string{"<script>alert(1)", "<img src=x", "<b>bold</b>"} {
		if strings.Contains(body, raw) {
			t.Errorf("%s: markup shown raw: %q", where, raw)
		}
	}
}

func TestAbuse(t *testing.T) {
	s := openSQLite(t)
	var conn *xssConnector
	h := newHarnessWith(t, s, func(issuer string) []upstream.Connector {
		conn = &xssConnector{fakeConnector{issuer: issuer, Subject: "666"}}
		return []upstream.Connector{conn}
	})
	h.client("kiasuo", "secret-secret-secret", "openid", "profile", "students", "offline_access")
	r := newRP(t, h, "kiasuo", "secret-secret-secret", "openid", "profile", "students")
	br := newBrowser(t)

	// Session fixation: a session id planted before login is not the one after it.
	planted := "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	u, _ := url.Parse(h.URL)
	br.Jar.SetCookies(u, []*http.Cookie{{Name: "esia_broker_session", Value: planted, Path: "/"}})

	resp, err := br.Get(r.conf.AuthCodeURL("state-12345678"))
	if err != nil {
		t.Fatal(err)
	}
	start, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	link := strings.ReplaceAll(loginLink.FindStringSubmatch(string(start))[1], "&amp;", "&")
	resp, err = br.Get(h.URL + link)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, c := range br.Jar.Cookies(u) {
		if c.Name == "esia_broker_session" && c.Value == planted {
			t.Error("the planted session id survived the login")
		}
	}
	if _, err := s.BrowserSession(context.Background(), planted); err == nil {
		t.Error("the planted session id is a session")
	}
	// Nothing is linked and the client asks for students: the role page, with the name escaped later.
	if !strings.Contains(string(page), "Выберите роль") {
		t.Fatalf("expected the role page: %s", page)
	}
	getPage := func(path string) (int, string) {
		resp, err := br.Get(h.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	_, account := getPage("/account")
	assertEscaped(t, "account page", account)
	if !strings.Contains(account, "&lt;script&gt;") {
		t.Error("the escaped name is not on the account page")
	}
	_, codePage := getPage("/link/code?role=parent")
	csrf := formField("csrf").FindStringSubmatch(codePage)[1]
	post := func(path string, v url.Values) (int, string) {
		resp, err := br.PostForm(h.URL+path, v)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	// Reflected input and SQL metacharacters.
	for _, code := range []string{xss, "'; DROP TABLE invites; --", `" OR "1"="1`} {
		status, body := post("/link/code", url.Values{"csrf": {csrf}, "role": {"parent"}, "code": {code}})
		if status != 400 || !strings.Contains(body, "Код не подошёл") {
			t.Errorf("code %q: %d", code, status)
		}
		assertEscaped(t, "code page", body)
	}
	if _, err := s.ListInvites(context.Background(), storage.InviteFilter{}); err != nil {
		t.Errorf("the invites table is gone: %v", err)
	}
	// CSRF: every form refuses a post without the token, and changes nothing.
	for _, path := range []string{"/link/code", "/consent", "/select", "/account/child", "/account/key", "/account/devices/revoke", "/child/login", "/oauth2/logout"} {
		for _, tok := range []string{"", "forged-token", strings.Repeat("A", 43)} {
			status, body := post(path, url.Values{"csrf": {tok}, "role": {"parent"}, "code": {"7KQ4-M2XD-9PRT"}, "action": {"create"}, "student": {"s-1"}, "login": {"x"}, "password": {"y"}, "device": {"d"}, "decision": {"accept"}})
			if status != http.StatusForbidden || !strings.Contains(body, "Страница устарела") {
				t.Errorf("%s with csrf %q: %d", path, tok, status)
			}
		}
	}
	if bs, _, _ := currentSessionOf(t, br, h); bs == "" {
		t.Error("a forged logout post ended the session")
	}
	// Oversized body.
	big := strings.NewReader("grant_type=client_credentials&x=" + strings.Repeat("a", 2<<20))
	req, _ := http.NewRequest(http.MethodPost, h.URL+"/oauth2/token", big)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("kiasuo", "secret-secret-secret")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode < 400 || resp.StatusCode >= 500 {
		t.Errorf("a 2 MiB token request: %d", resp.StatusCode)
	}
	// Malformed requests.
	for _, raw := range []string{"/oauth2/authorize?%zz", "/oauth2/authorize?client_id=kiasuo&redirect_uri=" + url.QueryEscape("javascript:alert(1)") + "&response_type=code&state=abcdefgh1"} {
		resp, err := http.Get(h.URL + raw)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("%s: %d %q", raw, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
}

// currentSessionOf returns the browser's session cookie value if the broker still knows it.
func currentSessionOf(t *testing.T, br *browser, h *harness) (string, bool, error) {
	u, _ := url.Parse(h.URL)
	for _, c := range br.Jar.Cookies(u) {
		if c.Name == "esia_broker_session" {
			resp, err := br.Get(h.URL + "/account")
			if err != nil {
				return "", false, err
			}
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return c.Value, true, nil
			}
		}
	}
	return "", false, nil
}
