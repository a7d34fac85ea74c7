package invites_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/invites"
	"github.com/esia-broker/esia-broker/storage"
)

// Table tests at the edges of each rule, so that a rule moved by one is caught.

func TestGenerateLenBounds(t *testing.T) {
	zeros := bytes.NewReader(make([]byte, 64))
	for n, want := range map[int]string{1: "0", 4: "0000", 5: "0000-0", 8: "0000-0000", 24: "0000-0000-0000-0000-0000-0000"} {
		zeros.Reset(make([]byte, 64))
		got, err := invites.GenerateLen(zeros, n)
		if err != nil || got != want {
			t.Errorf("GenerateLen(zeros, %d) = %q %v, want %q", n, got, err, want)
		}
	}
	ones := bytes.NewReader(bytes.Repeat([]byte{0xff}, 64))
	if got, _ := invites.GenerateLen(ones, 5); got != "ZZZZ-Z" {
		t.Errorf("all ones: %q", got)
	}
	for _, n := range []int{0, -1, 25} {
		if _, err := invites.GenerateLen(bytes.NewReader(make([]byte, 64)), n); err == nil {
			t.Errorf("length %d accepted", n)
		}
	}
	if _, err := invites.GenerateLen(bytes.NewReader(nil), 12); err == nil {
		t.Error("a failing random source gave a code")
	}
}

func TestNormalizeWhatPeopleType(t *testing.T) {
	for in, want := range map[string]string{
		"7KQ4-M2XD-9PRT":      "7KQ4M2XD9PRT",
		"7kq4 m2xd\t9prt":     "7KQ4M2XD9PRT",
		"7KQ4\u00a0M2XD 9PRT": "7KQ4M2XD9PRT",
		"OOOO-IIII-LLLL":      "000011111111",
		"ОООО-0000-0000":      "000000000000", // Cyrillic О
		"7KQ4-M2XD-9PR":       "",
		"7KQ4-M2XD-9PRTX":     "",
		"7KQ4-M2XD-9PRU":      "", // U is not in the alphabet
		"7KQ4-M2XD-9PRЖ":      "", // neither is a Cyrillic letter
		"7KQ4-M2XD-9PR\u007f": "",
		"7KQ4_M2XD_9PRT":      "",
	} {
		got, err := invites.Normalize(in)
		if want == "" {
			if err == nil {
				t.Errorf("%q accepted as %q", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("Normalize(%q) = %q %v, want %q", in, got, err, want)
		}
	}
}

func TestDefaultLimits(t *testing.T) {
	l := invites.DefaultLimits()
	if l.PerAccount != (storage.AttemptLimit{Max: 5, Window: 15 * time.Minute, Lockout: 15 * time.Minute}) ||
		l.PerIP != (storage.AttemptLimit{Max: 20, Window: 15 * time.Minute, Lockout: 15 * time.Minute}) {
		t.Errorf("default limits %+v", l)
	}
}

// TestCSVInjection: a cell that a spreadsheet would read as a formula is quoted.
func TestCSVInjection(t *testing.T) {
	for _, name := range []string{"=HYPERLINK(\"x\")", "+7", "-1", "@SUM(A1)", "\tx", "\rx"} {
		var b bytes.Buffer
		if err := invites.WriteCSV(&b, "https://id.example/", []invites.Slip{{SchoolName: name, Class: name, StudentName: name, Role: invites.RoleParent, Code: "AAAA-BBBB-CCCC"}}); err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(&b).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		row := recs[len(recs)-1]
		for _, cell := range row[1:4] {
			if cell != "'"+name {
				t.Errorf("%q written as %q", name, cell)
			}
		}
	}
	var b bytes.Buffer
	_ = invites.WriteCSV(&b, "https://id.example/", []invites.Slip{{SchoolName: "Школа № 1", Class: "5А", StudentName: "Иванов", Role: invites.RoleStudent, Code: "AAAA-BBBB-CCCC"}})
	if s := b.String(); strings.Contains(s, "'Школа") || !strings.Contains(s, "Обучающийся") {
		t.Errorf("a plain row changed: %s", s)
	}
	if invites.RoleName(invites.RoleParent) == invites.RoleName(invites.RoleStudent) {
		t.Error("the two roles read the same on a slip")
	}
}

// TestIssueEdges: named students that are not all active, a TTL that is not positive, progress
// every 200 slips and at the end, and stats by status.
func TestIssueEdges(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		school(t, s, 401)
		svc := invites.NewService(s, key, invites.DefaultLimits())
		now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
		clock := func() time.Time { return now }
		svc.SetClock(clock)
		s.SetClock(clock) // the store decides expiry on redemption
		if _, err := svc.Issue(ctx, invites.IssueRequest{Selection: invites.Selection{SchoolID: "sch-1", IDs: []string{"s-00000", "nope"}}, Role: invites.RoleParent, TTL: time.Hour}); err == nil || !strings.Contains(err.Error(), `"nope"`) {
			t.Errorf("a missing student among the named: %v", err)
		}
		if _, err := svc.Issue(ctx, invites.IssueRequest{Selection: invites.Selection{SchoolID: "sch-1", Class: "99Я"}, Role: invites.RoleParent, TTL: time.Hour}); err == nil || !strings.Contains(err.Error(), `class "99Я"`) {
			t.Errorf("an empty class: %v", err)
		}
		if _, err := svc.Issue(ctx, invites.IssueRequest{Selection: invites.Selection{SchoolID: "sch-1"}, Role: invites.RoleParent, TTL: 0}); err == nil {
			t.Error("a zero TTL accepted")
		}
		var calls [][2]int
		slips, err := svc.Issue(ctx, invites.IssueRequest{Selection: invites.Selection{SchoolID: "sch-1"}, Role: invites.RoleParent, TTL: time.Hour,
			Progress: func(done, total int) { calls = append(calls, [2]int{done, total}) }})
		if err != nil || len(slips) != 401 {
			t.Fatalf("issue: %d %v", len(slips), err)
		}
		if len(calls) != 3 || calls[0] != [2]int{200, 401} || calls[1] != [2]int{400, 401} || calls[2] != [2]int{401, 401} {
			t.Errorf("progress %v", calls)
		}
		if _, err := svc.Redeem(ctx, slips[0].Code, invites.RoleParent, "acct", "10.0.0.1"); err != nil {
			t.Fatal(err)
		}
		if n, err := svc.Revoke(ctx, invites.Selection{SchoolID: "sch-1", IDs: []string{"s-00001"}}, invites.RoleParent, "cli"); err != nil || n != 1 {
			t.Fatalf("revoke one student's code: %d %v", n, err)
		}
		now = now.Add(2 * time.Hour)
		stats, err := svc.Stats(ctx, storage.InviteFilter{SchoolID: "sch-1"})
		if err != nil {
			t.Fatal(err)
		}
		var open, redeemed, expired, revoked int
		for _, st := range stats {
			open, redeemed, expired, revoked = open+st.Open, redeemed+st.Redeemed, expired+st.Expired, revoked+st.Revoked
		}
		if open != 0 || redeemed != 1 || revoked != 1 || expired != 399 {
			t.Errorf("stats two hours on: open %d, redeemed %d, expired %d, revoked %d", open, redeemed, expired, revoked)
		}
	})
}
