package broker_test

import (
	"context"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/esia-broker/esia-broker/invites"
	"github.com/esia-broker/esia-broker/provider"
	"github.com/esia-broker/esia-broker/storage"
)

// stopAt returns the first page and stops.
func stopAt(string, *http.Response) *http.Response { return nil }

// TestStudentsAreSpokenToAsStudents: a student of 15 linked to his own card is told about his
// own data on the consent page, sees «Я учусь» with himself on the account page, and is never
// offered «Мои дети» or «Добавить ребёнка»; a parent's page lists the children without
// «— родитель» after a child's class; the role page does not assume a parent.
func TestStudentsAreSpokenToAsStudents(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		e := newLinkEnv(t, s)
		student := newBrowser(t)
		res := e.esiaLogin(t, student, "student-15", nil, stopAt)
		for _, want := range []string{"Дневник получит ваши сведения об успеваемости", "Кузнецов Иван Андреевич, 9В\u00a0класс", "сведения о вашей учёбе", "№\u00a0152-ФЗ"} {
			if !strings.Contains(res.body, want) {
				t.Errorf("the student's consent page lacks %q: %s", want, res.body)
			}
		}
		for _, bad := range []string{"по детям", "детей", "список привязанных детей"} {
			if strings.Contains(res.body, bad) {
				t.Errorf("the student's consent page says %q", bad)
			}
		}
		e.post(t, student, "/consent", res.body, url.Values{"decision": {"accept"}}).Body.Close()
		_, page := e.get(t, student, "/account")
		if !strings.Contains(page, "<h2>Я учусь</h2>") || !strings.Contains(page, "Кузнецов Иван Андреевич") {
			t.Errorf("the student's account page: %s", page)
		}
		for _, bad := range []string{"Мои дети", "Добавить ребёнка", "родитель</li>", "Как входят дети"} {
			if strings.Contains(page, bad) {
				t.Errorf("the student's account page says %q", bad)
			}
		}

		parent := newBrowser(t)
		e.esiaLogin(t, parent, "parent-two-kids", nil, e.acceptAll(t, parent))
		_, page = e.get(t, parent, "/account")
		if !strings.Contains(page, "<h2>Мои дети</h2>") || !strings.Contains(page, "Иванов Алексей Игоревич, 7А\u00a0класс</li>") || strings.Contains(page, "Я учусь") || strings.Contains(page, "— родитель") {
			t.Errorf("the parent's account page: %s", page)
		}

		nobody := newBrowser(t)
		res = e.esiaLogin(t, nobody, "parent-no-match", nil, stopAt)
		if !strings.Contains(res.body, "ни вас, ни ваших детей") || strings.Contains(res.body, "Мы не нашли ваших детей") {
			t.Errorf("the role page: %s", res.body)
		}
	})
}

// TestChildFormErrors: with two children, a refused sub-account form shows its error in that
// child's form, at the refused field (aria-invalid, aria-describedby to the error), keeps the
// typed login, and leaves the other child's form untouched.
func TestChildFormErrors(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		e := newLinkEnv(t, s, "ESIA_BROKER_DEV=true", "ESIA_BROKER_CHILDREN_ARGON2_MEMORY_KIB=8192")
		parent := newBrowser(t)
		e.esiaLogin(t, parent, "parent-two-kids", nil, e.acceptAll(t, parent))
		_, page := e.get(t, parent, "/account")
		if strings.Count(page, `value="create"`) != 2 {
			t.Fatalf("two children's forms expected: %s", page)
		}
		invalid := func(page, id string) bool {
			return regexp.MustCompile(`id="` + id + `"[^>]*aria-invalid="true" aria-describedby="err-`).MatchString(page)
		}
		for _, c := range []struct {
			name, login, password, field, other, msg string
		}{
			{"bad login", "Ж!", "correct-horse", "login-s-2", "pw-s-2", "Логин: от 3 до 32"},
			{"common password", "dasha.ivanova", "qwerty123", "pw-s-2", "login-s-2", "слишком простой"},
		} {
			t.Run(c.name, func(t *testing.T) {
				code, got := e.postPage(t, parent, "/account/child", page, url.Values{"action": {"create"}, "student": {"s-2"}, "login": {c.login}, "password": {c.password}})
				if code != 400 || !strings.Contains(got, c.msg) {
					t.Fatalf("%d %s", code, got)
				}
				if !invalid(got, c.field) || invalid(got, c.other) || invalid(got, "login-s-1") || invalid(got, "pw-s-1") {
					t.Errorf("the error is not at %s alone: %s", c.field, got)
				}
				if strings.Count(got, `role="alert"`) != 1 || !strings.Contains(got, `id="err-s-2"`) || strings.Contains(got, `id="err-s-1"`) {
					t.Errorf("the error is not in the second child's form alone: %s", got)
				}
				// The error stands in s-2's form, after s-1's.
				if strings.Index(got, `id="err-s-2"`) < strings.Index(got, `value="s-2"`) {
					t.Errorf("the error is above the form it is about")
				}
				if !strings.Contains(got, `id="login-s-2" name="login" type="text" autocapitalize="none" spellcheck="false" maxlength="32" value="`+templateEscape(c.login)+`"`) {
					t.Errorf("the typed login %q is lost: %s", c.login, got)
				}
			})
		}
		// A refusal whose form is not on the page (a password reset for a child with no login)
		// still reaches the child's section.
		code, got := e.postPage(t, parent, "/account/child", page, url.Values{"action": {"reset"}, "student": {"s-1"}, "password": {"correct-horse-2"}})
		if code != 400 || !strings.Contains(got, `id="err-s-1"`) || !strings.Contains(got, "сначала создайте") {
			t.Errorf("reset without a login: %d %s", code, got)
		}
	})
}

func templateEscape(s string) string {
	return strings.NewReplacer("!", "!", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;", "&", "&amp;").Replace(s)
}

// TestEmptyCode: an empty or blank code asks for the code and is not counted as a wrong one:
// more empty submissions than the limit allows, then a valid code links.
func TestEmptyCode(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		e := newLinkEnv(t, s)
		slips, err := e.inv.Issue(context.Background(), invites.IssueRequest{Selection: invites.Selection{SchoolID: "sch-1", IDs: []string{"s-4"}}, Role: invites.RoleParent, TTL: 24 * 3600e9})
		if err != nil {
			t.Fatal(err)
		}
		br := newBrowser(t)
		res := e.esiaLogin(t, br, "parent-no-match", nil, stopAt)
		_, form := e.get(t, br, "/link/code?role=parent&login="+formLogin(t, res.body))
		for i := range invites.DefaultLimits().PerAccount.Max + 2 {
			code, page := e.postPage(t, br, "/link/code", form, url.Values{"role": {"parent"}, "code": {strings.Repeat(" ", i)}})
			if code != 400 || !strings.Contains(page, "Введите код с бланка") || strings.Contains(page, "не подошёл") || !strings.Contains(page, `aria-describedby="code-error"`) {
				t.Fatalf("empty code %d: %d %s", i, code, page)
			}
		}
		code, page := e.postPage(t, br, "/link/code", form, url.Values{"role": {"parent"}, "code": {slips[0].Code}})
		if code != 200 || !strings.Contains(page, "ребёнок привязан") {
			t.Errorf("a valid code after empty ones: %d %s", code, page)
		}
	})
}

func formLogin(t *testing.T, page string) string {
	t.Helper()
	m := regexp.MustCompile(`login=([0-9a-f-]{36})`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no login request on the page: %s", page)
	}
	return m[1]
}

// TestPageDetails: the unconfirmed account's page explains calmly with a link; the key page
// names the app configured for keys; connected devices show the app's name; the focus ring
// has 3:1 contrast on the card; favicon.ico answers.
func TestPageDetails(t *testing.T) {
	s := openSQLite(t)
	e := newLinkEnv(t, s, "ESIA_BROKER_ACTIVATION_CLIENT_ID=mobile")
	ctx := context.Background()
	mobile := e.h.client("mobile", "", "openid", "profile", "students", "offline_access")
	mobile.GrantTypes, mobile.Name = []string{provider.GrantTypeActivationKey, "refresh_token"}, "Дневник Красноярского края"
	if err := s.UpdateClient(ctx, mobile); err != nil {
		t.Fatal(err)
	}

	res := e.esiaLogin(t, newBrowser(t), "unconfirmed", nil, stopAt)
	if res.final.StatusCode != 403 || strings.Contains(res.body, `role="alert"`) || !strings.Contains(res.body, `href="https://www.gosuslugi.ru/"`) || len(strings.Fields(messageOf(res.body))) > 45 {
		t.Errorf("unconfirmed: %d %s", res.final.StatusCode, res.body)
	}

	parent := newBrowser(t)
	e.esiaLogin(t, parent, "parent-two-kids", nil, e.acceptAll(t, parent))
	_, page := e.get(t, parent, "/account")
	code, keyPage := e.postPage(t, parent, "/account/key", page, url.Values{})
	if code != 200 || !strings.Contains(keyPage, "«Дневник Красноярского края»") || strings.Contains(keyPage, "вашего региона") || strings.Contains(keyPage, "aria-label") {
		t.Fatalf("key page: %d %s", code, keyPage)
	}
	key := regexp.MustCompile(`<b>([0-9A-Z-]{19})</b>`).FindStringSubmatch(keyPage)
	if key == nil {
		t.Fatalf("no key: %s", keyPage)
	}
	resp, err := http.PostForm(e.h.URL+"/oauth2/token", url.Values{"grant_type": {provider.GrantTypeActivationKey}, "client_id": {"mobile"}, "activation_key": {key[1]}, "scope": {"openid students"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("key exchange: %d", resp.StatusCode)
	}
	_, page = e.get(t, parent, "/account")
	if !strings.Contains(page, "<li>Дневник Красноярского края: подключено") {
		t.Errorf("devices do not name the app: %s", page)
	}

	for _, c := range []struct{ path, want string }{{"/favicon.ico", "/static/favicon.svg"}} {
		resp, err := noRedirect().Get(e.h.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 301 || resp.Header.Get("Location") != c.want {
			t.Errorf("%s: %d %s", c.path, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	_, svg := e.get(t, newBrowser(t), "/static/favicon.svg")
	if !strings.HasPrefix(svg, "<svg") {
		t.Errorf("favicon: %q", svg)
	}
	_, css := e.get(t, newBrowser(t), "/static/style.css")
	m := regexp.MustCompile(`:focus \{ outline: 3px solid #([0-9a-f]{6})`).FindStringSubmatch(css)
	if m == nil {
		t.Fatal("no focus outline in the stylesheet")
	}
	for _, bg := range []string{"ffffff", "f4f6f8"} {
		if c := contrast(m[1], bg); c < 3 {
			t.Errorf("focus ring #%s on #%s: %.2f:1, WCAG 1.4.11 asks 3:1", m[1], bg, c)
		}
	}
	if !strings.Contains(css, "white-space: nowrap") {
		t.Error("the key may wrap mid-code")
	}
}

func messageOf(page string) string {
	m := regexp.MustCompile(`</h1>\s*<p>([^<]*)</p>`).FindStringSubmatch(page)
	if m == nil {
		return page
	}
	return m[1]
}

func noRedirect() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// contrast is the WCAG 2.1 contrast ratio of two sRGB colours given as rrggbb.
func contrast(a, b string) float64 {
	lum := func(hex string) float64 {
		var l float64
		for i, w := range []float64{0.2126, 0.7152, 0.0722} {
			v, _ := strconv.ParseUint(hex[2*i:2*i+2], 16, 8)
			c := float64(v) / 255
			if c <= 0.03928 {
				c /= 12.92
			} else {
				c = math.Pow((c+0.055)/1.055, 2.4)
			}
			l += w * c
		}
		return l
	}
	la, lb := lum(a), lum(b)
	if la < lb {
		la, lb = lb, la
	}
	return (la + 0.05) / (lb + 0.05)
}
