package storage_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ory/fosite"

	"github.com/esia-broker/esia-broker/storage"
)

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func sptr(s string) *string { return &s }

// seedRoster writes two schools, three cards (one inactive) and their guardians.
func seedRoster(t *testing.T, s *storage.Store) {
	t.Helper()
	ctx := context.Background()
	must(t, s.UpsertSchool(ctx, "sch-1", "Школа 1"))
	must(t, s.UpsertSchool(ctx, "sch-2", "Школа 2"))
	must(t, s.UpsertSchool(ctx, "sch-2", "Гимназия 2")) // a rename
	for _, st := range []struct {
		st storage.Student
		g  []storage.Guardian
	}{
		{storage.Student{ID: "s-1", SchoolID: "sch-1", Class: "5А", FamilyName: "Иванов", GivenName: "Пётр", Birthdate: "2015-03-01", SNILSDigest: "own-1", Active: true}, []storage.Guardian{{SNILSDigest: "mom", Name: "Иванова М."}, {SNILSDigest: "mom", Name: "Иванова М."}}},
		{storage.Student{ID: "s-2", SchoolID: "sch-1", Class: "5Б", FamilyName: "Иванова", GivenName: "Анна", Birthdate: "2011-05-01", SNILSDigest: "own-2", Active: true}, []storage.Guardian{{SNILSDigest: "mom", Name: "Иванова М."}}},
		{storage.Student{ID: "s-3", SchoolID: "sch-2", Class: "1А", FamilyName: "Петров", GivenName: "Глеб", Birthdate: "2019-01-01", Active: false}, []storage.Guardian{{SNILSDigest: "mom", Name: "Иванова М."}}},
	} {
		changed, err := s.UpsertStudent(ctx, &st.st, st.g)
		if err != nil || !changed {
			t.Fatalf("upsert %s: %v %v", st.st.ID, changed, err)
		}
	}
}

// testRosterAndLinks: schools, cards, guardians, SNILS look-ups, selections, links.
func testRosterAndLinks(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	seedRoster(t, s)
	schools, err := s.Schools(ctx)
	if err != nil || len(schools) != 2 || schools[1].Name != "Гимназия 2" {
		t.Errorf("schools %+v %v", schools, err)
	}
	st, err := s.Student(ctx, "s-1")
	if err != nil || st.FamilyName != "Иванов" || !st.Active || st.Birthdate != "2015-03-01" {
		t.Errorf("student %+v %v", st, err)
	}
	if _, err := s.Student(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("missing student: %v", err)
	}
	g, err := s.Guardians(ctx, "s-1")
	if err != nil || len(g) != 1 || g[0].SNILSDigest != "mom" {
		t.Errorf("guardians (a repeated one once) %+v %v", g, err)
	}
	// The same card again changes nothing.
	if changed, err := s.UpsertStudent(ctx, &storage.Student{ID: "s-1", SchoolID: "sch-1", Class: "5А", FamilyName: "Иванов", GivenName: "Пётр", Birthdate: "2015-03-01", SNILSDigest: "own-1", Active: true}, []storage.Guardian{{SNILSDigest: "mom", Name: "Иванова М."}}); err != nil || changed {
		t.Errorf("the same card again: changed=%v %v", changed, err)
	}
	parents, own, err := s.StudentsForSNILS(ctx, "mom")
	if err != nil || len(parents) != 2 || parents[0].ID != "s-1" || parents[1].ID != "s-2" || len(own) != 0 {
		t.Errorf("SNILS mom: parents %+v own %+v %v (the inactive card must not count)", parents, own, err)
	}
	if _, own, _ := s.StudentsForSNILS(ctx, "own-2"); len(own) != 1 || own[0].ID != "s-2" {
		t.Errorf("own SNILS: %+v", own)
	}
	sel, err := s.SelectStudents(ctx, storage.StudentSelection{SchoolID: "sch-1", Class: "5А"})
	if err != nil || len(sel) != 1 || sel[0].ID != "s-1" {
		t.Errorf("select 5А: %+v %v", sel, err)
	}
	if sel, _ := s.SelectStudents(ctx, storage.StudentSelection{SchoolID: "sch-1", IDs: []string{"s-2", "s-3"}}); len(sel) != 1 || sel[0].ID != "s-2" {
		t.Errorf("select by ids within the school, active only: %+v", sel)
	}
	if sel, _ := s.SelectStudents(ctx, storage.StudentSelection{SchoolID: "sch-2"}); len(sel) != 0 {
		t.Errorf("an inactive card selected: %+v", sel)
	}
	must(t, s.AnalyzeRoster(ctx))

	acct, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: sptr("oid-1"), Birthdate: "1980-01-01"})
	must(t, err)
	if got, err := s.AccountByUpstream(ctx, "esia", "oid-1"); err != nil || got.ID != acct.ID {
		t.Errorf("account by upstream: %+v %v", got, err)
	}
	if _, err := s.AccountByUpstream(ctx, "esia", "oid-2"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("unknown upstream account: %v", err)
	}
	if added, err := s.AddLink(ctx, acct.ID, "s-1", "parent", "snils"); err != nil || added == "" {
		t.Fatalf("add link: %v %v", added, err)
	}
	if added, _ := s.AddLink(ctx, acct.ID, "s-1", "parent", "invite"); added != "" {
		t.Error("a second active link to the same card")
	}
	if added, _ := s.AddLink(ctx, acct.ID, "s-3", "parent", "invite"); added == "" {
		t.Error("link to s-3")
	}
	linked, err := s.LinkedStudents(ctx, acct.ID)
	if err != nil || len(linked) != 1 || linked[0].StudentID != "s-1" || linked[0].Relation != "parent" {
		t.Errorf("linked students (active cards only) %+v %v", linked, err)
	}
	gl, err := s.GuardianLinks(ctx, "s-1")
	if err != nil || len(gl) != 1 || gl[0].AccountID != acct.ID {
		t.Errorf("guardian links %+v %v", gl, err)
	}
	must(t, s.SetAccountStatus(ctx, acct.ID, "disabled"))
	if gl, _ := s.GuardianLinks(ctx, "s-1"); len(gl) != 0 {
		t.Errorf("a disabled account still counts as a guardian: %+v", gl)
	}
	must(t, s.SetAccountStatus(ctx, acct.ID, "active"))
	links, _ := s.Links(ctx, acct.ID, false)
	if revoked, err := s.RevokeLink(ctx, links[0].ID); err != nil || !revoked {
		t.Errorf("revoke: %v %v", revoked, err)
	}
	if revoked, _ := s.RevokeLink(ctx, links[0].ID); revoked {
		t.Error("a link revoked twice")
	}
	if all, _ := s.Links(ctx, acct.ID, true); len(all) != 2 || all[0].RevokedAt == nil {
		t.Errorf("all links %+v", all)
	}
	if active, _ := s.Links(ctx, acct.ID, false); len(active) != 1 {
		t.Errorf("active links %+v", active)
	}
	if changed, err := s.SetStudentActive(ctx, "s-3", true); err != nil || !changed {
		t.Errorf("reactivate: %v %v", changed, err)
	}
	if _, err := s.SetStudentActive(ctx, "nope", false); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("deactivating a missing card: %v", err)
	}
}

// testInvites: issue, open, list, redeem once (concurrently too), refusal reasons, give back,
// revoke, expiry by the store's clock.
func testInvites(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	clk := withClock(s)
	seedRoster(t, s)
	now := clk.now()
	invs := []storage.Invite{
		{ID: "i-1", CodeDigest: "d-1", StudentID: "s-1", Role: "parent", CreatedBy: "cli", CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		{ID: "i-2", CodeDigest: "d-2", StudentID: "s-2", Role: "student", CreatedBy: "cli", CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		{ID: "i-3", CodeDigest: "d-3", StudentID: "s-2", Role: "parent", CreatedBy: "cli", CreatedAt: now, ExpiresAt: now.Add(2 * time.Hour)},
	}
	must(t, s.CreateInvites(ctx, invs))
	if err := s.CreateInvites(ctx, []storage.Invite{{ID: "i-4", CodeDigest: "d-1", StudentID: "s-1", Role: "parent", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}}); err == nil {
		t.Error("two invites with one digest")
	}
	open, err := s.OpenInvites(ctx, []string{"s-1", "s-2"}, "parent")
	if err != nil || len(open) != 2 {
		t.Errorf("open parent invites %+v %v", open, err)
	}
	rows, err := s.ListInvites(ctx, storage.InviteFilter{SchoolID: "sch-1", Role: "student"})
	if err != nil || len(rows) != 1 || rows[0].ID != "i-2" || rows[0].FamilyName != "Иванова" {
		t.Errorf("list %+v %v", rows, err)
	}
	for f, want := range map[storage.InviteFilter]int{{SchoolID: "sch-2"}: 0, {SchoolID: "sch-1", Class: "5А"}: 1, {Class: "5Б"}: 2, {Role: "parent"}: 2, {}: 3} {
		if rows, err := s.ListInvites(ctx, f); err != nil || len(rows) != want {
			t.Errorf("list %+v: %d rows %v, want %d", f, len(rows), err, want)
		}
	}
	if _, err := s.RedeemInvite(ctx, "d-2", "parent", "a"); !errors.Is(err, storage.ErrInviteWrongUse) {
		t.Errorf("wrong role: %v", err)
	}
	if _, err := s.RedeemInvite(ctx, "nope", "parent", "a"); !errors.Is(err, storage.ErrInviteUnknown) {
		t.Errorf("unknown: %v", err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in, err := s.RedeemInvite(ctx, "d-1", "parent", fmt.Sprintf("acct-%d", i))
			switch {
			case err == nil && in.ID == "i-1":
				wins.Add(1)
			case errors.Is(err, storage.ErrInviteUsed):
			default:
				t.Errorf("redeem: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("%d of 20 concurrent redemptions won", wins.Load())
	}
	must(t, s.UnredeemInvite(ctx, "i-1"))
	if in, err := s.RedeemInvite(ctx, "d-1", "parent", "again"); err != nil || *in.RedeemedBy != "again" {
		t.Errorf("after give-back: %+v %v", in, err)
	}
	if n, err := s.RevokeInvites(ctx, []string{"i-3", "i-1", "nope"}); err != nil || n != 1 {
		t.Errorf("revoke: %d %v (a redeemed one is not revoked)", n, err)
	}
	if _, err := s.RedeemInvite(ctx, "d-3", "parent", "a"); !errors.Is(err, storage.ErrInviteRevoked) {
		t.Errorf("revoked: %v", err)
	}
	clk.add(time.Hour + time.Second)
	if _, err := s.RedeemInvite(ctx, "d-2", "student", "a"); !errors.Is(err, storage.ErrInviteExpired) {
		t.Errorf("expired: %v", err)
	}
	if open, _ := s.OpenInvites(ctx, []string{"s-2"}, "student"); len(open) != 0 {
		t.Errorf("an expired invite is open: %+v", open)
	}
}

// testChildrenAndKeys: sub-accounts, passwords, activation keys (single use, expiry, foreign
// client), devices and their revocation, and the end of every token of a subject.
func testChildrenAndKeys(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	clk := withClock(s)
	seedRoster(t, s)
	c := mustClient(t, s, "mobile")
	a := &storage.Account{FamilyName: "Иванов", GivenName: "Пётр", Birthdate: "2015-03-01"}
	must(t, s.CreateChild(ctx, a, &storage.ChildCredential{StudentID: "s-1", Login: "petya", PasswordHash: "h1", CreatedBy: "parent"}))
	if err := s.CreateChild(ctx, &storage.Account{}, &storage.ChildCredential{StudentID: "s-2", Login: "petya", PasswordHash: "h", CreatedBy: "parent"}); !errors.Is(err, storage.ErrConflict) {
		t.Errorf("a taken login: %v", err)
	}
	byLogin, err := s.ChildByLogin(ctx, "petya")
	if err != nil || byLogin.StudentID != "s-1" || byLogin.PasswordHash != "h1" {
		t.Fatalf("by login %+v %v", byLogin, err)
	}
	if got, err := s.ChildByAccount(ctx, byLogin.AccountID); err != nil || got.Login != "petya" {
		t.Errorf("by account %+v %v", got, err)
	}
	if got, err := s.ChildByStudent(ctx, "s-1"); err != nil || got.AccountID != byLogin.AccountID {
		t.Errorf("by student %+v %v", got, err)
	}
	// The child's own ESIA account: only an active self link of an active non-child account
	// counts, and the listing for the schools says so.
	if own, err := s.OwnESIALink(ctx, "s-1"); err != nil || own {
		t.Errorf("own ESIA link before any: %v %v", own, err)
	}
	if _, err := s.AddLink(ctx, byLogin.AccountID, "s-1", "self", "snils"); err != nil {
		t.Fatal(err)
	}
	if own, _ := s.OwnESIALink(ctx, "s-1"); own {
		t.Error("the sub-account's own link counted as an ESIA account")
	}
	kid, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: sptr("kid-oid"), Birthdate: "2015-03-01"})
	must(t, err)
	if _, err := s.AddLink(ctx, kid.ID, "s-1", "self", "snils"); err != nil {
		t.Fatal(err)
	}
	if own, err := s.OwnESIALink(ctx, "s-1"); err != nil || !own {
		t.Errorf("own ESIA link: %v %v", own, err)
	}
	if own, _ := s.OwnESIALink(ctx, "s-2"); own {
		t.Error("another student's own link")
	}
	list, err := s.ChildAccounts(ctx)
	if err != nil || len(list) != 1 || list[0].StudentID != "s-1" || list[0].Login != "petya" || list[0].Status != "active" || list[0].SchoolID != "sch-1" || list[0].Class != "5А" || !list[0].OwnESIA {
		t.Errorf("child accounts %+v %v", list, err)
	}
	must(t, s.SetAccountStatus(ctx, kid.ID, "disabled"))
	if own, _ := s.OwnESIALink(ctx, "s-1"); own {
		t.Error("a disabled ESIA account still counts")
	}
	must(t, s.SetAccountStatus(ctx, kid.ID, "active"))
	must(t, s.SetChildPassword(ctx, byLogin.AccountID, "h2", "other-parent"))
	if got, _ := s.ChildByLogin(ctx, "petya"); got.PasswordHash != "h2" || got.UpdatedBy != "other-parent" {
		t.Errorf("after the reset %+v", got)
	}
	if err := s.SetChildPassword(ctx, "nope", "h", "x"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("reset of a missing sub-account: %v", err)
	}

	now := clk.now()
	must(t, s.CreateActivationKey(ctx, &storage.ActivationKey{ID: "k-1", KeyDigest: "kd-1", AccountID: byLogin.AccountID, ClientID: "mobile", ExpiresAt: now.Add(10 * time.Minute)}))
	must(t, s.CreateActivationKey(ctx, &storage.ActivationKey{ID: "k-2", KeyDigest: "kd-2", AccountID: byLogin.AccountID, ClientID: "mobile", ExpiresAt: now.Add(time.Minute)}))
	if _, err := s.UseActivationKey(ctx, "kd-1", "other-client", "r"); !errors.Is(err, storage.ErrKeyInvalid) {
		t.Errorf("a key used by another client: %v", err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.UseActivationKey(ctx, "kd-1", "mobile", fmt.Sprintf("req-%d", i)); err == nil {
				wins.Add(1)
			} else if !errors.Is(err, storage.ErrKeyInvalid) {
				t.Errorf("use key: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("%d of 20 concurrent uses of one key won", wins.Load())
	}
	clk.add(2 * time.Minute)
	if _, err := s.UseActivationKey(ctx, "kd-2", "mobile", "r"); !errors.Is(err, storage.ErrKeyInvalid) {
		t.Errorf("an expired key: %v", err)
	}
	devs, err := s.Devices(ctx, byLogin.AccountID)
	if err != nil || len(devs) != 1 || devs[0].ID != "k-1" {
		t.Fatalf("devices %+v %v", devs, err)
	}
	// The device's token family.
	r := newRequest(c, byLogin.AccountID)
	r.ID = devs[0].RequestID
	must(t, s.CreateRefreshTokenSession(ctx, "rt-dev", "", r))
	must(t, s.CreateAccessTokenSession(ctx, "at-dev", r))
	if err := s.RevokeDevice(ctx, "someone-else", "k-1"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("revoking another account's device: %v", err)
	}
	must(t, s.RevokeDevice(ctx, byLogin.AccountID, "k-1"))
	if _, err := s.GetRefreshTokenSession(ctx, "rt-dev", newRequest(c, "x").Session); err == nil {
		t.Error("the revoked device's refresh token still works")
	}
	if _, err := s.GetAccessTokenSession(ctx, "at-dev", newRequest(c, "x").Session); err == nil {
		t.Error("the revoked device's access token still works")
	}
	if devs, _ := s.Devices(ctx, byLogin.AccountID); len(devs) != 0 {
		t.Errorf("a revoked device listed: %+v", devs)
	}
	// RevokeTokensOf ends codes, tokens and sessions of the subject, nobody else's.
	for _, sub := range []string{"victim", "bystander"} {
		must(t, s.CreateAuthorizeCodeSession(ctx, "code-"+sub, newRequest(c, sub)))
		must(t, s.CreateAccessTokenSession(ctx, "at-"+sub, newRequest(c, sub)))
		must(t, s.CreateRefreshTokenSession(ctx, "rt-"+sub, "", newRequest(c, sub)))
	}
	must(t, s.RevokeTokensOf(ctx, "victim"))
	for sub, alive := range map[string]bool{"victim": false, "bystander": true} {
		_, cerr := s.GetAuthorizeCodeSession(ctx, "code-"+sub, newRequest(c, "x").Session)
		_, aerr := s.GetAccessTokenSession(ctx, "at-"+sub, newRequest(c, "x").Session)
		_, rerr := s.GetRefreshTokenSession(ctx, "rt-"+sub, newRequest(c, "x").Session)
		if (cerr == nil) != alive || (aerr == nil) != alive || (rerr == nil) != alive {
			t.Errorf("%s after RevokeTokensOf(victim): code %v, access %v, refresh %v", sub, cerr, aerr, rerr)
		}
	}
}

// testConsentsIntentsAndRequests: consents, link intents (bound to a browser, single use
// under concurrency, expiry) and login requests' updates.
func testConsentsIntentsAndRequests(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	clk := withClock(s)
	acct, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: sptr("oid-c")})
	must(t, err)
	mustClient(t, s, "rp")
	if _, err := s.Consent(ctx, acct.ID, "rp"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("no consent yet: %v", err)
	}
	must(t, s.SaveConsent(ctx, &storage.Consent{AccountID: acct.ID, ClientID: "rp", TextVersion: "1", Scopes: "openid", Students: "s-1"}))
	must(t, s.SaveConsent(ctx, &storage.Consent{AccountID: acct.ID, ClientID: "rp", TextVersion: "2", Scopes: "openid profile", Students: "s-1,s-2"}))
	if c, err := s.Consent(ctx, acct.ID, "rp"); err != nil || c.TextVersion != "2" || c.Students != "s-1,s-2" {
		t.Errorf("consent replaced: %+v %v", c, err)
	}

	now := clk.now()
	must(t, s.CreateLinkIntent(ctx, &storage.LinkIntent{IDHash: "li-1", ClientID: "rp", Relation: "parent", ExpiresAt: now.Add(time.Hour)}, []string{"s-1", "s-2"}))
	got, err := s.LinkIntent(ctx, "li-1")
	if err != nil || len(got.Students()) != 2 || got.BrowserHash != "" {
		t.Fatalf("intent %+v %v", got, err)
	}
	if b, err := s.BindLinkIntent(ctx, "li-1", "browser-a"); err != nil || b.BrowserHash != "browser-a" {
		t.Errorf("bind: %+v %v", b, err)
	}
	if _, err := s.BindLinkIntent(ctx, "li-1", "browser-a"); err != nil {
		t.Errorf("the same browser again: %v", err)
	}
	if _, err := s.BindLinkIntent(ctx, "li-1", "browser-b"); !errors.Is(err, storage.ErrIntentElsewhere) {
		t.Errorf("another browser: %v", err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.ConsumeLinkIntent(ctx, "li-1"); err == nil {
				wins.Add(1)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("%d of 10 concurrent consumptions of one intent won", wins.Load())
	}
	must(t, s.CreateLinkIntent(ctx, &storage.LinkIntent{IDHash: "li-2", ClientID: "rp", Relation: "self", ExpiresAt: now.Add(time.Minute)}, []string{"s-1"}))
	clk.add(2 * time.Minute)
	for name, f := range map[string]func() error{
		"get":     func() error { _, err := s.LinkIntent(ctx, "li-2"); return err },
		"bind":    func() error { _, err := s.BindLinkIntent(ctx, "li-2", "x"); return err },
		"consume": func() error { _, err := s.ConsumeLinkIntent(ctx, "li-2"); return err },
	} {
		if err := f(); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s an expired intent: %v", name, err)
		}
	}

	lr := &storage.LoginRequest{ID: "lr-u", AuthorizeQuery: "q", BrowserHash: "b", ExpiresAt: clk.now().Add(time.Minute)}
	must(t, s.CreateLoginRequest(ctx, lr))
	must(t, s.UpdateLoginRequest(ctx, "lr-u", "s-2", true))
	if got, _ := s.LoginRequest(ctx, "lr-u"); got.StudentID != "s-2" || !got.Consented {
		t.Errorf("updated request %+v", got)
	}
	clk.add(2 * time.Minute)
	if err := s.UpdateLoginRequest(ctx, "lr-u", "s-1", false); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("updating an expired request: %v", err)
	}
	must(t, s.Ping(ctx))
	// private_key_jwt assertions: a jti is used once, also by 50 requests at once; after it
	// expires it may come again.
	if err := s.ClientAssertionJWTValid(ctx, "jti-1"); err != nil {
		t.Errorf("an unseen jti: %v", err)
	}
	var jwg sync.WaitGroup
	var ok atomic.Int32
	for range 50 {
		jwg.Add(1)
		go func() {
			defer jwg.Done()
			if s.SetClientAssertionJWT(ctx, "jti-1", clk.now().Add(5*time.Minute)) == nil {
				ok.Add(1)
			}
		}()
	}
	jwg.Wait()
	if ok.Load() != 1 {
		t.Errorf("the same jti was accepted %d times", ok.Load())
	}
	if err := s.ClientAssertionJWTValid(ctx, "jti-1"); !errors.Is(err, fosite.ErrJTIKnown) {
		t.Errorf("a used jti: %v", err)
	}
	clk.add(6 * time.Minute)
	if err := s.ClientAssertionJWTValid(ctx, "jti-1"); err != nil {
		t.Errorf("an expired jti: %v", err)
	}
	must(t, s.SetClientAssertionJWT(ctx, "jti-1", clk.now().Add(time.Minute)))
}

// testRevokedFamilyInGrace: a rotated refresh token in its grace window dies with its family.
func testRevokedFamilyInGrace(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	withClock(s)
	if s.RefreshGrace != 5*time.Second {
		t.Errorf("default refresh grace %v, want 5s", s.RefreshGrace)
	}
	s.RefreshGrace = time.Minute
	c := mustClient(t, s, "rp")
	r := newRequest(c, "u")
	must(t, s.CreateRefreshTokenSession(ctx, "rt-g", "", r))
	must(t, s.RotateRefreshToken(ctx, r.GetID(), "rt-g"))
	if _, err := s.GetRefreshTokenSession(ctx, "rt-g", newRequest(c, "x").Session); err != nil {
		t.Fatalf("a rotated token inside its grace window: %v", err)
	}
	must(t, s.RevokeRefreshToken(ctx, r.GetID()))
	if _, err := s.GetRefreshTokenSession(ctx, "rt-g", newRequest(c, "x").Session); err == nil {
		t.Error("a token in its grace window outlived the revocation of its family")
	}
}

// testEdges: the grace window to its last instant, a login without SNILS that keeps the stored
// digest, a code whose request carries no expiry, and the count of sub-accounts ended.
func testEdges(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	clk := withClock(s)
	s.RefreshGrace = 10 * time.Second
	c := mustClient(t, s, "rp")
	r := newRequest(c, "u")
	must(t, s.CreateRefreshTokenSession(ctx, "rt-edge", "", r))
	must(t, s.RotateRefreshToken(ctx, r.GetID(), "rt-edge"))
	clk.add(10 * time.Second)
	if _, err := s.GetRefreshTokenSession(ctx, "rt-edge", newRequest(c, "x").Session); err != nil {
		t.Errorf("at the last instant of the grace window: %v", err)
	}
	clk.add(time.Millisecond)
	if _, err := s.GetRefreshTokenSession(ctx, "rt-edge", newRequest(c, "x").Session); err == nil {
		t.Error("a rotated token used after its grace window")
	}

	a, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: sptr("oid-e"), SNILSDigest: "d1"})
	must(t, err)
	if b, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: sptr("oid-e"), FamilyName: "Новая"}); err != nil || b.SNILSDigest != "d1" || b.FamilyName != "Новая" {
		t.Errorf("a login without SNILS: %+v %v (the stored digest stays)", b, err)
	}
	if b, _ := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: sptr("oid-e"), FamilyName: "Новая", SNILSDigest: "d2"}); b.SNILSDigest != "d2" {
		t.Errorf("a new SNILS: %+v", b)
	}
	if got, _ := s.Account(ctx, a.ID); got.SNILSDigest != "d2" {
		t.Errorf("stored %+v", got)
	}

	// Rows whose request carries no expiry of its own: a code and its PKCE and OpenID Connect
	// rows live 10 minutes, a refresh token (a grant that never expires) stays.
	bare := newRequest(c, "u")
	setExp := bare.Session.(interface {
		SetExpiresAt(fosite.TokenType, time.Time)
	})
	setExp.SetExpiresAt(fosite.AuthorizeCode, time.Time{})
	setExp.SetExpiresAt(fosite.RefreshToken, time.Time{})
	must(t, s.CreateAuthorizeCodeSession(ctx, "code-bare", bare))
	must(t, s.CreatePKCERequestSession(ctx, "pkce-bare", bare))
	must(t, s.CreateOpenIDConnectSession(ctx, "oidc-bare", bare))
	must(t, s.CreateRefreshTokenSession(ctx, "rt-bare", "", bare))
	alive := func() (code, pkce, oidc, refresh bool) {
		_, e1 := s.GetAuthorizeCodeSession(ctx, "code-bare", newRequest(c, "x").Session)
		_, e2 := s.GetPKCERequestSession(ctx, "pkce-bare", newRequest(c, "x").Session)
		_, e3 := s.GetOpenIDConnectSession(ctx, "oidc-bare", newRequest(c, "x"))
		_, e4 := s.GetRefreshTokenSession(ctx, "rt-bare", newRequest(c, "x").Session)
		return e1 == nil, e2 == nil, e3 == nil, e4 == nil
	}
	clk.add(9 * time.Minute)
	if _, err := s.DeleteExpired(ctx); err != nil {
		t.Fatal(err)
	}
	if code, pkce, oidc, refresh := alive(); !code || !pkce || !oidc || !refresh {
		t.Errorf("rows without an expiry of their own, 9 minutes on: code %v, PKCE %v, OIDC %v, refresh %v", code, pkce, oidc, refresh)
	}
	clk.add(2 * time.Minute)
	if _, err := s.DeleteExpired(ctx); err != nil {
		t.Fatal(err)
	}
	if code, pkce, oidc, _ := alive(); code || pkce || oidc {
		t.Errorf("rows without an expiry of their own outlived 10 minutes: code %v, PKCE %v, OIDC %v", code, pkce, oidc)
	}
	clk.add(10 * 365 * 24 * time.Hour)
	if _, err := s.DeleteExpired(ctx); err != nil {
		t.Fatal(err)
	}
	if _, _, _, refresh := alive(); !refresh {
		t.Error("a refresh token without an expiry was removed within ten years")
	}

	seedRoster(t, s)
	child := &storage.Account{FamilyName: "Иванов", GivenName: "Пётр"}
	must(t, s.CreateChild(ctx, child, &storage.ChildCredential{StudentID: "s-1", Login: "petya-e", PasswordHash: "h", CreatedBy: "p"}))
	if n, err := s.EndOrphanedChildAccess(ctx, "s-1", "s-2"); err != nil || n != 1 {
		t.Errorf("orphaned sub-accounts ended: %d %v, want 1 (s-1 has no parent; s-2 has no sub-account)", n, err)
	}
	p, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: sptr("oid-p"), Birthdate: "1980-01-01"})
	must(t, err)
	if _, err := s.AddLink(ctx, p.ID, "s-1", "parent", "invite"); err != nil {
		t.Fatal(err)
	}
	if n, err := s.EndOrphanedChildAccess(ctx, "s-1"); err != nil || n != 0 {
		t.Errorf("a sub-account with a parent ended: %d %v", n, err)
	}
}

// testRosterChangeEndsSNILSLinks: a guardian taken off a card, or the card's own SNILS changed,
// ends the links made by that SNILS at once (not at the person's next login), and a sub-account
// left without a parent; links made by code stay.
func testRosterChangeEndsSNILSLinks(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	c := mustClient(t, s, "rp")
	seedRoster(t, s)
	mom, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: sptr("oid-mom"), SNILSDigest: "mom", Birthdate: "1980-01-01"})
	must(t, err)
	aunt, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: sptr("oid-aunt"), SNILSDigest: "aunt", Birthdate: "1979-01-01"})
	must(t, err)
	self, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: sptr("oid-self"), SNILSDigest: "own-2", Birthdate: "2011-05-01"})
	must(t, err)
	for _, l := range []struct{ acct, student, rel, method string }{{mom.ID, "s-1", "parent", "snils"}, {mom.ID, "s-2", "parent", "snils"}, {aunt.ID, "s-2", "parent", "invite"}, {self.ID, "s-2", "self", "snils"}} {
		if _, err := s.AddLink(ctx, l.acct, l.student, l.rel, l.method); err != nil {
			t.Fatal(err)
		}
	}
	must(t, s.CreateChild(ctx, &storage.Account{FamilyName: "Иванов"}, &storage.ChildCredential{StudentID: "s-1", Login: "petya-r", PasswordHash: "h", CreatedBy: mom.ID}))
	kid, _ := s.ChildByStudent(ctx, "s-1")
	must(t, s.CreateRefreshTokenSession(ctx, "rt-kid", "", newRequest(c, kid.AccountID)))

	// s-1 loses its only guardian on the roster.
	st, _ := s.Student(ctx, "s-1")
	if _, err := s.UpsertStudent(ctx, st, nil); err != nil {
		t.Fatal(err)
	}
	if ls, _ := s.Links(ctx, mom.ID, false); len(ls) != 1 || ls[0].StudentID != "s-2" {
		t.Errorf("mom's links after the roster dropped her from s-1: %+v", ls)
	}
	if _, err := s.GetRefreshTokenSession(ctx, "rt-kid", newRequest(c, "x").Session); err == nil {
		t.Error("the sub-account of a child whose only parent was dropped still refreshes")
	}
	// s-2's own SNILS changes: the self link by the old SNILS ends, the aunt's code link stays.
	st2, _ := s.Student(ctx, "s-2")
	g2, _ := s.Guardians(ctx, "s-2")
	st2.SNILSDigest = "own-2-new"
	if _, err := s.UpsertStudent(ctx, st2, g2); err != nil {
		t.Fatal(err)
	}
	if ls, _ := s.Links(ctx, self.ID, false); len(ls) != 0 {
		t.Errorf("a self link by a SNILS the card no longer has: %+v", ls)
	}
	if ls, _ := s.Links(ctx, aunt.ID, false); len(ls) != 1 {
		t.Errorf("a link made by code was touched: %+v", ls)
	}
	if ls, _ := s.Links(ctx, mom.ID, false); len(ls) != 1 {
		t.Errorf("mom, still on s-2's card, lost her link: %+v", ls)
	}
}

// testDeactivateAndRegroupInOneUpsert: a card made inactive with new guardians in the same write
// gets both.
func testDeactivateAndRegroupInOneUpsert(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	seedRoster(t, s)
	st, _ := s.Student(ctx, "s-1")
	st.Active = false
	if changed, err := s.UpsertStudent(ctx, st, []storage.Guardian{{SNILSDigest: "dad", Name: "Иванов И."}}); err != nil || !changed {
		t.Fatalf("upsert: %v %v", changed, err)
	}
	if got, _ := s.Student(ctx, "s-1"); got.Active {
		t.Error("the card is still active")
	}
	if g, _ := s.Guardians(ctx, "s-1"); len(g) != 1 || g[0].SNILSDigest != "dad" {
		t.Errorf("guardians %+v, want only dad", g)
	}
}
