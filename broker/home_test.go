package broker_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// TestStartPage: the broker's own «/» — where the invite slips send parents — is the region's
// start page: «Войти через Госуслуги» leads through ESIA to the account page (codes are entered
// there), «Вход для детей до 14 лет» to the child login and back, and the region's diaries are
// listed (issue 17, item 1: it answered 404 under serve).
func TestStartPage(t *testing.T) {
	s := openSQLite(t)
	e, _ := childEnv(t, s)
	c, err := s.Client(context.Background(), "kiasuo")
	if err != nil {
		t.Fatal(err)
	}
	c.HomeURL = "https://diary.krasnoyarsk.example/"
	if err := s.UpdateClient(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	br := newBrowser(t)
	code, page := e.get(t, br, "/")
	if code != http.StatusOK || !strings.Contains(page, `value="esia"`) || !strings.Contains(page, `value="child"`) ||
		!strings.Contains(page, `<a href="https://diary.krasnoyarsk.example/">КИАСУО</a>`) {
		t.Fatalf("start page: %d %s", code, page)
	}
	// «Войти через Госуслуги» → ESIA → the account page.
	resp := e.post(t, br, "/account/login", page, url.Values{"connector": {"esia"}})
	resp.Body.Close()
	if !strings.Contains(resp.Request.URL.Path, "/aas/oauth2/v2/ac") && resp.StatusCode != http.StatusOK {
		t.Fatalf("to ESIA: %d %s", resp.StatusCode, resp.Request.URL)
	}
	u := resp.Request.URL
	resp2, body := choosePersona(t, br, u, "parent-no-match")
	if resp2.StatusCode != http.StatusOK || resp2.Request.URL.Path != "/account" || !strings.Contains(body, "Петров Сергей Николаевич") || !strings.Contains(body, "Я родитель: ввести код") || !strings.Contains(body, "Я обучающийся: ввести код") {
		t.Errorf("after ESIA: %d %s %s", resp2.StatusCode, resp2.Request.URL, title(body))
	}
	// From the account page the role and code pages speak to someone who came on their own
	// (no «we did not find you by SNILS») and lead back to it.
	if code, role := e.get(t, br, "/link/role"); code != 200 || strings.Contains(role, "По СНИЛС") || !strings.Contains(role, `href="/account"`) {
		t.Errorf("the role page from the account: %d %s", code, role)
	}
	if code, cp := e.get(t, br, "/link/code?role=parent"); code != 200 || !strings.Contains(cp, `href="/account"`) {
		t.Errorf("the code page from the account: %d %s", code, cp)
	}
	// The start page answers HEAD (link checkers, uptime probes) and names the region once.
	head, err := http.Head(e.h.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	head.Body.Close()
	if head.StatusCode != http.StatusOK {
		t.Errorf("HEAD /: %d", head.StatusCode)
	}
	if m := regexp.MustCompile(`<title>([^<]*)</title>`).FindStringSubmatch(page); m == nil || strings.Count(m[1], "—") != 0 {
		t.Errorf("the start page's title: %v", m)
	}
	// «Вход для детей до 14 лет» → the child login → back to the start page, logged in.
	child := newBrowser(t)
	_, page = e.get(t, child, "/")
	resp = e.post(t, child, "/account/login", page, url.Values{"connector": {"child"}})
	form, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if f := string(form); strings.Contains(f, "вкладк") || !strings.Contains(f, "Как входят дети до\u00a014\u00a0лет") {
		t.Errorf("the child login names a section the parent's page does not have: %s", f)
	}
	lr := regexp.MustCompile(`name="login_request" value="([^"]+)"`).FindStringSubmatch(string(form))
	if lr == nil {
		t.Fatalf("no child login form: %s", form)
	}
	resp = e.post(t, child, "/child/login", string(form), url.Values{"login_request": {lr[1]}, "login": {"alex.ivanov"}, "password": {"correct-horse"}})
	body2, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Request.URL.Path != "/" || !strings.Contains(string(body2), "Вы вошли как Иванов Алексей") {
		t.Errorf("after the child's login: %s %s", resp.Request.URL, body2)
	}
	// No CSRF token, an unknown way in: refused.
	resp, err = http.PostForm(e.h.URL+"/account/login", url.Values{"connector": {"esia"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("without CSRF: %d", resp.StatusCode)
	}
	_, page = e.get(t, br, "/")
	if resp := e.post(t, br, "/account/login", page, url.Values{"connector": {"nope"}}); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown connector: %d", resp.StatusCode)
	}
}

// TestNoDeadEnds: the pages that used to end the road — «Нужно войти», «Страница не найдена»,
// «Вы вышли», the logout confirmation — each offer a way on (issue 17, item 4).
func TestNoDeadEnds(t *testing.T) {
	h := newHarness(t, openSQLite(t))
	h.client("kiasuo", "secret-secret-secret")
	r := newRP(t, h, "kiasuo", "secret-secret-secret")
	anon := newBrowser(t)
	for path, want := range map[string]string{
		"/account":      `href="/"`,
		"/no/such/page": `href="/"`,
	} {
		if _, body := getBody(t, anon.Client, h.URL+path); !strings.Contains(body, want) {
			t.Errorf("%s offers no way on: %s", path, title(body))
		}
	}
	br := newBrowser(t)
	r.loginAndExchange(t, br)
	_, home := getBody(t, br.Client, h.URL+"/")
	if !strings.Contains(home, `href="/account"`) || !strings.Contains(home, "Вы вошли как") {
		t.Errorf("the start page of a logged-in person has no way to the account page: %s", home)
	}
	_, confirm := getBody(t, br.Client, h.URL+"/oauth2/logout")
	if !strings.Contains(confirm, "Отмена") || !strings.Contains(confirm, `href="/account"`) {
		t.Errorf("the logout confirmation has no «Отмена»: %s", confirm)
	}
	csrf := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(confirm)
	if csrf == nil {
		t.Fatal("no logout form")
	}
	resp, err := br.PostForm(h.URL+"/oauth2/logout", url.Values{"csrf": {csrf[1]}})
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(out), "Вы вышли") || !strings.Contains(string(out), `href="/"`) {
		t.Errorf("«Вы вышли» offers no way on: %s", out)
	}
}
