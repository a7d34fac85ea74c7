package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/esia-broker/esia-broker/storage/storagetest"
)

// browser starts headless Chromium (Debian's package) for one test. Without it the test is
// skipped loudly, or fails under CI=true.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		msg := "!!! Chromium is not installed (Debian package chromium): browser tests NOT RUN"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + "; under CI=true this is a failure")
		}
		t.Skip(msg)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.WindowSize(360, 800),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 60*time.Second)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	return ctx
}

// artifactDir is where screenshots go: $ESIA_BROKER_ARTIFACTS, or the test's temp folder.
func artifactDir(t *testing.T) string {
	if d := os.Getenv("ESIA_BROKER_ARTIFACTS"); d != "" {
		if err := os.MkdirAll(d, 0o755); err == nil {
			return d
		}
	}
	return t.TempDir()
}

// TestBrowserDevLogin: in headless Chromium, the dev server's demo RP → start page → «Войти через
// Госуслуги» → the emulator's persona page → back to the demo RP with verified claims.
func TestBrowserDevLogin(t *testing.T) {
	dir := artifactDir(t) // before startDev changes the working folder
	if !filepath.IsAbs(dir) {
		abs, _ := filepath.Abs(dir)
		dir = abs
	}
	base, _ := startDev(t)
	ctx := browser(t)
	err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/demo/"),
		chromedp.Click(chromedp.CSS(`a[href="/demo/login"]`)),
		chromedp.WaitVisible(chromedp.CSS(`a[href^="/login/esia"]`)),
		chromedp.Click(chromedp.CSS(`a[href^="/login/esia"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[value="parent-two-kids"]`)),
		chromedp.Click(chromedp.CSS(`button[value="parent-two-kids"]`)),
		chromedp.WaitVisible(chromedp.CSS(`button[value="accept"]`)),
		chromedp.Click(chromedp.CSS(`button[value="accept"]`)),
		chromedp.WaitVisible(chromedp.CSS(`pre`)),
	)
	if err != nil {
		t.Fatalf("browser login: %v", err)
	}
	claims, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`pre`)))
	if err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(claims, "Иванова Мария Петровна") || !strings.Contains(claims, `"esia"`) {
		t.Errorf("claims shown: %s", claims)
	}
	p := filepath.Join(dir, "dev-login-claims-360.png")
	if err := os.WriteFile(p, shot, 0o644); err == nil {
		t.Logf("screenshot: %s", p)
	}
}

// TestBrowserSharedComputer: on a shared school computer parent A logs in, then presses «Выйти»
// in the diary. Parent B presses «Войти» next: B must see ESIA's login (the emulator's persona
// page), not be let in as A by ESIA's still-open session. B then logs in as B.
func TestBrowserSharedComputer(t *testing.T) {
	base, _ := startDev(t)
	ctx := browser(t)
	loginAs := func(persona string) error {
		return chromedp.Do(ctx,
			chromedp.WaitVisible(chromedp.CSS(`button[value="`+persona+`"]`)),
			chromedp.Click(chromedp.CSS(`button[value="`+persona+`"]`)),
			chromedp.WaitVisible(chromedp.CSS(`button[value="accept"]`)),
			chromedp.Click(chromedp.CSS(`button[value="accept"]`)),
			chromedp.WaitVisible(chromedp.CSS(`pre`)),
		)
	}
	startLogin := func() error {
		return chromedp.Do(ctx,
			chromedp.WaitVisible(chromedp.CSS(`a[href="/demo/login"]`)),
			chromedp.Click(chromedp.CSS(`a[href="/demo/login"]`)),
			chromedp.WaitVisible(chromedp.CSS(`a[href^="/login/esia"]`)),
			chromedp.Click(chromedp.CSS(`a[href^="/login/esia"]`)),
		)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/demo/")); err != nil {
		t.Fatal(err)
	}
	if err := startLogin(); err != nil {
		t.Fatalf("A starts: %v", err)
	}
	if err := loginAs("parent-two-kids"); err != nil {
		t.Fatalf("A logs in: %v", err)
	}
	if claims, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`pre`))); err != nil || !strings.Contains(claims, "Иванова Мария Петровна") {
		t.Fatalf("A's claims: %q %v", claims, err)
	}
	// A presses «Выйти»: through the broker's and ESIA's logout, back to the diary.
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`a[href*="/oauth2/logout"]`)), chromedp.WaitVisible(chromedp.CSS(`a[href="/demo/login"]`))); err != nil {
		t.Fatalf("A logs out: %v", err)
	}
	// B presses «Войти» and «Войти через Госуслуги»: ESIA's login page, or A's diary?
	if err := startLogin(); err != nil {
		t.Fatalf("B starts: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`button[value="parent-three-kids"], button[value="accept"], pre`))); err != nil {
		t.Fatalf("B: %v", err)
	}
	loc, err1 := chromedp.Run(ctx, chromedp.Location())
	persona, err2 := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('button[value="parent-three-kids"]') !== null`))
	diary, err3 := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.querySelector('pre, button[value="accept"]') !== null`))
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	if !persona || diary || !strings.Contains(loc, "/_esia/aas/oauth2/v2/ac") {
		t.Fatalf("B was not shown ESIA's login: at %s (persona page %v, A's diary %v)", loc, persona, diary)
	}
	if err := loginAs("parent-three-kids"); err != nil {
		t.Fatalf("B logs in: %v", err)
	}
	if claims, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`pre`))); err != nil || !strings.Contains(claims, "Смирнова Ольга Сергеевна") || strings.Contains(claims, "Иванова") {
		t.Errorf("B's claims: %q %v", claims, err)
	}
}

// TestBrowserChildOwnESIA: a child under 14 (Дарья, 9) logs in through ESIA with her own
// account, is linked by her SNILS and reaches the diary as herself; after she logs out, her
// parent logs in on the same computer and the account page says Дарья logs in through ESIA.
func TestBrowserChildOwnESIA(t *testing.T) {
	base, _ := startDev(t)
	ctx := browser(t)
	login := func(persona string) error {
		return chromedp.Do(ctx,
			chromedp.WaitVisible(chromedp.CSS(`a[href="/demo/login"]`)),
			chromedp.Click(chromedp.CSS(`a[href="/demo/login"]`)),
			chromedp.WaitVisible(chromedp.CSS(`a[href^="/login/esia"]`)),
			chromedp.Click(chromedp.CSS(`a[href^="/login/esia"]`)),
			chromedp.WaitVisible(chromedp.CSS(`button[value="`+persona+`"]`)),
			chromedp.Click(chromedp.CSS(`button[value="`+persona+`"]`)),
			chromedp.WaitVisible(chromedp.CSS(`button[value="accept"]`)),
			chromedp.Click(chromedp.CSS(`button[value="accept"]`)),
			chromedp.WaitVisible(chromedp.CSS(`pre`)),
		)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/demo/")); err != nil {
		t.Fatal(err)
	}
	if err := login("child-9"); err != nil {
		t.Fatalf("Дарья logs in: %v", err)
	}
	claims, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`pre`)))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"student_id": "demo-102"`, `"relation": "self"`, `"student"`, `"esia"`} {
		if !strings.Contains(claims, want) {
			t.Errorf("Дарья's claims lack %s: %s", want, claims)
		}
	}
	if strings.Contains(claims, `"parent"`) {
		t.Errorf("Дарья is called a parent: %s", claims)
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`a[href*="/oauth2/logout"]`)), chromedp.WaitVisible(chromedp.CSS(`a[href="/demo/login"]`))); err != nil {
		t.Fatalf("Дарья logs out: %v", err)
	}
	if err := login("parent-two-kids"); err != nil {
		t.Fatalf("her mother logs in: %v", err)
	}
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/account"), chromedp.WaitVisible(chromedp.CSS(`section.child`))); err != nil {
		t.Fatalf("account page: %v", err)
	}
	section, err := chromedp.Run(ctx, chromedp.Evaluate[string](`[...document.querySelectorAll('section.child')].map(s => s.innerText).find(t => t.includes('Дарья')) || ''`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(section, "Входит через Госуслуги со своей учётной записью") {
		t.Errorf("the parent's page on Дарья: %q", section)
	}
}

// TestBrowserInviteSheet prints a sheet with the CLI and opens it in headless Chromium at A4
// width: the slips are there, with Cyrillic text, and a screenshot is saved.
func TestBrowserInviteSheet(t *testing.T) {
	dir := artifactDir(t)
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	env := testEnv(storagetest.NewSQLiteDSN(t))
	mustRun(t, env, "migrate", "up")
	mustRun(t, env, "roster", "schools", "add", "sch-1", "МБОУ «Средняя школа № 1»")
	roster := filepath.Join(t.TempDir(), "roster.csv")
	os.WriteFile(roster, []byte("student_id,school_id,class,family_name,given_name,middle_name,birthdate\n"+
		"s-1,sch-1,7А,Иванов,Алексей,Игоревич,2013-09-12\ns-2,sch-1,7А,Щукина,Ёлка,Юрьевна,2013-02-03\ns-3,sch-1,7А,Эйхман,Яна,,2013-04-05\n"), 0o600)
	mustRun(t, env, "roster", "import", roster)
	sheet := filepath.Join(dir, "invite-sheet.html")
	mustRun(t, env, "invites", "issue", "--school", "sch-1", "--class", "7А", "--role", "parent", "--out", sheet, "--start-url", "https://dnevnik.example.ru")
	ctx := browser(t)
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(794, 1123), chromedp.Navigate("file://"+sheet), chromedp.WaitVisible(chromedp.CSS(".slip"))); err != nil {
		t.Fatal(err)
	}
	text, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("body")))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Щукина Ёлка Юрьевна", "МБОУ «Средняя школа № 1»", "Родитель (законный представитель)", "https://dnevnik.example.ru"} {
		if !strings.Contains(text, want) {
			t.Errorf("the rendered sheet lacks %q", want)
		}
	}
	slips, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll('.slip').length`))
	if err != nil || slips != 3 {
		t.Errorf("%d slips rendered (%v)", slips, err)
	}
	// Cyrillic is drawn with a real font: the width of a Cyrillic line is not the width of the
	// same number of missing-glyph boxes.
	w, err := chromedp.Run(ctx, chromedp.Evaluate[float64](`(() => { const c = document.createElement('canvas').getContext('2d'); c.font = '16px "DejaVu Sans", sans-serif'; return c.measureText('Щукина').width / c.measureText('ЩЩЩЩЩЩ').width; })()`))
	if err != nil || w <= 0.3 || w >= 0.99 {
		t.Errorf("Cyrillic glyph widths look like boxes: ratio %v (%v)", w, err)
	}
	shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "invite-sheet-a4.png")
	if err := os.WriteFile(p, shot, 0o644); err == nil {
		t.Logf("screenshot: %s", p)
	}
}
