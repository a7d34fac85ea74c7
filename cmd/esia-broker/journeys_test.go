package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// a11yCheck is run on every broker page: lang, one h1, headings in order, a label for every
// input, alt on every image, text on every button, error messages tied to existing elements,
// and no external resources.
const a11yCheck = `(() => {
 const p = [];
 if (document.documentElement.lang !== 'ru') p.push('html lang is not ru');
 const h1 = document.querySelectorAll('h1'); if (h1.length !== 1) p.push('h1 count ' + h1.length);
 let last = 0; for (const h of document.querySelectorAll('h1,h2,h3,h4,h5,h6')) { const l = +h.tagName[1]; if (last && l > last + 1) p.push('heading jump to ' + h.tagName); last = l; }
 for (const i of document.querySelectorAll('input:not([type=hidden]), select, textarea')) {
   const ok = (i.id && document.querySelector('label[for="' + i.id + '"]')) || i.getAttribute('aria-label') || i.closest('label');
   if (!ok) p.push('input without label: ' + (i.name || i.id));
 }
 for (const img of document.querySelectorAll('img')) if (!img.hasAttribute('alt')) p.push('img without alt');
 for (const b of document.querySelectorAll('button, a.button')) if (!b.textContent.trim()) p.push('button without text');
 for (const e of document.querySelectorAll('[aria-describedby]')) for (const id of e.getAttribute('aria-describedby').split(' ')) if (!document.getElementById(id)) p.push('aria-describedby to missing ' + id);
 for (const e of document.querySelectorAll('link[href], img[src], script[src]')) { const u = e.href || e.src; if (!u.startsWith(location.origin)) p.push('external resource ' + u); }
 if (/\b(error|exception|panic|nil pointer)\b/i.test(document.body.innerText)) p.push('English error text on the page');
 for (const e of document.querySelectorAll('p[aria-label], div[aria-label]:not([role]), span[aria-label]:not([role]), b[aria-label]')) p.push('aria-label on an element without a role (aria-prohibited-attr)');
 for (const c of document.querySelectorAll('.code')) if (c.getBoundingClientRect().height >= 2 * parseFloat(getComputedStyle(c).lineHeight)) p.push('a code wraps: ' + c.textContent.trim());
 if (document.documentElement.scrollWidth > window.innerWidth + 1) p.push('the page scrolls sideways at ' + window.innerWidth + ' px');
 if (/учетн/i.test(document.body.innerText)) p.push('«учетн» without ё');
 if (/\d \u043b\u0435\u0442|№ \d/.test(document.body.innerText)) p.push('a breaking space in «N лет» or «№ N»');
 return p;
})()`

type journey struct {
	t    *testing.T
	ctx  context.Context
	dir  string
	name string
	seen []string
}

// page checks the current broker page and saves screenshots at phone and desktop width.
func (j *journey) page(step string) {
	j.t.Helper()
	ctx, cancel := context.WithTimeout(j.ctx, 15*time.Second)
	defer cancel()
	problems, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](a11yCheck))
	if err != nil {
		j.t.Fatalf("%s: a11y check: %v", step, err)
	}
	for _, p := range problems {
		j.t.Errorf("%s/%s: %s", j.name, step, p)
	}
	title, _ := chromedp.Run(ctx, chromedp.Title())
	j.seen = append(j.seen, title)
	for _, w := range []struct {
		name string
		w, h int64
	}{{"360", 360, 740}, {"1280", 1280, 800}} {
		if err := chromedp.Do(ctx, chromedp.EmulateViewport(w.w, w.h)); err != nil {
			j.t.Fatal(err)
		}
		shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			j.t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(j.dir, fmt.Sprintf("%s-%s-%s.png", j.name, step, w.name)), shot, 0o644); err != nil {
			j.t.Fatal(err)
		}
	}
	_ = chromedp.Do(ctx, chromedp.EmulateViewport(360, 740))
}

func (j *journey) do(actions ...chromedp.Action[chromedp.Void]) {
	j.t.Helper()
	ctx, cancel := context.WithTimeout(j.ctx, 15*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		loc, _ := chromedp.Run(j.ctx, chromedp.Location())
		body, _ := chromedp.Run(j.ctx, chromedp.Text(chromedp.CSS("body")))
		j.t.Fatalf("%s at %s: %v\n%s", j.name, loc, err, body)
	}
}

// waitTitle waits until the page title contains s (a navigation finished).
func (j *journey) waitTitle(s string) {
	j.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(j.ctx, 2*time.Second)
		title, err := chromedp.Run(ctx, chromedp.Title())
		cancel()
		if err == nil && strings.Contains(title, s) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	j.t.Fatalf("%s: the page %q did not come", j.name, s)
}

func (j *journey) text(css string) string {
	j.t.Helper()
	ctx, cancel := context.WithTimeout(j.ctx, 15*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(css)))
	if err != nil {
		j.t.Fatalf("%s: text of %s: %v", j.name, css, err)
	}
	return s
}

// waitText waits until the element's text contains s (the next page came, not the last one).
func (j *journey) waitText(css, s string) {
	j.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(j.ctx, 2*time.Second)
		got, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(css)))
		cancel()
		if err == nil && strings.Contains(got, s) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	j.t.Fatalf("%s: %s never said %q", j.name, css, s)
}

func (j *journey) eval(js string) string {
	j.t.Helper()
	ctx, cancel := context.WithTimeout(j.ctx, 15*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
	if err != nil {
		j.t.Fatalf("%s: %s: %v", j.name, js, err)
	}
	return v
}

func click(css string) chromedp.Action[chromedp.Void] { return chromedp.Click(chromedp.CSS(css)) }
func wait(css string) chromedp.Action[chromedp.Void]  { return chromedp.WaitVisible(chromedp.CSS(css)) }

// TestBrowserJourneys drives every persona's journey through the dev server in headless
// Chromium, checks each broker page's accessibility basics and saves screenshots at 360 and
// 1280 px in $ESIA_BROKER_ARTIFACTS (or ./test-artifacts/screenshots).
func TestBrowserJourneys(t *testing.T) {
	dir := os.Getenv("ESIA_BROKER_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join("..", "..", "test-artifacts", "screenshots")
	}
	dir, _ = filepath.Abs(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	base, out := startDev(t)
	root := browser(t)
	if err := chromedp.Do(root, chromedp.Navigate("about:blank")); err != nil {
		t.Fatal(err)
	}
	newJourney := func(t *testing.T, name string) *journey {
		ctx, cancel := chromedp.NewContext(root, chromedp.WithNewBrowserContext())
		t.Cleanup(cancel)
		j := &journey{t: t, ctx: ctx, dir: dir, name: name}
		// The first run of a context creates its tab: no timeout on that one.
		if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
			t.Fatal(err)
		}
		j.do(chromedp.EmulateViewport(360, 740))
		return j
	}
	loginAs := func(j *journey, persona, start string) {
		j.do(chromedp.Navigate(base+start), wait(`a[href^="/login/esia"]`))
		j.page("start")
		j.do(click(`a[href^="/login/esia"]`), wait(`button[value="`+persona+`"]`))
		// The emulator's page is styled (its stylesheet passes the broker's CSP).
		if c := j.eval(`getComputedStyle(document.querySelector('button[name=persona]')).borderTopColor`); c != "rgb(13, 76, 211)" {
			j.t.Errorf("the emulator's page is unstyled: button border %q", c)
		}
		j.do(click(`button[value="` + persona + `"]`))
	}
	accept := func(j *journey) {
		j.do(wait(`button[value="accept"]`))
		j.page("consent")
		j.do(click(`button[value="accept"]`), wait("pre"))
	}
	codes := regexp.MustCompile(`[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}`).FindAllString(out.String(), -1)
	if len(codes) < 2 {
		t.Fatalf("the dev server printed no invite codes: %s", out.String())
	}

	t.Run("parent auto-linked with two children, account, key, child login", func(t *testing.T) {
		j := newJourney(t, "parent-two-kids")
		// The address on the slips: the broker's start page with both entries.
		j.do(chromedp.Navigate(base+"/"), wait(`button[value="esia"]`), wait(`button[value="child"]`))
		j.page("home")
		loginAs(j, "parent-two-kids", "/demo/login")
		accept(j)
		if c := j.text("pre"); !strings.Contains(c, "Иванов Алексей Игоревич") || !strings.Contains(c, "Иванова Дарья Игоревна") {
			t.Errorf("claims: %s", c)
		}
		j.do(chromedp.Navigate(base+"/account"), wait(`input[name="login"]`))
		j.page("account")
		j.do(chromedp.SendKeys(chromedp.CSS(`#login-demo-101`), "alexey.demo"), chromedp.SendKeys(chromedp.CSS(`#pw-demo-101`), "korova-2026"))
		j.do(chromedp.Submit(chromedp.CSS(`#pw-demo-101`)), wait(`[role="status"]`))
		j.page("account-child-created")
		j.do(click(`form[action="/account/key"] button`), wait(".code"))
		j.page("activation-key")
		if k := j.text(".code"); !regexp.MustCompile(`^[0-9A-Z]{4}(-[0-9A-Z]{4}){3}$`).MatchString(strings.TrimSpace(k)) {
			t.Errorf("key %q", k)
		}
		j.do(chromedp.Navigate(base+"/oauth2/logout"), wait(`form[action="/oauth2/logout"] button`))
		j.page("logout-confirm")
		j.do(click(`form[action="/oauth2/logout"] button`))
		j.waitTitle("Вы вышли")
		j.page("logged-out")
	})

	t.Run("child sub-account logs in", func(t *testing.T) {
		c := newJourney(t, "child")
		c.do(chromedp.Navigate(base+"/demo/login"), wait(`a[href^="/child/login"]`), click(`a[href^="/child/login"]`), wait(`#login`))
		c.page("child-login")
		c.do(chromedp.SendKeys(chromedp.CSS("#login"), "alexey.demo"), chromedp.SendKeys(chromedp.CSS("#password"), "wrong-password"), click("button.primary"), wait("#login-error"))
		c.page("child-login-error")
		c.do(chromedp.SendKeys(chromedp.CSS("#password"), "korova-2026"), click("button.primary"), wait("pre"))
		if cl := c.text("pre"); !strings.Contains(cl, `"pwd"`) || !strings.Contains(cl, "Иванов Алексей Игоревич") || strings.Contains(cl, "Иванова Дарья") {
			t.Errorf("child claims: %s", cl)
		}
	})

	t.Run("parent with invite codes", func(t *testing.T) {
		j := newJourney(t, "parent-codes")
		loginAs(j, "parent-no-match", "/demo/login")
		j.do(wait(`a[href^="/link/code?role=parent"]`))
		j.page("role")
		j.do(click(`a[href^="/link/code?role=parent"]`), wait("#code"))
		j.page("code")
		j.do(chromedp.SendKeys(chromedp.CSS("#code"), "AAAA-BBBB-CCCC"), click("button.primary"), wait("#code-error"))
		j.page("code-error")
		// The operator replaces the class's codes with the exact command the dev server
		// printed, run in its folder with nothing else set: the printed codes stop working,
		// the new ones work.
		// Under go test the binary is a go-build one, as under make dev: the command is go run.
		cmd := regexp.MustCompile(`run in this folder: go run \./cmd/esia-broker (.+)`).FindStringSubmatch(out.String())
		if cmd == nil {
			t.Fatalf("the dev server printed no rotate command: %s", out.String())
		}
		rotated, err := run(t, nil, strings.Fields(cmd[1])...)
		if err != nil {
			t.Fatalf("%s in the dev folder: %v", cmd[1], err)
		}
		old := codes
		codes = regexp.MustCompile(`[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}`).FindAllString(rotated, -1)
		if len(codes) < 2 || codes[0] == old[0] {
			t.Fatalf("rotate printed: %s", rotated)
		}
		j.do(chromedp.Clear(chromedp.CSS("#code")), chromedp.SendKeys(chromedp.CSS("#code"), old[0]), click("button.primary"))
		j.waitText("#code-error", "заменён новым")
		j.do(chromedp.Clear(chromedp.CSS("#code")), chromedp.SendKeys(chromedp.CSS("#code"), strings.ToLower(codes[0])), click("button.primary"), wait(`a[href^="/oauth2/authorize/resume"]`))
		j.page("code-done")
		j.do(click(`a[href^="/link/code?role=parent"]`), wait("#code"), chromedp.SendKeys(chromedp.CSS("#code"), codes[1]), click("button.primary"), wait(`a[href^="/oauth2/authorize/resume"]`))
		j.do(click(`a[href^="/oauth2/authorize/resume"]`))
		accept(j)
		if c := j.text("pre"); !strings.Contains(c, "demo-107") || !strings.Contains(c, "demo-108") {
			t.Errorf("claims: %s", c)
		}
	})

	t.Run("unconfirmed account", func(t *testing.T) {
		j := newJourney(t, "unconfirmed")
		loginAs(j, "unconfirmed", "/demo/login")
		j.do(wait(`main a[href="https://www.gosuslugi.ru/"]`))
		j.page("refused")
		if !strings.Contains(j.text("main"), "подтверждённой") {
			t.Error("the page does not say what a confirmed account is")
		}
	})

	t.Run("student of 15", func(t *testing.T) {
		j := newJourney(t, "student-15")
		loginAs(j, "student-15", "/demo/login")
		accept(j)
		if c := j.text("pre"); !strings.Contains(c, `"student"`) || !strings.Contains(c, "demo-103") {
			t.Errorf("claims: %s", c)
		}
	})

	t.Run("parent of three picks a child", func(t *testing.T) {
		j := newJourney(t, "parent-three-kids")
		loginAs(j, "parent-three-kids", "/demo/login?pick=1")
		j.do(wait(`button[value="accept"]`), click(`button[value="accept"]`), wait(`form[action="/select"]`))
		j.page("picker")
		j.do(click(`button[value="demo-105"]`), wait("pre"))
		if c := j.text("pre"); !strings.Contains(c, `"student_id": "demo-105"`) {
			t.Errorf("claims: %s", c)
		}
	})

	t.Run("error pages", func(t *testing.T) {
		j := newJourney(t, "errors")
		j.do(chromedp.Navigate(base+"/no-such-page"), wait("h1"))
		j.page("404")
		j.do(chromedp.Navigate(base+"/oauth2/authorize?client_id=nobody&response_type=code&scope=openid&state=abcdefgh12&redirect_uri=https://evil.example/"), wait("h1"))
		j.page("oauth-error")
		if !strings.Contains(j.text("h1"), "Ошибка запроса на вход") {
			t.Error("not the OAuth error page")
		}
		j.do(chromedp.Navigate(base + "/oauth2/authorize/resume?login=00000000-0000-4000-8000-000000000000"))
		j.waitTitle("Время входа истекло")
		j.page("expired-login")
	})
	t.Logf("screenshots: %s", dir)
}
