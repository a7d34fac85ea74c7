package esiatest

import (
	"testing"
	"time"
)

func TestShiftDatesKeepsAges(t *testing.T) {
	for _, tc := range []struct {
		in   string
		o    Offset
		want string
	}{
		{"12.09.2013", Offset{}, "12.09.2013"},
		{"12.09.2013", Offset{Days: 1}, "13.09.2013"},
		{"2013-09-12,x,21.05.2017", Offset{Years: 1}, "2014-09-12,x,21.05.2018"},
		{"12.09.2013", Offset{Years: 2, Days: 3}, "15.09.2015"},
		{"no date 123-456-789 64", Offset{Days: 10}, "no date 123-456-789 64"},
	} {
		if got := ShiftDates(tc.in, tc.o); got != tc.want {
			t.Errorf("ShiftDates(%q, %+v) = %q, want %q", tc.in, tc.o, got, tc.want)
		}
	}
	ref := AgeReference()
	for _, years := range []int{0, 1, 2, 5} {
		now := ref.AddDate(years, 0, 0)
		for _, p := range PersonasOn(now) {
			orig := findPersona(t, p.ID)
			if a, b := age(t, orig.BirthDate, ref), age(t, p.BirthDate, now); a != b {
				t.Errorf("%d years on, %s is %d, was %d", years, p.ID, b, a)
			}
		}
	}
	for _, tc := range []struct {
		now  time.Time
		want Offset
	}{
		{ref, Offset{}},
		{ref.AddDate(2, 0, 0), Offset{Years: 2}},
		{ref.AddDate(1, 0, 10), Offset{Years: 1, Days: 10}},
		{ref.AddDate(0, 0, 364), Offset{Days: 364}},
	} {
		if got := OffsetOf(tc.now); got != tc.want {
			t.Errorf("OffsetOf(%s) = %+v, want %+v", tc.now.Format(time.DateOnly), got, tc.want)
		}
	}
}

func findPersona(t *testing.T, id string) Persona {
	t.Helper()
	for _, p := range DefaultPersonas() {
		if p.ID == id {
			return p
		}
	}
	t.Fatalf("no persona %s", id)
	return Persona{}
}

func age(t *testing.T, birth string, on time.Time) int {
	t.Helper()
	b, err := time.Parse("02.01.2006", birth)
	if err != nil {
		t.Fatal(err)
	}
	a := on.Year() - b.Year()
	if on.Month() < b.Month() || (on.Month() == b.Month() && on.Day() < b.Day()) {
		a--
	}
	return a
}
