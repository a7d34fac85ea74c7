package invites_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/invites"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/storage/storagetest"
)

var key = []byte("invite-key-invite-key-invite-key")

func school(t testing.TB, s *storage.Store, n int) {
	t.Helper()
	ctx := context.Background()
	if err := s.UpsertSchool(ctx, "sch-1", "МБОУ СШ № 1"); err != nil {
		t.Fatal(err)
	}
	err := s.InTx(ctx, func(ctx context.Context) error {
		for i := range n {
			st := &storage.Student{ID: fmt.Sprintf("s-%05d", i), SchoolID: "sch-1", Class: fmt.Sprintf("%d%c", 1+i%11, 'А'+rune(i%3)),
				FamilyName: "Иванов", GivenName: fmt.Sprintf("Ученик %d", i), Birthdate: "2012-01-01", Active: true}
			if _, err := s.UpsertStudent(ctx, st, nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func forEachStore(t *testing.T, fn func(t *testing.T, s *storage.Store)) {
	for name, open := range storagetest.Dialects() {
		t.Run(name, func(t *testing.T) { fn(t, open(t)) })
	}
}

func TestIssueRotateRevokeListStats(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		school(t, s, 33) // classes 1А…11В, 3 students in 1А
		svc := invites.NewService(s, key, invites.DefaultLimits())
		sel := invites.Selection{SchoolID: "sch-1", Class: "1А"}
		var progress []int
		slips, err := svc.Issue(ctx, invites.IssueRequest{Selection: sel, Role: invites.RoleParent, TTL: 30 * 24 * time.Hour, Operator: "cli:teacher", Progress: func(d, _ int) { progress = append(progress, d) }})
		if err != nil || len(slips) != 1 || slips[0].SchoolName != "МБОУ СШ № 1" {
			t.Fatalf("issue: %+v %v", slips, err)
		}
		if len(progress) == 0 {
			t.Error("no progress reported")
		}
		if _, err := svc.Issue(ctx, invites.IssueRequest{Selection: sel, Role: invites.RoleParent, TTL: time.Hour}); !errors.Is(err, invites.ErrOpenCodesExist) {
			t.Errorf("second issue without rotate: %v", err)
		}
		if _, err := svc.Issue(ctx, invites.IssueRequest{Selection: sel, Role: invites.RoleStudent, TTL: time.Hour}); err != nil {
			t.Errorf("student codes beside parent codes: %v", err)
		}
		rotated, revoked, err := svc.Rotate(ctx, invites.IssueRequest{Selection: sel, Role: invites.RoleParent, TTL: time.Hour, Operator: "cli:teacher"})
		if err != nil || revoked != 1 || len(rotated) != 1 || rotated[0].Code == slips[0].Code {
			t.Fatalf("rotate: %v %d %v", rotated, revoked, err)
		}
		if _, err := svc.Redeem(ctx, slips[0].Code, invites.RoleParent, "acct-1", "10.0.0.1"); !errors.Is(err, storage.ErrInviteRevoked) {
			t.Errorf("the lost slip still works: %v", err)
		}
		if in, err := svc.Redeem(ctx, rotated[0].Code, invites.RoleParent, "acct-1", "10.0.0.1"); err != nil || in.StudentID != "s-00000" {
			t.Errorf("the new slip: %v %v", in, err)
		}
		if n, err := svc.Revoke(ctx, sel, invites.RoleStudent, "cli:teacher"); err != nil || n != 1 {
			t.Errorf("revoke: %d %v", n, err)
		}
		rows, err := svc.List(ctx, storage.InviteFilter{SchoolID: "sch-1"})
		if err != nil || len(rows) != 3 {
			t.Fatalf("list: %v %v", rows, err)
		}
		statuses := map[string]int{}
		for _, r := range rows {
			statuses[r.Role+":"+r.Status(time.Now())]++
		}
		if statuses["parent:revoked"] != 1 || statuses["parent:redeemed"] != 1 || statuses["student:revoked"] != 1 {
			t.Errorf("statuses %v", statuses)
		}
		stats, _ := svc.Stats(ctx, storage.InviteFilter{})
		if len(stats) != 2 || stats[0].Redeemed+stats[1].Redeemed != 1 {
			t.Errorf("stats %+v", stats)
		}
		// Expiry.
		exp, _ := svc.Issue(ctx, invites.IssueRequest{Selection: invites.Selection{SchoolID: "sch-1", Class: "2Б"}, Role: invites.RoleParent, TTL: time.Hour})
		s.SetClock(func() time.Time { return time.Now().Add(2 * time.Hour) })
		if _, err := svc.Redeem(ctx, exp[0].Code, invites.RoleParent, "acct-2", "10.0.0.2"); !errors.Is(err, storage.ErrInviteExpired) {
			t.Errorf("expired code: %v", err)
		}
		s.SetClock(time.Now)
		// No plain code anywhere in the database.
		for _, code := range []string{slips[0].Code, rotated[0].Code, exp[0].Code} {
			assertNotInDatabase(t, s, code)
			assertNotInDatabase(t, s, strings.ReplaceAll(code, "-", ""))
		}
		// Bad input.
		if _, err := svc.Issue(ctx, invites.IssueRequest{Selection: invites.Selection{SchoolID: "sch-1", IDs: []string{"nope"}}, Role: invites.RoleParent, TTL: time.Hour}); err == nil {
			t.Error("issue for an unknown student")
		}
		if _, err := svc.Issue(ctx, invites.IssueRequest{Selection: sel, Role: "admin", TTL: time.Hour}); err == nil {
			t.Error("issue for an unknown role")
		}
	})
}

// assertNotInDatabase searches every text column of every table for s.
func assertNotInDatabase(t *testing.T, st *storage.Store, s string) {
	t.Helper()
	found, err := st.SearchText(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	if len(found) > 0 {
		t.Errorf("%q found in the database: %v", s, found)
	}
}

func TestSheetAndCSV(t *testing.T) {
	slips := []invites.Slip{{SchoolID: "sch-1", SchoolName: "МБОУ СШ № 1", Class: "7А", StudentName: "Иванов Алексей Игоревич", Role: "parent", Code: "7KQ4-M2XD-9PRT", ExpiresAt: time.Date(2026, 12, 22, 10, 0, 0, 0, time.UTC)},
		{SchoolID: "sch-1", Class: "9В", StudentName: "=HYPERLINK(\"x\")", Role: "student", Code: "ABCD-EFGH-JKMN", ExpiresAt: time.Date(2026, 12, 22, 10, 0, 0, 0, time.UTC)}}
	var html bytes.Buffer
	if err := invites.WriteHTML(&html, "МБОУ СШ № 1, 7А", "https://dnevnik.example/", slips); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`lang="ru"`, "@page { size: A4", "page-break-inside: avoid", "Иванов Алексей Игоревич", "7KQ4-M2XD-9PRT", "22.12.2026", "Родитель (законный представитель)", "Обучающийся", "https://dnevnik.example/", "Войти через Госуслуги"} {
		if !strings.Contains(html.String(), want) {
			t.Errorf("sheet lacks %q", want)
		}
	}
	if strings.Contains(html.String(), `=HYPERLINK("x")`) {
		t.Error("a name was not escaped in HTML")
	}
	var csvOut bytes.Buffer
	if err := invites.WriteCSV(&csvOut, "https://dnevnik.example/", slips); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(csvOut.String(), "7KQ4-M2XD-9PRT") || !strings.Contains(csvOut.String(), `'=HYPERLINK`) {
		t.Errorf("csv: %s", csvOut.String())
	}
}

// BenchmarkIssueSchool issues parent codes for a school of 2,000 students and writes the sheet.
func BenchmarkIssueSchool(b *testing.B) {
	for name, open := range storagetest.Dialects() {
		b.Run(name, func(b *testing.B) {
			s := open(b)
			school(b, s, 2000)
			svc := invites.NewService(s, key, invites.DefaultLimits())
			for b.Loop() {
				slips, _, err := svc.Rotate(context.Background(), invites.IssueRequest{Selection: invites.Selection{SchoolID: "sch-1"}, Role: invites.RoleParent, TTL: time.Hour})
				if err != nil || len(slips) != 2000 {
					b.Fatal(err)
				}
				var buf bytes.Buffer
				if err := invites.WriteHTML(&buf, "sch-1", "https://dnevnik.example/", slips); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestGiveBackRacesRotationAndRevocation: codes in use (redeemed, their link not yet made) are
// given back while a rotation of their students, or their own revocation, runs — 50 at once. A
// give-back never reopens a code a rotation replaced or a revocation ended: afterwards each
// student has exactly the rotation's open code, and each revoked code is revoked.
func TestGiveBackRacesRotationAndRevocation(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		school(t, s, 100)
		svc := invites.NewService(s, key, invites.DefaultLimits())
		inUse := func(ids []string) []invites.Slip {
			t.Helper()
			slips, err := svc.Issue(ctx, invites.IssueRequest{Selection: invites.Selection{SchoolID: "sch-1", IDs: ids}, Role: invites.RoleParent, TTL: time.Hour})
			if err != nil || len(slips) != len(ids) {
				t.Fatalf("issue: %d %v", len(slips), err)
			}
			for _, sl := range slips {
				norm, _ := invites.Normalize(sl.Code)
				if _, err := s.RedeemInvite(ctx, invites.Digest(key, norm), invites.RoleParent, "acct-"+sl.StudentID); err != nil {
					t.Fatal(err)
				}
			}
			return slips
		}
		ids := func(from int) []string {
			var out []string
			for i := from; i < from+50; i++ {
				out = append(out, fmt.Sprintf("s-%05d", i))
			}
			return out
		}
		status := func(students []string) map[string]map[string]int {
			rows, err := s.ListInvites(ctx, storage.InviteFilter{SchoolID: "sch-1", Role: invites.RoleParent})
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]bool{}
			for _, id := range students {
				want[id] = true
			}
			out := map[string]map[string]int{}
			for _, r := range rows {
				if want[r.StudentID] {
					if out[r.StudentID] == nil {
						out[r.StudentID] = map[string]int{}
					}
					out[r.StudentID][r.Status(time.Now())]++
				}
			}
			return out
		}

		// 50 give-backs and one rotation of the same 50 students, at once.
		a := ids(0)
		slips := inUse(a)
		var wg sync.WaitGroup
		for _, sl := range slips {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := svc.GiveBack(ctx, sl.InviteID); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := svc.Rotate(ctx, invites.IssueRequest{Selection: invites.Selection{SchoolID: "sch-1", IDs: a}, Role: invites.RoleParent, TTL: time.Hour}); err != nil {
				t.Error(err)
			}
		}()
		wg.Wait()
		for _, id := range a {
			if st := status(a)[id]; st["open"] != 1 || st["redeemed"] != 0 {
				t.Errorf("student %s after give-backs racing a rotation: %v, want one open code", id, st)
			}
		}

		// 50 give-backs and the revocations of those 50 codes, at once.
		b := ids(50)
		slips = inUse(b)
		for _, sl := range slips {
			wg.Add(2)
			go func() {
				defer wg.Done()
				if err := svc.GiveBack(ctx, sl.InviteID); err != nil {
					t.Error(err)
				}
			}()
			go func() {
				defer wg.Done()
				if err := svc.RevokeOne(ctx, sl.InviteID, "api:diary"); err != nil && !errors.Is(err, invites.ErrInviteUsed) {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		for _, id := range b {
			if st := status(b)[id]; st["revoked"] != 1 || len(st) != 1 {
				t.Errorf("student %s after give-backs racing revocations: %v, want its code revoked", id, st)
			}
		}
	})
}
