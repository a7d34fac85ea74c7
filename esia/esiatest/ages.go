package esiatest

import (
	"os"
	"regexp"
	"strconv"
	"time"
)

// AgeReference is the day on which the shipped personas (and the dev roster) have the ages
// their birth dates give: a parent of 41, a student of 15, children of 13, 9, 7… Shifted by
// ShiftDates to another day, everyone keeps those ages, so demo data and test fixtures never
// age out (a child turning 14 would otherwise change what a journey does).
func AgeReference() time.Time { return time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC) }

// Offset is how far day now lies from AgeReference: whole years, then days.
type Offset struct{ Years, Days int }

// OffsetOf tells how far day now lies from AgeReference (before it: a negative number of days).
func OffsetOf(now time.Time) Offset {
	ref := AgeReference()
	a := time.Date(ref.Year(), ref.Month(), ref.Day(), 0, 0, 0, 0, time.UTC)
	y, m, d := now.Date()
	b := time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
	years := 0
	for !a.AddDate(years+1, 0, 0).After(b) {
		years++
	}
	return Offset{Years: years, Days: int(b.Sub(a.AddDate(years, 0, 0)).Hours() / 24)}
}

var (
	dmyDate = regexp.MustCompile(`\b(\d{2})\.(\d{2})\.(\d{4})\b`)
	ymdDate = regexp.MustCompile(`\b(\d{4})-(\d{2})-(\d{2})\b`)
)

// ShiftDates moves every date in text (DD.MM.YYYY or YYYY-MM-DD) by the offset, keeping its
// form: whole years first (a birthday stays on its day), then days.
func ShiftDates(text string, o Offset) string {
	if o == (Offset{}) {
		return text
	}
	shift := func(layout string) func(string) string {
		return func(s string) string {
			t, err := time.Parse(layout, s)
			if err != nil {
				return s
			}
			return t.AddDate(o.Years, 0, o.Days).Format(layout)
		}
	}
	text = dmyDate.ReplaceAllStringFunc(text, shift("02.01.2006"))
	return ymdDate.ReplaceAllStringFunc(text, shift("2006-01-02"))
}

// PersonasOn returns the shipped personas with their birth dates moved so that on day now
// everyone has the age they have on AgeReference.
func PersonasOn(now time.Time) []Persona {
	p, err := ParsePersonas([]byte(ShiftDates(string(defaultPersonas), OffsetOf(now))))
	if err != nil {
		panic("esiatest: embedded personas: " + err.Error())
	}
	return p
}

// TestDay is the day tests reckon ages on: AgeReference, or ESIA_BROKER_TEST_YEARS_AHEAD years
// after it (a test-only setting that shows no test depends on today's date:
// `ESIA_BROKER_TEST_YEARS_AHEAD=2 go test ./...`). Tests pin the broker's calendar to it and move
// their fixtures' birth dates with ShiftDates(…, OffsetOf(TestDay())).
func TestDay() time.Time {
	years, _ := strconv.Atoi(os.Getenv("ESIA_BROKER_TEST_YEARS_AHEAD"))
	return AgeReference().AddDate(years, 0, 0)
}
