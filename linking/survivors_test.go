package linking_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/passwords"
	"github.com/esia-broker/esia-broker/storage"
)

// TestChildAccountDetails: the login comes back normalised, a reset is audited, and an unknown
// login spends a real argon2id check (the timing tells nothing).
func TestChildAccountDetails(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		fastArgon(f)
		f.importRoster(t, roster, linking.ImportOptions{})
		parent := mustAccount(t, f.store, "1000300001")
		if _, err := f.link.Resolve(ctx, parent, "112-233-445 95"); err != nil {
			t.Fatal(err)
		}
		login, err := f.link.CreateChildLogin(ctx, parent, "s-1", "  Alex.Ivanov ", "correct-horse")
		if err != nil || login != "alex.ivanov" {
			t.Fatalf("create: %q %v", login, err)
		}
		if err := f.link.ResetChildPassword(ctx, parent, "s-1", "another-horse"); err != nil {
			t.Fatal(err)
		}
		ev, err := f.store.AuditEvents(ctx, 10)
		if err != nil || !slices.ContainsFunc(ev, func(e storage.AuditEvent) bool {
			return e.Action == "child.reset_password" && e.Actor == "account:"+parent
		}) {
			t.Errorf("the reset is not in the audit log: %+v %v", ev, err)
		}
		var mu sync.Mutex
		var hashes []string
		f.link.SetVerifier(func(h, pw string) (bool, error) {
			mu.Lock()
			hashes = append(hashes, h)
			mu.Unlock()
			return passwords.VerifyPassword(h, pw)
		})
		if _, err := f.link.ChildLogin(ctx, "nobody-has-this", "whatever-pass", "10.70.0.1", false); err != linking.ErrBadCredentials {
			t.Errorf("unknown login: %v", err)
		}
		if len(hashes) != 1 || !strings.HasPrefix(hashes[0], "$argon2id$") {
			t.Errorf("an unknown login checked against %q, want a real argon2id hash", hashes)
		}
	})
}

// TestImportProgress: a long import reports progress every 500 cards and at the end.
func TestImportProgress(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		var b strings.Builder
		b.WriteString("student_id,school_id,class,family_name,given_name,middle_name,birthdate\n")
		for i := range 1001 {
			fmt.Fprintf(&b, "p-%d,sch-1,1А,Иванов,Иван,,2019-01-01\n", i)
		}
		var calls [][2]int
		rep, err := f.link.Import(context.Background(), strings.NewReader(b.String()), linking.ImportOptions{Progress: func(done, total int) { calls = append(calls, [2]int{done, total}) }})
		if err != nil || rep.Created != 1001 {
			t.Fatalf("import: %+v %v", rep, err)
		}
		if want := [][2]int{{500, 1001}, {1000, 1001}, {1001, 1001}}; !slices.Equal(calls, want) {
			t.Errorf("progress %v, want %v", calls, want)
		}
	})
}

// TestDeactivateTwiceAuditsOnce and the default limits.
func TestDeactivateTwiceAuditsOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.importRoster(t, roster, linking.ImportOptions{})
		for i, want := range []bool{true, false} {
			if changed, err := f.link.Deactivate(ctx, "s-4", "api:diary"); err != nil || changed != want {
				t.Errorf("deactivation %d: changed=%v %v", i+1, changed, err)
			}
		}
		ev, _ := f.store.AuditEvents(ctx, 50)
		n := 0
		for _, e := range ev {
			if e.Action == "roster.deactivate" {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%d deactivation events for one change", n)
		}
	})
	o := linking.DefaultChildOptions()
	if o.PerLogin != (storage.AttemptLimit{Max: 5, Window: 15 * 60e9, Lockout: 15 * 60e9}) || o.PerIP != (storage.AttemptLimit{Max: 30, Window: 15 * 60e9, Lockout: 15 * 60e9}) ||
		o.PerLoginAll != (storage.AttemptLimit{Max: 20, Window: 15 * 60e9, Lockout: 60e9}) || o.CreatePerAccount != (storage.AttemptLimit{Max: 10, Window: 3600e9, Lockout: 3600e9}) {
		t.Errorf("default child limits %+v", o)
	}
}

// TestResolveRevokesAndAddsInOnePass: a person whose SNILS is now another one (ESIA corrected
// it) loses the links of the old one and gains those of the new one in one re-check, audited.
func TestResolveRevokesAndAddsInOnePass(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.importRoster(t, roster+"s-9,sch-1,2А,Иванов,Олег,Игоревич,2018-01-01,,1,345-678-901 23,Иванов Игорь Петрович,,\n", linking.ImportOptions{})
		parent := mustAccount(t, f.store, "1000300001")
		if ch, err := f.link.Resolve(ctx, parent, "112-233-445 95"); err != nil || ch.Added != 2 {
			t.Fatalf("first resolve: %+v %v", ch, err)
		}
		ch, err := f.link.Resolve(ctx, parent, "345-678-901 23")
		if err != nil || ch.Added != 1 || ch.Revoked != 2 {
			t.Errorf("second resolve: %+v %v, want one added and two revoked", ch, err)
		}
		ev, _ := f.store.AuditEvents(ctx, 20)
		var actions []string
		for _, e := range ev {
			actions = append(actions, e.Action+":"+e.Target)
		}
		for _, want := range []string{"link.revoke:s-1", "link.revoke:s-2", "link.add:s-9"} {
			if !slices.Contains(actions, want) {
				t.Errorf("no %s in the audit %v", want, actions)
			}
		}
	})
}
