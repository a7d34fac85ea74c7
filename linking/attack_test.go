package linking_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/esia-broker/esia-broker/esia/esiatest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/invites"
	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/passwords"
)

// TestConcurrentGuessesAreCountedOneByOne fires 60 wrong child passwords at once from one
// source and counts the passwords actually checked: never more than the limit, and the right
// password is then refused from that source (before: 20–41 of 32–60 were checked and the right
// one logged in).
func TestConcurrentGuessesAreCountedOneByOne(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		o := linking.DefaultChildOptions()
		o.Argon2 = linking.Argon2Params{Time: 1, MemoryKiB: 8 * 1024, Threads: 1}
		o.HashConcurrency, o.HashQueue = 64, 64 // every guess reaches the limit, none is turned away
		f.link.SetChildOptions(o)
		f.importRoster(t, roster, linking.ImportOptions{})
		parent := mustAccount(t, f.store, "1000300001")
		if _, err := f.link.Resolve(ctx, parent, "112-233-445 95"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.link.CreateChildLogin(ctx, parent, "s-1", "alex", "correct-horse"); err != nil {
			t.Fatal(err)
		}
		var checked atomic.Int32
		f.link.SetVerifier(func(h, pw string) (bool, error) {
			checked.Add(1)
			time.Sleep(20 * time.Millisecond) // as long as a real check, so that the guesses overlap
			return passwords.VerifyPassword(h, pw)
		})
		const n = 60
		var wg sync.WaitGroup
		var locked, busy atomic.Int32
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := f.link.ChildLogin(ctx, "alex", "wrong-guess", "10.20.0.1", false)
				var le *linking.ChildLockedError
				switch {
				case errors.As(err, &le):
					locked.Add(1)
				case errors.Is(err, linking.ErrBusy):
					busy.Add(1)
					t.Error("a guess was turned away by the hash gate; the test wants every one at the limit")
				case !errors.Is(err, linking.ErrBadCredentials):
					t.Errorf("unexpected: %v", err)
				}
			}()
		}
		wg.Wait()
		if got := checked.Load(); got > 5 {
			t.Errorf("%d of %d concurrent wrong passwords were checked against a limit of 5", got, n)
		}
		t.Logf("%d checked, %d locked out, %d told to come back", checked.Load(), locked.Load(), busy.Load())
		var le *linking.ChildLockedError
		if _, err := f.link.ChildLogin(ctx, "alex", "correct-horse", "10.20.0.1", false); !errors.As(err, &le) {
			t.Errorf("the right password after the flood from the same source: %v", err)
		}
	})
}

// TestConcurrentWrongCodesAreCountedOneByOne: 50 wrong invite codes at once from one account;
// no more than the limit are tried.
func TestConcurrentWrongCodesAreCountedOneByOne(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.importRoster(t, roster, linking.ImportOptions{})
		acct := mustAccount(t, f.store, "guesser")
		const n = 50
		var wg sync.WaitGroup
		var invalid, locked atomic.Int32
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := f.link.RedeemCode(ctx, acct, fmt.Sprintf("7KQ4-M2XD-%04d", i), invites.RoleParent, "10.30.0.1")
				switch {
				case errors.Is(err, invites.ErrLocked):
					locked.Add(1)
				case errors.Is(err, invites.ErrInvalidCode):
					invalid.Add(1)
				default:
					t.Errorf("unexpected: %v", err)
				}
			}()
		}
		wg.Wait()
		events, err := f.store.AuditEvents(ctx, 1000)
		if err != nil {
			t.Fatal(err)
		}
		tried := 0
		for _, e := range events {
			if e.Action == "invite.redeem_failed" {
				tried++
			}
		}
		// invites.Limits in newFixture: 5 per account.
		if tried > 5 || invalid.Load() > 5 {
			t.Errorf("%d codes tried (%d answered invalid) of %d concurrent, limit 5", tried, invalid.Load(), n)
		}
		if locked.Load() < n-5 {
			t.Errorf("only %d of %d refused as locked", locked.Load(), n)
		}
	})
}

// TestWhoMayBeAParent: a parent slip links only an adult's ESIA account; a child's sub-account
// and a 15-year-old are refused before the code is even tried, and the code stays usable; a
// student code links only the student by birth date.
func TestWhoMayBeAParent(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		fastArgon(f)
		f.importRoster(t, roster, linking.ImportOptions{})
		slips, err := f.inv.Issue(ctx, invites.IssueRequest{Selection: invites.Selection{SchoolID: "sch-2"}, Role: invites.RoleParent, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		parent := mustAccount(t, f.store, "1000300001")
		if _, err := f.link.Resolve(ctx, parent, "112-233-445 95"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.link.CreateChildLogin(ctx, parent, "s-1", "alex", "correct-horse"); err != nil {
			t.Fatal(err)
		}
		childAcct, err := f.link.ChildLogin(ctx, "alex", "correct-horse", "10.40.0.1", false)
		if err != nil {
			t.Fatal(err)
		}
		teen := mustAccountBorn(t, f.store, "teen", esiatest.TestDay().AddDate(-15, 0, 0).Format("2006-01-02"))
		unknown := mustAccountBorn(t, f.store, "no-birthdate", "")
		for _, tc := range []struct {
			name    string
			account string
			want    error
		}{
			{"a child's sub-account", childAcct, linking.ErrChildAccount},
			{"a 15-year-old's ESIA account", teen, linking.ErrNotAdult},
			{"an account without a birth date", unknown, linking.ErrNoBirthdate},
		} {
			if _, err := f.link.RedeemCode(ctx, tc.account, slips[0].Code, invites.RoleParent, "10.40.0.2"); !errors.Is(err, tc.want) {
				t.Errorf("%s redeemed a parent slip: %v, want %v", tc.name, err, tc.want)
			}
			if _, err := f.link.CreateChildLogin(ctx, tc.account, "s-2", "dasha", "correct-horse"); err == nil {
				t.Errorf("%s created a child's login", tc.name)
			}
			if err := f.link.ResetChildPassword(ctx, tc.account, "s-1", "another-horse"); err == nil {
				t.Errorf("%s reset a child's password", tc.name)
			}
		}
		adult := mustAccount(t, f.store, "adult")
		if _, err := f.link.RedeemCode(ctx, adult, slips[0].Code, invites.RoleParent, "10.40.0.3"); err != nil {
			t.Errorf("the slip no longer works for an adult after the refusals: %v", err)
		}
		// Student codes: s-3 is 15 (born 2011-01-10).
		stu, err := f.inv.Issue(ctx, invites.IssueRequest{Selection: invites.Selection{SchoolID: "sch-1", IDs: []string{"s-3"}}, Role: invites.RoleStudent, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.link.RedeemCode(ctx, mustAccount(t, f.store, "adult-2"), stu[0].Code, invites.RoleStudent, "10.40.0.4"); !errors.Is(err, linking.ErrNotThisStudent) {
			t.Errorf("an adult redeemed a student's code: %v", err)
		}
		if _, err := f.link.RedeemCode(ctx, mustAccountBorn(t, f.store, "ivan", day("2011-01-10")), stu[0].Code, invites.RoleStudent, "10.40.0.5"); err != nil {
			t.Errorf("the student's own account: %v", err)
		}
		// A diary's self intent follows the same rule.
		if _, err := f.link.ApplyIntent(ctx, mustAccount(t, f.store, "adult-3"), "diary", "self", []string{"s-4"}); !errors.Is(err, linking.ErrNotThisStudent) {
			t.Errorf("an adult became self of a 13-year-old through a diary intent: %v", err)
		}
		if _, err := f.link.ApplyIntent(ctx, teen, "diary", "parent", []string{"s-4"}); !errors.Is(err, linking.ErrNotAdult) {
			t.Errorf("a 15-year-old became a parent through a diary intent: %v", err)
		}
	})
}

// TestHashGateBoundsMemory: with two slots and a queue of two, 24 concurrent child logins run
// at most two password hashes at once; every one is answered, the surplus with ErrBusy.
func TestHashGateBoundsMemory(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		o := linking.DefaultChildOptions()
		o.Argon2 = linking.Argon2Params{Time: 1, MemoryKiB: 8 * 1024, Threads: 1}
		o.HashConcurrency, o.HashQueue, o.HashWait = 2, 2, 200*time.Millisecond
		o.PerIP.Max, o.PerLogin.Max, o.PerLoginAll.Max = 1000, 1000, 1000
		f.link.SetChildOptions(o)
		var now, peak atomic.Int32
		f.link.SetVerifier(func(h, pw string) (bool, error) {
			n := now.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(50 * time.Millisecond)
			now.Add(-1)
			return passwords.VerifyPassword(h, pw)
		})
		const n = 24
		var wg sync.WaitGroup
		var busy, answered atomic.Int32
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := f.link.ChildLogin(ctx, fmt.Sprintf("kid%d", i), "whatever-pass", fmt.Sprintf("10.50.0.%d", i), false)
				answered.Add(1)
				if errors.Is(err, linking.ErrBusy) {
					busy.Add(1)
				} else if !errors.Is(err, linking.ErrBadCredentials) {
					t.Errorf("unexpected: %v", err)
				}
			}()
		}
		wg.Wait()
		if peak.Load() > 2 {
			t.Errorf("%d password hashes ran at once, the gate admits 2", peak.Load())
		}
		if answered.Load() != n || busy.Load() == 0 {
			t.Errorf("%d answered, %d busy", answered.Load(), busy.Load())
		}
	})
}

// TestGivenBackCodeDoesNotClearTheCount: a valid code that links nothing (the child is already
// linked) is given back and must not reset the account's count between guesses (the attack
// found 12 wrong codes checked on one account in a window of 5).
func TestGivenBackCodeDoesNotClearTheCount(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.importRoster(t, roster, linking.ImportOptions{})
		acct := mustAccount(t, f.store, "cycler")
		slips, err := f.inv.Issue(ctx, invites.IssueRequest{Selection: invites.Selection{SchoolID: "sch-1", IDs: []string{"s-4"}}, Role: invites.RoleParent, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.link.RedeemCode(ctx, acct, slips[0].Code, invites.RoleParent, "10.80.0.1"); err != nil {
			t.Fatal(err)
		}
		other, err := f.inv.Issue(ctx, invites.IssueRequest{Selection: invites.Selection{SchoolID: "sch-1", IDs: []string{"s-4"}}, Role: invites.RoleParent, TTL: time.Hour, Force: true})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 4 {
			if _, err := f.link.RedeemCode(ctx, acct, fmt.Sprintf("AAAA-BBBB-%04d", i), invites.RoleParent, fmt.Sprintf("10.81.0.%d", i)); !errors.Is(err, invites.ErrInvalidCode) {
				t.Fatalf("wrong code %d: %v", i+1, err)
			}
		}
		if _, err := f.link.RedeemCode(ctx, acct, other[0].Code, invites.RoleParent, "10.82.0.1"); !errors.Is(err, linking.ErrAlreadyLinked) {
			t.Fatalf("the valid code for a linked child: %v", err)
		}
		if _, err := f.link.RedeemCode(ctx, acct, "AAAA-BBBB-9999", invites.RoleParent, "10.83.0.1"); !errors.Is(err, invites.ErrLocked) {
			t.Errorf("the sixth code in the window: %v, want locked", err)
		}
	})
}
