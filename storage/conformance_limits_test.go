package storage_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/storage"
)

// testAttemptLimits: an attempt is reserved before the secret is checked, so that concurrent
// attempts never pass the limit; a lock only ever extends; a success refunds only its key.
func testAttemptLimits(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	clk := withClock(s)
	lim := storage.AttemptLimit{Max: 5, Window: 15 * time.Minute, Lockout: 15 * time.Minute}

	t.Run("concurrent reservations never pass the limit", func(t *testing.T) {
		const n = 60
		var allowed atomic.Int32
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				until, err := s.ReserveAttempt(ctx, storage.LimitKey{Key: "race", Limit: lim})
				if err != nil {
					errs <- err
					return
				}
				if until.IsZero() {
					allowed.Add(1)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if got := allowed.Load(); got != int32(lim.Max) {
			t.Errorf("%d of %d concurrent attempts were allowed, want exactly %d", got, n, lim.Max)
		}
		if until, _ := s.LockedUntil(ctx, "race"); until.IsZero() {
			t.Error("the attempt past the limit did not lock the key")
		}
	})

	t.Run("the failure that spends the last attempt locks; later ones never shorten the lock", func(t *testing.T) {
		k := storage.LimitKey{Key: "spent", Limit: lim}
		var until time.Time
		for i := range lim.Max {
			u, err := s.ReserveAttempt(ctx, k)
			if err != nil || !u.IsZero() {
				t.Fatalf("attempt %d refused: %v %v", i+1, u, err)
			}
			if until, err = s.Failed(ctx, k); err != nil {
				t.Fatal(err)
			}
			if i < lim.Max-1 && !until.IsZero() {
				t.Fatalf("failure %d locked already", i+1)
			}
		}
		if until.IsZero() {
			t.Fatal("the fifth failure did not lock")
		}
		clk.add(time.Minute)
		// A late failure in flight, and a success, leave the lock as it is.
		if _, err := s.Failed(ctx, storage.LimitKey{Key: "spent", Limit: storage.AttemptLimit{Max: 1, Window: lim.Window, Lockout: time.Second}}); err != nil {
			t.Fatal(err)
		}
		if err := s.Succeeded(ctx, "spent"); err != nil {
			t.Fatal(err)
		}
		got, _ := s.LockedUntil(ctx, "spent")
		if got.Sub(until).Abs() > time.Millisecond {
			t.Errorf("lock changed from %v to %v", until, got)
		}
		if u, _ := s.ReserveAttempt(ctx, k); u.IsZero() {
			t.Error("an attempt went ahead during the lock-out")
		}
		clk.add(lim.Lockout)
		if u, err := s.ReserveAttempt(ctx, k); err != nil || !u.IsZero() {
			t.Errorf("after the lock-out: %v %v", u, err)
		}
	})

	t.Run("a success refunds only its own key", func(t *testing.T) {
		login := storage.LimitKey{Key: "login:a", Limit: lim}
		ip := storage.LimitKey{Key: "ip:a", Limit: lim}
		for range lim.Max - 1 {
			if u, err := s.ReserveAttempt(ctx, login, ip); err != nil || !u.IsZero() {
				t.Fatal(u, err)
			}
		}
		if err := s.Succeeded(ctx, login.Key); err != nil {
			t.Fatal(err)
		}
		// The login starts again; the IP has one attempt left.
		if u, _ := s.ReserveAttempt(ctx, ip); !u.IsZero() {
			t.Fatal("the IP's last attempt was refused")
		}
		if u, _ := s.ReserveAttempt(ctx, ip); u.IsZero() {
			t.Error("the IP's count was refunded by the login's success")
		}
		for i := range lim.Max {
			if u, _ := s.ReserveAttempt(ctx, login); !u.IsZero() {
				t.Fatalf("login attempt %d after the success refused", i+1)
			}
		}
	})

	t.Run("a refused attempt counts nowhere", func(t *testing.T) {
		locked := storage.LimitKey{Key: "locked:b", Limit: storage.AttemptLimit{Max: 1, Window: lim.Window, Lockout: lim.Lockout}}
		other := storage.LimitKey{Key: "other:b", Limit: lim}
		if u, _ := s.ReserveAttempt(ctx, locked); !u.IsZero() {
			t.Fatal("first attempt refused")
		}
		for range 10 {
			if u, _ := s.ReserveAttempt(ctx, locked, other); u.IsZero() {
				t.Fatal("an attempt with a spent key went ahead")
			}
		}
		for i := range lim.Max {
			if u, _ := s.ReserveAttempt(ctx, other); !u.IsZero() {
				t.Fatalf("attempt %d of the other key refused: refused attempts were counted", i+1)
			}
		}
	})

	t.Run("a refused attempt locks only the keys it would pass", func(t *testing.T) {
		spent := storage.LimitKey{Key: "spent:e", Limit: storage.AttemptLimit{Max: 1, Window: lim.Window, Lockout: lim.Lockout}}
		near := storage.LimitKey{Key: "near:e", Limit: lim}
		if u, _ := s.ReserveAttempt(ctx, spent); !u.IsZero() {
			t.Fatal("first attempt refused")
		}
		for range lim.Max - 1 {
			if u, _ := s.ReserveAttempt(ctx, near); !u.IsZero() {
				t.Fatal("refused inside the limit")
			}
		}
		if u, _ := s.ReserveAttempt(ctx, spent, near); u.IsZero() {
			t.Fatal("an attempt with a spent key went ahead")
		}
		if u, _ := s.LockedUntil(ctx, near.Key); !u.IsZero() {
			t.Error("a key with one attempt left was locked with the spent one")
		}
		if u, _ := s.ReserveAttempt(ctx, near); !u.IsZero() {
			t.Error("the last attempt of the other key was refused")
		}
	})

	t.Run("attempts older than the window no longer count", func(t *testing.T) {
		k := storage.LimitKey{Key: "window:d", Limit: lim}
		for range 3 {
			if u, _ := s.ReserveAttempt(ctx, k); !u.IsZero() {
				t.Fatal("refused inside the limit")
			}
		}
		clk.add(lim.Window)
		for i := range lim.Max {
			if u, _ := s.ReserveAttempt(ctx, k); !u.IsZero() {
				t.Fatalf("attempt %d of a new window refused: the old window's 3 still counted", i+1)
			}
		}
	})

	t.Run("the window resets the count", func(t *testing.T) {
		k := storage.LimitKey{Key: "window:c", Limit: lim}
		for range lim.Max {
			if u, _ := s.ReserveAttempt(ctx, k); !u.IsZero() {
				t.Fatal("refused inside the limit")
			}
		}
		clk.add(lim.Window - time.Second)
		if u, _ := s.ReserveAttempt(ctx, k); u.IsZero() {
			t.Fatal("the sixth attempt inside the window went ahead")
		}
		clk.add(lim.Lockout + lim.Window)
		for i := range lim.Max {
			if u, _ := s.ReserveAttempt(ctx, k); !u.IsZero() {
				t.Fatalf("attempt %d of a new window refused", i+1)
			}
		}
	})
}

// testAbortRequestTx: a failed token request changes nothing — a PKCE row fosite deleted comes
// back — except the deliberate revocation of a replayed grant, which stays.
func testAbortRequestTx(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	c := mustClient(t, s, "rp")
	pkce := newRequest(c, "u")
	if err := s.CreatePKCERequestSession(ctx, "pkce-1", pkce); err != nil {
		t.Fatal(err)
	}
	replayed := newRequest(c, "u")
	if err := s.CreateRefreshTokenSession(ctx, "rt-replayed", "", replayed); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccessTokenSession(ctx, "at-replayed", replayed); err != nil {
		t.Fatal(err)
	}
	tctx, err := s.BeginRequestTx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePKCERequestSession(tctx, "pkce-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeRefreshToken(tctx, replayed.GetID()); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeAccessToken(tctx, replayed.GetID()); err != nil {
		t.Fatal(err)
	}
	if err := s.AbortRequestTx(tctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetPKCERequestSession(ctx, "pkce-1", newRequest(c, "u").Session); err != nil {
		t.Errorf("the PKCE row deleted by a failed request is gone: %v", err)
	}
	if _, err := s.GetRefreshTokenSession(ctx, "rt-replayed", newRequest(c, "u").Session); err == nil {
		t.Error("the revocation of a replayed grant's refresh tokens was rolled back with the failed request")
	}
	if _, err := s.GetAccessTokenSession(ctx, "at-replayed", newRequest(c, "u").Session); err == nil {
		t.Error("the revocation of a replayed grant's access tokens was rolled back with the failed request")
	}
	// Without a deliberate revocation nothing at all is written.
	tctx, err = s.BeginRequestTx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccessTokenSession(tctx, "at-failed", newRequest(c, "u")); err != nil {
		t.Fatal(err)
	}
	if err := s.AbortRequestTx(tctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccessTokenSession(ctx, "at-failed", newRequest(c, "u").Session); err == nil {
		t.Error("a token written by a failed request remained")
	}
}

// testEndOrphanedChildAccess: when a child's last parent link ends (revoked, the parent
// disabled or forgotten) or the card is made inactive, the sub-account's sessions and tokens
// end in the same transaction.
func testEndOrphanedChildAccess(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	c := mustClient(t, s, "rp")
	if err := s.UpsertSchool(ctx, "sch", "Школа"); err != nil {
		t.Fatal(err)
	}
	sub := func(v string) *string { return &v }
	child := func(t *testing.T, studentID string) (parent, childAccount string, linkID string) {
		t.Helper()
		if _, err := s.UpsertStudent(ctx, &storage.Student{ID: studentID, SchoolID: "sch", Class: "2А", FamilyName: "Иванов", GivenName: "Петя", Birthdate: "2018-01-01", Active: true}, nil); err != nil {
			t.Fatal(err)
		}
		p, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: sub("p-" + studentID), Birthdate: "1980-01-01"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddLink(ctx, p.ID, studentID, "parent", "invite"); err != nil {
			t.Fatal(err)
		}
		a := &storage.Account{FamilyName: "Иванов", GivenName: "Петя", Birthdate: "2018-01-01"}
		if err := s.CreateChild(ctx, a, &storage.ChildCredential{StudentID: studentID, Login: "petya-" + studentID, PasswordHash: "x", CreatedBy: p.ID}); err != nil {
			t.Fatal(err)
		}
		cc, err := s.ChildByStudent(ctx, studentID)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.CreateBrowserSession(ctx, &storage.BrowserSession{IDHash: "bs-" + studentID, AccountID: cc.AccountID, AuthTime: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}, []string{"pwd"}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateRefreshTokenSession(ctx, "rt-"+studentID, "", newRequest(c, cc.AccountID)); err != nil {
			t.Fatal(err)
		}
		ls, _ := s.Links(ctx, p.ID, false)
		return p.ID, cc.AccountID, ls[0].ID
	}
	alive := func(t *testing.T, studentID string) bool {
		t.Helper()
		_, serr := s.BrowserSession(ctx, "bs-"+studentID)
		_, terr := s.GetRefreshTokenSession(ctx, "rt-"+studentID, newRequest(c, "x").Session)
		if (serr == nil) != (terr == nil) {
			t.Errorf("session %v but refresh token %v", serr, terr)
		}
		return serr == nil
	}
	for _, tc := range []struct {
		name string
		end  func(t *testing.T, parent, link, student string) error
	}{
		{"link revoked", func(_ *testing.T, _, link, _ string) error { _, err := s.RevokeLink(ctx, link); return err }},
		{"parent disabled", func(_ *testing.T, parent, _, _ string) error { return s.SetAccountStatus(ctx, parent, "disabled") }},
		{"parent forgotten", func(_ *testing.T, parent, _, _ string) error { return s.ForgetAccount(ctx, parent) }},
		{"card inactive", func(_ *testing.T, _, _, student string) error {
			_, err := s.SetStudentActive(ctx, student, false)
			return err
		}},
		{"card inactive by the roster", func(_ *testing.T, _, _, student string) error {
			_, err := s.UpsertStudent(ctx, &storage.Student{ID: student, SchoolID: "sch", Class: "2А", FamilyName: "Иванов", GivenName: "Петя", Birthdate: "2018-01-01", Active: false}, nil)
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			student := fmt.Sprintf("st-%d", time.Now().UnixNano())
			parent, _, link := child(t, student)
			if !alive(t, student) {
				t.Fatal("the child's session is not there to begin with")
			}
			if err := tc.end(t, parent, link, student); err != nil {
				t.Fatal(err)
			}
			if alive(t, student) {
				t.Error("the sub-account's session and refresh token outlived the end of its right")
			}
		})
	}
	t.Run("a second parent keeps the child's access", func(t *testing.T) {
		student := fmt.Sprintf("st-%d", time.Now().UnixNano())
		_, _, link := child(t, student)
		p2, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: sub("p2-" + student), Birthdate: "1981-01-01"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.AddLink(ctx, p2.ID, student, "parent", "invite"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RevokeLink(ctx, link); err != nil {
			t.Fatal(err)
		}
		if !alive(t, student) {
			t.Error("the child lost access although a parent remains")
		}
	})
}
