package broker_test

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/esia-broker/esia-broker/storage"
)

// TestChildOwnESIAAccount: a child under 14 logs in through ESIA with an own account and is
// linked as self by own SNILS and birth date — whether ESIA reports the account as confirmed
// (Дарья, 9) or not (Вера, 12). Tokens say student, the own card, amr esia and an acr that tells
// the two apart. The parent's account page shows that the child logs in through ESIA, and the
// parent can switch the child's login-and-password sub-account off.
func TestChildOwnESIAAccount(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		e := newLinkEnv(t, s, "ESIA_BROKER_DEV=true", "ESIA_BROKER_CHILDREN_ARGON2_MEMORY_KIB=8192", "ESIA_BROKER_LIMITS_PAGES_PER_IP_PER_MINUTE=0")
		for _, tc := range []struct {
			persona, student, acr string
		}{{"child-9", "s-2", "urn:esia:trusted"}, {"child-12-unconfirmed", "s-7", "urn:esia:unconfirmed-child"}} {
			br := newBrowser(t)
			tok, c := e.tokens(t, e.esiaLogin(t, br, tc.persona, nil, e.acceptAll(t, br)))
			if studentIDs(c) != tc.student+"/"+map[string]string{"s-2": "sch-2", "s-7": "sch-2"}[tc.student]+"/self" || !slices.Equal(c.Roles, []string{"student"}) || c.StudentID != tc.student || !slices.Equal(c.AMR, []string{"esia"}) {
				t.Errorf("%s: claims %+v", tc.persona, c)
			}
			idt, _ := e.rp.verifier.Verify(e.rp.ctx, tok.Extra("id_token").(string))
			var acr struct {
				ACR string `json:"acr"`
			}
			_ = idt.Claims(&acr)
			if acr.ACR != tc.acr {
				t.Errorf("%s: acr %q, want %q", tc.persona, acr.ACR, tc.acr)
			}
			// A child is not offered the parent's code: its account page has no such link, and
			// the role and parent-code pages lead to the student's code.
			if _, page := e.get(t, br, "/account"); strings.Contains(page, "role=parent") || !strings.Contains(page, "Я учусь") {
				t.Errorf("%s: the account page offers the parent's code: %s", tc.persona, page)
			}
			for _, path := range []string{"/link/code?role=parent", "/link/role"} {
				if code, page := e.get(t, br, path); code != 200 || !strings.Contains(page, `name="role" value="student"`) || strings.Contains(page, `value="parent"`) {
					t.Errorf("%s: %s: %d %s", tc.persona, path, code, page)
				}
			}
		}
		// What ESIA sent for the unconfirmed account is logged by field name, without values.
		logs := e.h.Logs.String()
		i := strings.Index(logs, `"msg":"unconfirmed upstream account"`)
		if i < 0 {
			t.Fatalf("no log of the unconfirmed account: %s", logs)
		}
		line := logs[i:]
		line = line[:strings.IndexByte(line, '\n')]
		if !strings.Contains(line, `"admitted":true`) || !strings.Contains(line, `"snils"`) || !strings.Contains(line, `"trusted"`) {
			t.Errorf("log line: %s", line)
		}
		for _, personal := range []string{"Смирнова", "Вера", "890-123-456", "15.08.2014", "2014-08-15"} {
			if strings.Contains(line, personal) {
				t.Errorf("the log line holds personal data %q: %s", personal, line)
			}
		}

		// The parent of Дарья: the account page shows she logs in through ESIA; her sub-account
		// (made before) can be switched off, which ends its sessions and tokens.
		parent := newBrowser(t)
		e.esiaLogin(t, parent, "parent-two-kids", nil, e.acceptAll(t, parent))
		_, page := e.get(t, parent, "/account")
		code, body := e.postPage(t, parent, "/account/child", page, url.Values{"action": {"create"}, "student": {"s-1"}, "login": {"alex.ivanov"}, "password": {"correct-horse"}})
		if code != 200 {
			t.Fatalf("sub-account for s-1: %d %s", code, body)
		}
		_, page = e.get(t, parent, "/account")
		darya := page[strings.Index(page, "<h3>Иванова Дарья"):]
		darya = darya[:strings.Index(darya, "</section>")]
		if !strings.Contains(darya, "Входит через Госуслуги со своей учётной записью") || strings.Contains(darya, `value="create"`) {
			t.Errorf("Дарья on the parent's page: %s", darya)
		}
		alex := page[strings.Index(page, "<h3>Иванов Алексей"):]
		alex = alex[:strings.Index(alex, "</section>")]
		if strings.Contains(alex, "Входит через Госуслуги") || strings.Contains(alex, `value="move"`) {
			t.Errorf("Алексей (no own ESIA login) offered the switch: %s", alex)
		}
		// Moving Алексей is refused: he has not logged in with an own ESIA account.
		if code, body := e.postPage(t, parent, "/account/child", page, url.Values{"action": {"move"}, "student": {"s-1"}}); code != http.StatusBadRequest || !strings.Contains(body, "ещё не входил") {
			t.Errorf("move without own ESIA: %d %s", code, title(body))
		}
		// Алексей logs in with his password and gets a refresh token.
		child := newBrowser(t)
		resp, verifier := e.childSignIn(t, child)
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if loc.Query().Get("code") == "" {
			t.Fatalf("child login: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		childTok, err := e.rp.conf.Exchange(e.rp.ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		// Then his own ESIA account: a card for him in the emulator is not there, so link it
		// as the diary would, by his own SNILS, through the store.
		ctx := context.Background()
		sub := "1000399999"
		own, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: &sub, Birthdate: "2013-09-12"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddLink(ctx, own.ID, "s-1", "self", "snils"); err != nil {
			t.Fatal(err)
		}
		_, page = e.get(t, parent, "/account")
		if code, body := e.postPage(t, parent, "/account/child", page, url.Values{"action": {"move"}, "student": {"s-1"}}); code != 200 || !strings.Contains(body, "Вход по логину <b>alex.ivanov</b> отключён") {
			t.Fatalf("move: %d %s", code, body)
		}
		if _, err := e.rp.conf.TokenSource(e.rp.ctx, &oauth2.Token{RefreshToken: childTok.RefreshToken}).Token(); err == nil {
			t.Error("the moved sub-account's refresh token still works")
		}
		resp, _ = e.childSignIn(t, newBrowser(t))
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("the moved sub-account still logs in: %d", resp.StatusCode)
		}
		if logs := e.h.Logs.String(); !strings.Contains(logs, `"msg":"login refused","request_id"`) || !strings.Contains(logs, `"upstream":"child","result":"disabled"`) || strings.Contains(logs, "alex.ivanov") {
			t.Errorf("the refused child login's log line: %s", logs)
		}
		if n := countAudit(t, s, "child.moved_to_esia"); n != 1 {
			t.Errorf("%d audit lines child.moved_to_esia", n)
		}
	})
}

func countAudit(t *testing.T, s *storage.Store, action string) int {
	t.Helper()
	entries, err := s.AuditEvents(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, a := range entries {
		if a.Action == action {
			n++
		}
	}
	return n
}

// TestUnconfirmedAccountsRefused: an unconfirmed ESIA account gets in only as a child's own
// account matching an active card; an adult's, or a child's with the rule switched off, or with
// the card gone, is refused with the page that explains confirmation, and nothing is written.
func TestUnconfirmedAccountsRefused(t *testing.T) {
	for _, tc := range []struct {
		name, persona string
		env           []string
		prepare       func(t *testing.T, s *storage.Store)
	}{
		{"an adult's", "unconfirmed", nil, nil},
		{"a child's, rule off", "child-12-unconfirmed", []string{"ESIA_BROKER_CHILDREN_UNCONFIRMED_ESIA_CHILDREN=false"}, nil},
		{"a child's, card inactive", "child-12-unconfirmed", nil, func(t *testing.T, s *storage.Store) {
			if _, err := s.SetStudentActive(context.Background(), "s-7", false); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openSQLite(t)
			e := newLinkEnv(t, s, tc.env...)
			if tc.prepare != nil {
				tc.prepare(t, s)
			}
			before, _ := s.CountAccounts(context.Background())
			br := newBrowser(t)
			res := e.esiaLogin(t, br, tc.persona, nil, func(body string, resp *http.Response) *http.Response { return nil })
			if res.final.StatusCode != http.StatusForbidden || !strings.Contains(res.body, "не подтверждена") {
				t.Errorf("%d %s", res.final.StatusCode, title(res.body))
			}
			if after, _ := s.CountAccounts(context.Background()); after != before {
				t.Errorf("accounts %d → %d", before, after)
			}
		})
	}
}

// TestOnlyESIARegion: with children.password_accounts false every password path is refused —
// the start page's child entry, the child login (page and form), creating and resetting a
// sub-account, and what a sub-account made before was given (its refresh token) — and the
// parent's page points to ESIA accounts for children; serve disables the sub-accounts at start.
func TestOnlyESIARegion(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		// A sub-account made while the region still allowed them, with a refresh token.
		before, _ := childEnv(t, s)
		resp, verifier := before.childSignIn(t, newBrowser(t))
		loc, _ := url.Parse(resp.Header.Get("Location"))
		childTok, err := before.rp.conf.Exchange(before.rp.ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
		if err != nil {
			t.Fatal(err)
		}
		// The region switches password access off: a broker on the same database.
		conns, _ := esiaUpstream(t, "", 5*time.Second)
		h := newHarnessWith(t, s, conns, "ESIA_BROKER_CHILDREN_PASSWORD_ACCOUNTS=false", "ESIA_BROKER_LIMITS_PAGES_PER_IP_PER_MINUTE=0")
		e := &linkEnv{h: h, rp: newRP(t, h, "kiasuo", "secret-secret-secret", "openid", "profile", "students", "esia", "offline_access"), store: s, link: before.link, inv: before.inv}
		br := newBrowser(t)
		_, start := e.get(t, br, strings.TrimPrefix(e.rp.conf.AuthCodeURL("state-only-esia", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), e.h.URL))
		if strings.Contains(start, "/child/login") || !strings.Contains(start, "/login/esia") {
			t.Errorf("start page: %s", start)
		}
		if code, body := e.get(t, br, "/child/login?login=x"); code != http.StatusForbidden || !strings.Contains(body, "только через Госуслуги") {
			t.Errorf("child login page: %d %s", code, title(body))
		}
		parent := newBrowser(t)
		parentTok, _ := e.tokens(t, e.esiaLogin(t, parent, "parent-two-kids", nil, e.acceptAll(t, parent)))
		// Control: refresh tokens work on this broker (the child's fails below for its kind).
		if _, err := e.rp.conf.TokenSource(e.rp.ctx, &oauth2.Token{RefreshToken: parentTok.RefreshToken}).Token(); err != nil {
			t.Fatalf("the parent's refresh: %v", err)
		}
		_, page := e.get(t, parent, "/account")
		if strings.Contains(page, `value="create"`) || strings.Contains(page, `value="reset"`) || !strings.Contains(page, "только через Госуслуги") {
			t.Errorf("account page offers password logins: %s", page)
		}
		for _, form := range []url.Values{
			{"action": {"create"}, "student": {"s-2"}, "login": {"darya.ivanova"}, "password": {"correct-horse"}},
			{"action": {"reset"}, "student": {"s-1"}, "password": {"another-horse"}},
		} {
			if code, body := e.postPage(t, parent, "/account/child", page, form); code != http.StatusBadRequest || !strings.Contains(body, "только через Госуслуги") {
				t.Errorf("%s: %d %s", form.Get("action"), code, title(body))
			}
		}
		// The child's form posted with a valid CSRF token (the parent's browser) is refused too.
		resp = e.post(t, parent, "/child/login", page, url.Values{"login_request": {"x"}, "login": {"alex.ivanov"}, "password": {"correct-horse"}})
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("child login form: %d", resp.StatusCode)
		}
		if _, err := e.rp.conf.TokenSource(e.rp.ctx, &oauth2.Token{RefreshToken: childTok.RefreshToken}).Token(); err == nil {
			t.Error("the sub-account's refresh token still works")
		}
		// serve disables the sub-accounts at start, each audited.
		n, err := e.h.Broker.DisablePasswordAccounts(context.Background())
		if err != nil || n != 1 {
			t.Errorf("disabled %d, %v; want 1", n, err)
		}
		if n, _ := e.h.Broker.DisablePasswordAccounts(context.Background()); n != 0 {
			t.Errorf("second run disabled %d", n)
		}
		if n := countAudit(t, s, "child.disabled"); n != 1 {
			t.Errorf("%d audit lines child.disabled", n)
		}
	})
}

// TestUnconfirmedChildRechecked: what an unconfirmed child account was given lasts only while
// the rule that admitted it holds — the card active, the rule on (the 14th birthday likewise,
// by the same check): refresh is refused as soon as it does not.
func TestUnconfirmedChildRechecked(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		e := newLinkEnv(t, s)
		br := newBrowser(t)
		tok, _ := e.tokens(t, e.esiaLogin(t, br, "child-12-unconfirmed", nil, e.acceptAll(t, br)))
		refresh := func(env *linkEnv, rt string) (*oauth2.Token, error) {
			return env.rp.conf.TokenSource(env.rp.ctx, &oauth2.Token{RefreshToken: rt}).Token()
		}
		next, err := refresh(e, tok.RefreshToken)
		if err != nil {
			t.Fatalf("refresh while the rule holds: %v", err)
		}
		ctx := context.Background()
		if _, err := s.SetStudentActive(ctx, "s-7", false); err != nil {
			t.Fatal(err)
		}
		if _, err := refresh(e, next.RefreshToken); err == nil {
			t.Error("refresh after her card became inactive")
		}
		// The card back, a new login; then the rule is switched off on a broker on the same data.
		if _, err := s.SetStudentActive(ctx, "s-7", true); err != nil {
			t.Fatal(err)
		}
		br2 := newBrowser(t)
		tok2, _ := e.tokens(t, e.esiaLogin(t, br2, "child-12-unconfirmed", nil, e.acceptAll(t, br2)))
		conns, _ := esiaUpstream(t, "", 5*time.Second)
		h := newHarnessWith(t, s, conns, "ESIA_BROKER_CHILDREN_UNCONFIRMED_ESIA_CHILDREN=false")
		off := &linkEnv{h: h, rp: newRP(t, h, "kiasuo", "secret-secret-secret", "openid", "profile", "students", "esia", "offline_access"), store: s}
		if _, err := refresh(off, tok2.RefreshToken); err == nil {
			t.Error("refresh after the rule was switched off")
		}
		// Control: a confirmed child's refresh works on that broker.
		br3 := newBrowser(t)
		tok3, _ := e.tokens(t, e.esiaLogin(t, br3, "child-9", nil, e.acceptAll(t, br3)))
		if _, err := refresh(off, tok3.RefreshToken); err != nil {
			t.Errorf("a confirmed child's refresh: %v", err)
		}
	})
}
