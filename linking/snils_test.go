package linking

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestNormalizeSNILS(t *testing.T) {
	tests := []struct {
		in, want string
		err      error
	}{
		{"112-233-445 95", "11223344595", nil},
		{"11223344595", "11223344595", nil},
		{" 112 233 445 95 ", "11223344595", nil},
		{"234-567-890 99", "23456789099", nil},
		{"112-233-445 96", "", ErrSNILSControl},
		{"112-233-445 9", "", ErrSNILSFormat},
		{"112-233-445 955", "", ErrSNILSFormat},
		{"112-233-445 9a", "", ErrSNILSFormat},
		{"'; DROP TABLE students; --", "", ErrSNILSFormat},
		{"", "", ErrSNILSFormat},
		{"001-001-998 00", "00100199800", nil}, // numbers up to 001-001-998 carry no control
	}
	for _, tc := range tests {
		got, err := NormalizeSNILS(tc.in)
		if got != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("NormalizeSNILS(%q) = %q, %v; want %q, %v", tc.in, got, err, tc.want, tc.err)
		}
		if err != nil && strings.Contains(err.Error(), strings.TrimSpace(tc.in)) && tc.in != "" {
			t.Errorf("error repeats the input: %v", err)
		}
	}
}

func TestControlNumberRules(t *testing.T) {
	// sum < 100 → sum; 100 or 101 → 00; > 101 → sum mod 101 (and 100 → 00).
	for nine, want := range map[string]string{"112233445": "95", "123456789": "64", "000000111": "06", "999999999": "01"} {
		if got := snilsControl(nine); got != want {
			t.Errorf("control(%s) = %s, want %s", nine, got, want)
		}
	}
}

func TestDigester(t *testing.T) {
	d1 := NewDigester([]byte("pepper-one-pepper-one-pepper-one"))
	d2 := NewDigester([]byte("pepper-two-pepper-two-pepper-two"))
	a, _ := d1.SNILS("112-233-445 95")
	b, _ := d1.SNILS("11223344595")
	c, _ := d2.SNILS("112-233-445 95")
	if a != b || a == c || len(a) != 64 || strings.Contains(a, "11223344595") {
		t.Errorf("digests %s %s %s", a, b, c)
	}
	if _, err := d1.SNILS("bad"); err == nil {
		t.Error("bad SNILS digested")
	}
	if string(d1.InviteKey()) == string(d1.snilsKey) {
		t.Error("invite and SNILS keys are the same")
	}
}

func TestAge(t *testing.T) {
	day := func(s string) time.Time { t, _ := time.Parse("2006-01-02", s); return t }
	tests := []struct {
		birth, today string
		want         int
		adult        bool
	}{
		{"2011-01-10", "2026-11-22", 15, true},
		{"2012-11-22", "2026-11-22", 14, true},
		{"2012-11-23", "2026-11-22", 13, false},
		{"2013-09-12", "2026-11-22", 13, false},
		{"2008-02-29", "2022-02-28", 13, false},
		{"2008-02-29", "2022-03-01", 14, true},
	}
	for _, tc := range tests {
		got, err := Age(tc.birth, day(tc.today))
		if err != nil || got != tc.want || IsAdult(tc.birth, day(tc.today)) != tc.adult {
			t.Errorf("Age(%s, %s) = %d, %v; want %d", tc.birth, tc.today, got, err, tc.want)
		}
	}
	if _, err := Age("12.09.2013", time.Now()); err == nil {
		t.Error("a DD.MM.YYYY date was accepted")
	}
}
