package linking_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/invites"
	"github.com/esia-broker/esia-broker/linking"
)

// TestFourteenthBirthday checks the rules around the 14th birthday at the day before, the day
// and the day after: the end of the sub-account turns on it, while a link by the student's own
// SNILS and a student code work on every day (children under 14 have ESIA accounts of their
// own). The card's birth date is 14 years before a day D; the calendar is set to D-1, D and D+1.
func TestFourteenthBirthday(t *testing.T) {
	for _, tc := range []struct {
		offset    int // days from the 14th birthday
		childUses bool
	}{{-1, true}, {0, false}, {1, false}} {
		t.Run(fmt.Sprintf("day %+d", tc.offset), func(t *testing.T) {
			forEachStore(t, func(t *testing.T, f *fixture) {
				ctx := context.Background()
				fastArgon(f)
				birthday := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC) // its 14th birthday: the test calendar below
				born := birthday.AddDate(-14, 0, 0).Format("2006-01-02")
				now := birthday.AddDate(0, 0, tc.offset).Add(10 * time.Hour)
				f.link.SetClock(func() time.Time { return now })
				card := "student_id,school_id,class,family_name,given_name,middle_name,birthdate,snils,active,guardian1_snils,guardian1_name\n" +
					"b-1,sch-1,8А,Зайцев,Олег,Петрович," + born + ",567-890-123 43,1,112-233-445 95,Зайцева Анна\n"
				if _, err := f.link.Import(ctx, stringsReader(card), linking.ImportOptions{}); err != nil {
					t.Fatal(err)
				}
				// Own SNILS.
				self := mustAccountBorn(t, f.store, "self-"+born, born)
				ch, err := f.link.Resolve(ctx, self, "567-890-123 43")
				if err != nil {
					t.Fatal(err)
				}
				if ch.Added != 1 {
					t.Errorf("own-SNILS link on day %+d: %+v, want it made", tc.offset, ch)
				}
				// Student code.
				codes, err := f.inv.Issue(ctx, invites.IssueRequest{Selection: invites.Selection{SchoolID: "sch-1", IDs: []string{"b-1"}}, Role: invites.RoleStudent, TTL: time.Hour})
				if err != nil {
					t.Fatal(err)
				}
				other := mustAccountBorn(t, f.store, "code-"+born, born)
				_, err = f.link.RedeemCode(ctx, other, codes[0].Code, invites.RoleStudent, "10.60.0.1")
				if err != nil {
					t.Errorf("student code on day %+d: %v", tc.offset, err)
				}
				// The sub-account: made the day before (a parent may only make it under 14).
				parent := mustAccount(t, f.store, "parent-"+born)
				if _, err := f.link.Resolve(ctx, parent, "112-233-445 95"); err != nil {
					t.Fatal(err)
				}
				f.link.SetClock(func() time.Time { return birthday.AddDate(0, 0, -1) })
				if _, err := f.link.CreateChildLogin(ctx, parent, "b-1", "oleg", "correct-horse"); err != nil {
					t.Fatal(err)
				}
				f.link.SetClock(func() time.Time { return now })
				_, err = f.link.ChildLogin(ctx, "oleg", "correct-horse", "10.60.0.2", false)
				if tc.childUses && err != nil {
					t.Errorf("sub-account the day before the 14th birthday: %v", err)
				}
				if !tc.childUses && !errors.Is(err, linking.ErrChildTooOld) {
					t.Errorf("sub-account on day %+d: %v", tc.offset, err)
				}
			})
		})
	}
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }
