package invites

import (
	"strings"
	"testing"
)

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"7KQ4-M2XD-9PRT", "7kq4 m2xd 9prt", "OOII-LLoo-1234", "7КQ4-М2ХD-9РRТ", "", "ЁЁЁЁ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := Normalize(s)
		if err != nil {
			return
		}
		if len(n) != CodeLength {
			t.Fatalf("%q normalised to %q", s, n)
		}
		for _, r := range n {
			if !strings.ContainsRune(alphabet, r) {
				t.Fatalf("%q normalised to %q with %q outside the alphabet", s, n, r)
			}
		}
		if again, err := Normalize(n); err != nil || again != n {
			t.Fatalf("not idempotent: %q → %q → %q", s, n, again)
		}
	})
}
