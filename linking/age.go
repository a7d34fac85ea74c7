package linking

import (
	"fmt"
	"time"
)

// AdultAge is the age from which a student logs in with ESIA (and may link by own SNILS or a
// student code); younger children get sub-accounts.
const AdultAge = 14

// Age is the age in full years on day today of a person born on birthdate (YYYY-MM-DD).
func Age(birthdate string, today time.Time) (int, error) {
	b, err := time.Parse("2006-01-02", birthdate)
	if err != nil {
		return 0, fmt.Errorf("birth date %q is not YYYY-MM-DD", birthdate)
	}
	y, m, d := today.Date()
	age := y - b.Year()
	if m < b.Month() || (m == b.Month() && d < b.Day()) {
		age--
	}
	return age, nil
}

// IsAdult tells whether the person is AdultAge or older on today.
func IsAdult(birthdate string, today time.Time) bool {
	a, err := Age(birthdate, today)
	return err == nil && a >= AdultAge
}
