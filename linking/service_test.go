package linking_test

import (
	"context"
	"errors"
	"fmt"
	"github.com/esia-broker/esia-broker/esia/esiatest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/invites"
	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/storage/storagetest"
)

type fixture struct {
	store *storage.Store
	link  *linking.Service
	inv   *invites.Service
}

func newFixture(t *testing.T, s *storage.Store) *fixture {
	t.Helper()
	d := linking.NewDigester([]byte("test-pepper-test-pepper-test-pep"))
	inv := invites.NewService(s, d.InviteKey(), invites.DefaultLimits())
	f := &fixture{store: s, link: linking.NewService(s, d, inv), inv: inv}
	f.link.SetClock(esiatest.TestDay) // no test depends on today's date
	ctx := context.Background()
	for id, name := range map[string]string{"sch-1": "МБОУ СШ № 1", "sch-2": "Гимназия № 2"} {
		if err := s.UpsertSchool(ctx, id, name); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func forEachStore(t *testing.T, fn func(t *testing.T, f *fixture)) {
	for name, open := range storagetest.Dialects() {
		t.Run(name, func(t *testing.T) { fn(t, newFixture(t, open(t))) })
	}
}

// The dev roster: the persona parent-two-kids (SNILS 112-233-445 95) is the guardian of s-1
// (school 1) and s-2 (school 2); s-3 is 15 with own SNILS 567-890-123 43; s-4 is 13.
const roster = `student_id,school_id,class,family_name,given_name,middle_name,birthdate,snils,active,guardian1_snils,guardian1_name,guardian2_snils,guardian2_name
s-1,sch-1,7А,Иванов,Алексей,Игоревич,12.09.2013,123-456-789 64,1,112-233-445 95,Иванова Мария Петровна,,
s-2,sch-2,3Б,Иванова,Дарья,Игоревна,2017-05-21,234-567-890 99,да,112-233-445 95,Иванова Мария Петровна,,
s-3,sch-1,9В,Кузнецов,Иван,Андреевич,2011-01-10,567-890-123 43,1,,,,
s-4,sch-1,7А,Петрова,Анна,Сергеевна,2013-02-03,,1,,,,
`

// mustAccount makes the ESIA account of an adult (a parent).
func mustAccount(t testing.TB, s *storage.Store, sub string) string {
	t.Helper()
	return mustAccountBorn(t, s, sub, "1985-04-12")
}

// mustAccountBorn makes an ESIA account with the birth date ESIA gave ("" for none).
func mustAccountBorn(t testing.TB, s *storage.Store, sub, birthdate string) string {
	t.Helper()
	a, err := s.UpsertUpstreamAccount(context.Background(), &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: &sub, Birthdate: birthdate})
	if err != nil {
		t.Fatal(err)
	}
	return a.ID
}

// day moves the dates in a fixture to the test calendar (esiatest.TestDay): everyone keeps the
// age the fixture was written with.
func day(text string) string {
	return esiatest.ShiftDates(text, esiatest.OffsetOf(esiatest.TestDay()))
}

// shiftedDate is a YYYY-MM-DD date of the reference calendar moved to the test calendar.
func shiftedDate(t *testing.T, d string) time.Time {
	t.Helper()
	v, err := time.Parse("2006-01-02", day(d))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (f *fixture) importRoster(t *testing.T, body string, o linking.ImportOptions) *linking.ImportReport {
	t.Helper()
	rep, err := f.link.Import(context.Background(), strings.NewReader(day(body)), o)
	if err != nil {
		t.Fatalf("import: %v (%v)", err, rep)
	}
	return rep
}

func linkedIDs(t *testing.T, s *storage.Store, account string) string {
	t.Helper()
	ls, err := s.LinkedStudents(context.Background(), account)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, l := range ls {
		ids = append(ids, l.StudentID+":"+l.Relation+":"+l.Method)
	}
	return strings.Join(ids, ",")
}

func TestRosterImport(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		rep := f.importRoster(t, roster, linking.ImportOptions{Operator: "cli:test"})
		if rep.Created != 4 || rep.Updated != 0 || !rep.Applied {
			t.Errorf("first import: %+v", rep)
		}
		rep = f.importRoster(t, roster, linking.ImportOptions{})
		if rep.Unchanged != 4 || rep.Created+rep.Updated != 0 {
			t.Errorf("second import of the same file changed something: %+v", rep)
		}
		changed := strings.Replace(roster, "7А,Иванов", "8А,Иванов", 1)
		rep = f.importRoster(t, changed, linking.ImportOptions{DryRun: true})
		if rep.Updated != 1 || rep.Applied {
			t.Errorf("dry run: %+v", rep)
		}
		if st, _ := f.store.Student(context.Background(), "s-1"); st.Class != "7А" {
			t.Error("the dry run wrote")
		}
		jsonl := `{"student_id":"s-9","school_id":"sch-2","class":"1А","family_name":"Орлова","given_name":"Ева","birthdate":"2019-04-01","guardians":[{"snils":"345-678-901 23","name":"Петров С. Н."}]}` + "\n"
		if rep := f.importRoster(t, jsonl, linking.ImportOptions{}); rep.Created != 1 {
			t.Errorf("jsonl: %+v", rep)
		}
	})
}

func TestRosterBadRowsAllOrNothing(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		bad := roster + `s-5,sch-9,1А,Орлов,Пётр,,2018-01-01,,1,,,,
s-6,sch-1,1А,Орлов,Пётр,,31.02.2018,,1,,,,
s-7,sch-1,1А,Орлов,Пётр,,2018-01-01,112-233-445 96,1,,,,
s-1,sch-1,1А,Орлов,Пётр,,2018-01-01,,1,999-999-999 99,,,
`
		rep, err := f.link.Import(context.Background(), strings.NewReader(bad), linking.ImportOptions{})
		if !errors.Is(err, linking.ErrInvalidRows) {
			t.Fatalf("err = %v", err)
		}
		want := []string{"line 6: school_id: unknown school", "line 7: birthdate", "line 8: snils: SNILS control number is wrong", "line 9: student_id: repeats line 2", "line 9: guardian1_snils"}
		var got []string
		for _, e := range rep.Errors {
			got = append(got, e.String())
		}
		for _, w := range want {
			if !strings.Contains(strings.Join(got, "\n"), w) {
				t.Errorf("report lacks %q:\n%s", w, strings.Join(got, "\n"))
			}
		}
		for _, e := range got {
			if strings.Contains(e, "112-233-445") || strings.Contains(e, "999-999") {
				t.Errorf("the report repeats a SNILS: %s", e)
			}
		}
		if _, err := f.store.Student(context.Background(), "s-1"); !errors.Is(err, storage.ErrNotFound) {
			t.Error("rows were imported from a file with bad rows")
		}
		rep, err = f.link.Import(context.Background(), strings.NewReader(bad), linking.ImportOptions{SkipInvalid: true})
		if err != nil || rep.Created != 4 || rep.Skipped != 4 {
			t.Errorf("skip-invalid: %+v %v", rep, err)
		}
		rep, err = f.link.Import(context.Background(), strings.NewReader(roster+"s-9,sch-1,\"7А,Орлов,Пётр,,2018-01-01,,1,,,,\n"), linking.ImportOptions{})
		if !errors.Is(err, linking.ErrInvalidRows) || len(rep.Errors) == 0 || !strings.Contains(rep.Errors[0].String(), "not valid CSV") {
			t.Errorf("a malformed CSV row: %v %+v", err, rep)
		}
		if _, err := f.link.Import(context.Background(), strings.NewReader("name,age\nx,1\n"), linking.ImportOptions{}); !errors.Is(err, linking.ErrInvalidRows) {
			t.Errorf("a file without the columns: %v", err)
		}
	})
}

func TestAutoLinkBySNILS(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.link.SetClock(esiatest.TestDay)
		f.importRoster(t, roster, linking.ImportOptions{})
		parent := mustAccount(t, f.store, "1000300001")
		ch, err := f.link.Resolve(ctx, parent, "112-233-445 95")
		if err != nil || ch.Added != 2 {
			t.Fatalf("resolve: %+v %v", ch, err)
		}
		if got := linkedIDs(t, f.store, parent); got != "s-1:parent:snils,s-2:parent:snils" {
			t.Errorf("links = %s", got)
		}
		if ch, _ := f.link.Resolve(ctx, parent, "112-233-445 95"); ch.Added+ch.Revoked != 0 {
			t.Errorf("a second login changed links: %+v", ch)
		}
		student := mustAccountBorn(t, f.store, "1000300004", "2011-01-10")
		if ch, _ := f.link.Resolve(ctx, student, "567-890-123 43"); ch.Added != 1 || linkedIDs(t, f.store, student) != "s-3:self:snils" {
			t.Errorf("student of 15: %+v %s", ch, linkedIDs(t, f.store, student))
		}
		// The own SNILS links only with the card's birth date too, at any age.
		for _, tc := range []struct {
			sub, born, snils, want string
		}{
			{"x-15-other-day", "1985-04-12", "567-890-123 43", ""},
			{"x-13-own", "2013-09-12", "123-456-789 64", "s-1:self:snils"},
			{"x-13-other-day", "2013-09-13", "123-456-789 64", ""},
			{"x-9-own", "2017-05-21", "234-567-890 99", "s-2:self:snils"},
			{"x-no-birthdate", "", "234-567-890 99", ""},
		} {
			a := mustAccountBorn(t, f.store, tc.sub, tc.born)
			if _, err := f.link.Resolve(ctx, a, tc.snils); err != nil {
				t.Fatal(err)
			}
			if got := linkedIDs(t, f.store, a); got != tc.want {
				t.Errorf("%s: links %q, want %q", tc.sub, got, tc.want)
			}
		}
		// The guardian's SNILS is removed from s-2's card: the SNILS link goes with the import,
		// not at the next login; the login's re-check then finds nothing to do.
		f.importRoster(t, strings.Replace(roster, "2017-05-21,234-567-890 99,да,112-233-445 95,Иванова Мария Петровна", "2017-05-21,234-567-890 99,да,,", 1), linking.ImportOptions{})
		if got := linkedIDs(t, f.store, parent); got != "s-1:parent:snils" {
			t.Errorf("after removal, before any login: %s", got)
		}
		if ch, _ := f.link.Resolve(ctx, parent, "112-233-445 95"); ch.Revoked != 0 || ch.Added != 0 || linkedIDs(t, f.store, parent) != "s-1:parent:snils" {
			t.Errorf("after removal: %+v %s", ch, linkedIDs(t, f.store, parent))
		}
		// A student who leaves disappears from the linked students.
		if _, err := f.link.Deactivate(ctx, "s-1", "api:kiasuo"); err != nil {
			t.Fatal(err)
		}
		if got := linkedIDs(t, f.store, parent); got != "" {
			t.Errorf("inactive student still listed: %s", got)
		}
	})
}

func TestInviteRedemption(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.link.SetClock(esiatest.TestDay)
		f.importRoster(t, roster, linking.ImportOptions{})
		slips, err := f.inv.Issue(ctx, invites.IssueRequest{Selection: invites.Selection{SchoolID: "sch-1", Class: "7А"}, Role: invites.RoleParent, TTL: 30 * 24 * time.Hour, Operator: "cli:teacher"})
		if err != nil || len(slips) != 2 {
			t.Fatalf("issue: %v %v", slips, err)
		}
		parent := mustAccount(t, f.store, "1000300002")
		for _, sl := range slips {
			st, err := f.link.RedeemCode(ctx, parent, strings.ToLower(sl.Code), invites.RoleParent, "10.0.0.1")
			if err != nil || st.ID == "" {
				t.Fatalf("redeem %s: %v", sl.StudentName, err)
			}
		}
		if got := linkedIDs(t, f.store, parent); !strings.Contains(got, "s-1:parent:invite") || !strings.Contains(got, "s-4:parent:invite") {
			t.Errorf("links after two codes: %s", got)
		}
		if _, err := f.link.RedeemCode(ctx, parent, slips[0].Code, invites.RoleParent, "10.0.0.1"); !errors.Is(err, invites.ErrInvalidCode) || !errors.Is(err, storage.ErrInviteUsed) {
			t.Errorf("second use: %v", err)
		}
		// A 13-year-old's student code: refused (and still usable) for an account born on
		// another day, taken by the child's own ESIA account born on the card's day.
		sc, err := f.inv.Issue(ctx, invites.IssueRequest{Selection: invites.Selection{SchoolID: "sch-1", IDs: []string{"s-4"}}, Role: invites.RoleStudent, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		kid := mustAccount(t, f.store, "kid")
		if _, err := f.link.RedeemCode(ctx, kid, sc[0].Code, invites.RoleStudent, "10.0.0.2"); !errors.Is(err, linking.ErrNotThisStudent) {
			t.Errorf("a 13-year-old's student code by another account: %v", err)
		}
		if open, _ := f.store.OpenInvites(ctx, []string{"s-4"}, invites.RoleStudent); len(open) != 1 {
			t.Error("the refused code was spent")
		}
		anna := mustAccountBorn(t, f.store, "anna-own-esia", "2013-02-03")
		if st, err := f.link.RedeemCode(ctx, anna, sc[0].Code, invites.RoleStudent, "10.0.0.3"); err != nil || st.ID != "s-4" {
			t.Errorf("the 13-year-old's own ESIA account with her code: %v", err)
		}
		if got := linkedIDs(t, f.store, anna); got != "s-4:self:invite" {
			t.Errorf("her links: %s", got)
		}
		// A parent code typed as a student code is refused.
		pc, _ := f.inv.Issue(ctx, invites.IssueRequest{Selection: invites.Selection{SchoolID: "sch-1", IDs: []string{"s-3"}}, Role: invites.RoleParent, TTL: time.Hour})
		if _, err := f.link.RedeemCode(ctx, kid, pc[0].Code, invites.RoleStudent, "10.0.0.2"); !errors.Is(err, storage.ErrInviteWrongUse) {
			t.Errorf("parent code as student code: %v", err)
		}
	})
}

func TestConcurrentRedemptionExactlyOneWins(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.importRoster(t, roster, linking.ImportOptions{})
		slips, err := f.inv.Issue(ctx, invites.IssueRequest{Selection: invites.Selection{SchoolID: "sch-2"}, Role: invites.RoleParent, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		const n = 8
		var wg sync.WaitGroup
		results := make(chan error, n)
		for i := range n {
			acct := mustAccount(t, f.store, fmt.Sprintf("racer-%d", i))
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := f.link.RedeemCode(ctx, acct, slips[0].Code, invites.RoleParent, fmt.Sprintf("10.1.0.%d", i))
				results <- err
			}()
		}
		wg.Wait()
		close(results)
		wins := 0
		for err := range results {
			switch {
			case err == nil:
				wins++
			case errors.Is(err, storage.ErrInviteUsed):
			default:
				t.Errorf("unexpected: %v", err)
			}
		}
		if wins != 1 {
			t.Errorf("%d accounts redeemed one code", wins)
		}
	})
}

func TestWrongCodesLockOut(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.importRoster(t, roster, linking.ImportOptions{})
		slips, _ := f.inv.Issue(ctx, invites.IssueRequest{Selection: invites.Selection{SchoolID: "sch-2"}, Role: invites.RoleParent, TTL: time.Hour})
		acct := mustAccount(t, f.store, "guesser")
		var lastErr error
		for i := range 5 {
			_, lastErr = f.link.RedeemCode(ctx, acct, fmt.Sprintf("AAAA-BBBB-CCC%d", i), invites.RoleParent, "10.2.0.1")
		}
		var le *invites.LockedError
		if !errors.As(lastErr, &le) || le.Until.Before(time.Now()) {
			t.Fatalf("fifth wrong code: %v", lastErr)
		}
		// Another replica (another service on the same database) sees the lock, even for the right code.
		d := linking.NewDigester([]byte("test-pepper-test-pepper-test-pep"))
		other := linking.NewService(f.store, d, invites.NewService(f.store, d.InviteKey(), invites.DefaultLimits()))
		if _, err := other.RedeemCode(ctx, acct, slips[0].Code, invites.RoleParent, "10.2.0.99"); !errors.As(err, &le) {
			t.Errorf("the right code during the lock-out: %v", err)
		}
		// Per IP: 20 wrong codes from one address by different accounts lock the address.
		for i := range 20 {
			a := mustAccount(t, f.store, fmt.Sprintf("bot-%d", i))
			_, lastErr = f.link.RedeemCode(ctx, a, "ZZZZ-ZZZZ-ZZZZ", invites.RoleParent, "10.3.0.1")
		}
		if !errors.As(lastErr, &le) {
			t.Errorf("IP limit: %v", lastErr)
		}
	})
}

// countingStore records AnalyzeRoster calls, passing them on to the real store.
type countingStore struct {
	*storage.Store
	analyzed int
}

func (c *countingStore) AnalyzeRoster(ctx context.Context) error {
	c.analyzed++
	return c.Store.AnalyzeRoster(ctx)
}

// TestLargeImportRefreshesStatistics: an import that changes at least 500 cards refreshes the
// planner statistics (a real ANALYZE on both stores); a small one or a dry run does not.
func TestLargeImportRefreshesStatistics(t *testing.T) {
	var big strings.Builder
	big.WriteString("student_id,school_id,class,family_name,given_name,middle_name,birthdate,snils,active\n")
	for i := range 600 {
		fmt.Fprintf(&big, "b-%d,sch-1,5А,Иванов,Иван,,2014-01-01,,1\n", i)
	}
	cards := func(prefix string, n int) string {
		var b strings.Builder
		b.WriteString("student_id,school_id,class,family_name,given_name,middle_name,birthdate,snils,active\n")
		for i := range n {
			fmt.Fprintf(&b, "%s-%d,sch-1,5А,Иванов,Иван,,2014-01-01,,1\n", prefix, i)
		}
		return b.String()
	}
	forEachStore(t, func(t *testing.T, f *fixture) {
		cs := &countingStore{Store: f.store}
		d := linking.NewDigester([]byte("test-pepper-test-pepper-test-pep"))
		svc := linking.NewService(cs, d, f.inv)
		tests := []struct {
			name string
			body string
			dry  bool
			want int
		}{
			{"small import", roster, false, 0},
			{"large dry run", big.String(), true, 0},
			{"large import", big.String(), false, 1},
			{"same file again: nothing changed", big.String(), false, 0},
			{"499 new cards: one short", cards("x", 499), false, 0},
			{"500 new cards: the threshold", cards("y", 500), false, 1},
			{"the same 500 cards changed: updates count too", strings.ReplaceAll(cards("y", 500), "5А", "6А"), false, 1},
		}
		for _, tc := range tests {
			cs.analyzed = 0
			if _, err := svc.Import(context.Background(), strings.NewReader(tc.body), linking.ImportOptions{DryRun: tc.dry, Operator: "test"}); err != nil {
				t.Fatalf("%s: %v", tc.name, err)
			}
			if cs.analyzed != tc.want {
				t.Errorf("%s: analyzed %d times, want %d", tc.name, cs.analyzed, tc.want)
			}
		}
	})
}
