package linking_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/esia-broker/esia-broker/esia/esiatest"
	"strings"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/passwords"
	"github.com/esia-broker/esia-broker/storage"
)

// fastArgon keeps unit tests quick; the benchmark measures the defaults.
func fastArgon(f *fixture) {
	o := linking.DefaultChildOptions()
	o.Argon2 = linking.Argon2Params{Time: 1, MemoryKiB: 8 * 1024, Threads: 1}
	f.link.SetChildOptions(o)
}

func TestChildSubAccounts(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		fastArgon(f)
		today := esiatest.TestDay()
		f.link.SetClock(func() time.Time { return today })
		f.importRoster(t, roster, linking.ImportOptions{})
		parent := mustAccount(t, f.store, "1000300001")
		if _, err := f.link.Resolve(ctx, parent, "112-233-445 95"); err != nil {
			t.Fatal(err)
		}
		stranger := mustAccount(t, f.store, "stranger")
		tests := []struct {
			name, parent, student, login, password string
			want                                   error
		}{
			{"not a guardian", stranger, "s-1", "alex", "correct-horse", linking.ErrNotGuardian},
			{"bad login", parent, "s-1", "Алёша", "correct-horse", linking.ErrLoginFormat},
			{"short password", parent, "s-1", "alex.ivanov", "short", linking.ErrPasswordShort},
			{"password is the login", parent, "s-1", "alex.ivanov", "Alex.Ivanov", linking.ErrPasswordIsLogin},
			{"common password", parent, "s-1", "alex.ivanov", "qwerty123", linking.ErrPasswordCommon},
			{"created", parent, "s-1", " Alex.Ivanov ", "correct-horse", nil},
			{"second login for the child", parent, "s-1", "alex2", "correct-horse", linking.ErrChildExists},
			{"login taken", parent, "s-2", "alex.ivanov", "correct-horse", linking.ErrLoginTaken},
		}
		for _, tc := range tests {
			_, err := f.link.CreateChildLogin(ctx, tc.parent, tc.student, tc.login, tc.password)
			if !errors.Is(err, tc.want) {
				t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
			}
		}
		c, err := f.store.ChildByLogin(ctx, "alex.ivanov")
		if err != nil || !strings.HasPrefix(c.PasswordHash, "$argon2id$v=19$m=8192,t=1,p=1$") || strings.Contains(c.PasswordHash, "correct-horse") {
			t.Fatalf("stored credential %+v %v", c, err)
		}
		if id, err := f.link.ChildLogin(ctx, "ALEX.IVANOV", "correct-horse", "10.0.0.1", false); err != nil || id != c.AccountID {
			t.Errorf("child login: %q %v", id, err)
		}
		if _, err := f.link.ChildLogin(ctx, "alex.ivanov", "wrong-password", "10.0.0.1", false); !errors.Is(err, linking.ErrBadCredentials) {
			t.Errorf("wrong password: %v", err)
		}
		if _, err := f.link.ChildLogin(ctx, "nobody", "correct-horse", "10.0.0.1", false); !errors.Is(err, linking.ErrBadCredentials) {
			t.Errorf("unknown login gives another error: %v", err)
		}
		if err := f.link.ResetChildPassword(ctx, parent, "s-1", "new-secret-42"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.link.ChildLogin(ctx, "alex.ivanov", "correct-horse", "10.0.0.2", false); !errors.Is(err, linking.ErrBadCredentials) {
			t.Errorf("old password after reset: %v", err)
		}
		if _, err := f.link.ChildLogin(ctx, "alex.ivanov", "new-secret-42", "10.0.0.2", false); err != nil {
			t.Errorf("new password: %v", err)
		}
		if err := f.link.ResetChildPassword(ctx, stranger, "s-1", "new-secret-43"); !errors.Is(err, linking.ErrNotGuardian) {
			t.Errorf("reset by a stranger: %v", err)
		}
		// The 14th birthday (12.09.2027 on the reference calendar) cuts the sub-account off;
		// grace days extend it.
		birthday14 := shiftedDate(t, "2027-09-12")
		f.link.SetClock(func() time.Time { return birthday14.AddDate(0, 0, -1).Add(12 * time.Hour) })
		if _, err := f.link.ChildLogin(ctx, "alex.ivanov", "new-secret-42", "10.0.0.3", false); err != nil {
			t.Errorf("the day before the 14th birthday: %v", err)
		}
		f.link.SetClock(func() time.Time { return birthday14.Add(8 * time.Hour) })
		if _, err := f.link.ChildLogin(ctx, "alex.ivanov", "new-secret-42", "10.0.0.3", false); !errors.Is(err, linking.ErrChildTooOld) {
			t.Errorf("on the 14th birthday: %v", err)
		}
		o := linking.DefaultChildOptions()
		o.Argon2, o.GraceDays = linking.Argon2Params{Time: 1, MemoryKiB: 8 * 1024, Threads: 1}, 30
		f.link.SetChildOptions(o)
		if _, err := f.link.ChildLogin(ctx, "alex.ivanov", "new-secret-42", "10.0.0.3", false); err != nil {
			t.Errorf("within 30 grace days: %v", err)
		}
		fastArgon(f)
		f.link.SetClock(func() time.Time { return today })
		// No guardian link left: the sub-account is off.
		links, _ := f.store.Links(ctx, parent, false)
		for _, l := range links {
			if _, err := f.store.RevokeLink(ctx, l.ID); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := f.link.ChildLogin(ctx, "alex.ivanov", "new-secret-42", "10.0.0.4", false); !errors.Is(err, linking.ErrNoGuardianLeft) {
			t.Errorf("after the parent's link is revoked: %v", err)
		}
	})
}

func TestChildLockoutAndExpiry(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		fastArgon(f)
		f.link.SetClock(esiatest.TestDay)
		f.importRoster(t, roster, linking.ImportOptions{})
		parent := mustAccount(t, f.store, "1000300001")
		if _, err := f.link.Resolve(ctx, parent, "112-233-445 95"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.link.CreateChildLogin(ctx, parent, "s-1", "alex", "correct-horse"); err != nil {
			t.Fatal(err)
		}
		var err error
		// Five wrong passwords from one source lock the login for that source.
		for range 5 {
			_, err = f.link.ChildLogin(ctx, "alex", "wrong", "10.9.0.1", false)
		}
		var le *linking.ChildLockedError
		if !errors.As(err, &le) {
			t.Fatalf("fifth wrong password: %v", err)
		}
		if _, err := f.link.ChildLogin(ctx, "alex", "correct-horse", "10.9.0.1", false); !errors.As(err, &le) {
			t.Errorf("the right password from the locked source during the lock-out: %v", err)
		}
		// The stranger's lock does not keep the child out: from the child's own source the
		// right password works.
		if _, err := f.link.ChildLogin(ctx, "alex", "correct-horse", "10.9.0.9", false); err != nil {
			t.Errorf("the child from another source during a stranger's lock-out: %v", err)
		}
		// Wrong passwords from many sources reach the login's global limit: a short slow-down.
		for i := range 20 {
			_, err = f.link.ChildLogin(ctx, "alex", "wrong", fmt.Sprintf("10.8.%d.1", i), false)
		}
		if !errors.As(err, &le) {
			t.Fatalf("twentieth wrong password from as many sources: %v", err)
		}
		if d := time.Until(le.Until); d > 2*time.Minute {
			t.Errorf("the global slow-down lasts %v; it must be short (the per-login default is 1m)", d)
		}
		if _, err := f.link.ChildLogin(ctx, "alex", "correct-horse", "10.9.0.9", false); !errors.As(err, &le) {
			t.Errorf("the right password during the global slow-down: %v", err)
		}
		f.store.SetClock(func() time.Time { return time.Now().Add(16 * time.Minute) })
		if _, err := f.link.ChildLogin(ctx, "alex", "correct-horse", "10.9.0.1", false); err != nil {
			t.Errorf("after the lock-out expired: %v", err)
		}
		f.store.SetClock(time.Now)
	})
}

func TestPasswordHashFormat(t *testing.T) {
	p := linking.Argon2Params{Time: 1, MemoryKiB: 8192, Threads: 1}
	h1, _ := passwords.HashPassword("пароль-ребёнка", p)
	h2, _ := passwords.HashPassword("пароль-ребёнка", p)
	if h1 == h2 {
		t.Error("no salt")
	}
	for _, tc := range []struct {
		hash, pw string
		ok       bool
	}{{h1, "пароль-ребёнка", true}, {h1, "пароль-ребенка", false}, {h2, "пароль-ребёнка", true}} {
		if ok, err := passwords.VerifyPassword(tc.hash, tc.pw); ok != tc.ok || err != nil {
			t.Errorf("verify %q: %v %v", tc.pw, ok, err)
		}
	}
	for _, bad := range []string{"", "$2a$10$bcrypt", "$argon2id$v=19$m=99999999,t=1,p=1$AAAA$AAAA", "$argon2i$v=19$m=8192,t=1,p=1$AAAA$AAAA"} {
		if ok, err := passwords.VerifyPassword(bad, "x"); ok || err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// BenchmarkChildLogin is the cost of one child password check with the default argon2id
// parameters (what a child login costs the broker's CPU).
func BenchmarkChildLogin(b *testing.B) {
	h, err := passwords.HashPassword("correct-horse-battery", linking.DefaultArgon2())
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if ok, _ := passwords.VerifyPassword(h, "correct-horse-battery"); !ok {
			b.Fatal("verify")
		}
	}
}

var _ = storage.ErrNotFound
