package linking

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/esia-broker/esia-broker/esia/esiatest"
)

// nineWithSum returns nine digits whose weighted sum (weights 9…1) is sum.
func nineWithSum(t *testing.T, sum int) string {
	t.Helper()
	d := make([]byte, 9)
	rest := sum
	for i := range 9 {
		w := 9 - i
		v := min(9, rest/w)
		d[i] = byte('0' + v)
		rest -= v * w
	}
	if rest != 0 {
		t.Fatalf("no nine digits with weighted sum %d", sum)
	}
	return string(d)
}

// TestControlNumberBoundaries reaches every branch of the rule: a sum under 100 is the control
// number; 100 and 101 give 00; above 101 the sum mod 101, where 100 again gives 00.
func TestControlNumberBoundaries(t *testing.T) {
	for _, tc := range []struct {
		sum  int
		want string
	}{{99, "99"}, {100, "00"}, {101, "00"}, {102, "01"}, {201, "00"}, {202, "00"}, {203, "01"}, {303, "00"}} {
		nine := nineWithSum(t, tc.sum)
		if got := snilsControl(nine); got != tc.want {
			t.Errorf("sum %d (%s): control %s, want %s", tc.sum, nine, got, tc.want)
		}
		if nine > "001001998" {
			if _, err := NormalizeSNILS(nine + tc.want); err != nil {
				t.Errorf("sum %d: %s%s refused: %v", tc.sum, nine, tc.want, err)
			}
		}
	}
}

// TestControlNumberAgreesWithTheEmulator compares the broker's rule with the emulator's own
// implementation over many numbers: what the emulator writes, the broker accepts, and a wrong
// control number is refused.
func TestControlNumberAgreesWithTheEmulator(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 200000 {
		n := 1001999 + r.IntN(999999999-1001999)
		if i < 1000 {
			n = 1001999 + i // the first numbers that carry a control number
		}
		s := esiatest.FormatSNILS(n)
		d, err := NormalizeSNILS(s)
		if err != nil {
			t.Fatalf("%s (written by the emulator) refused: %v", s, err)
		}
		good := d[9:]
		bad := fmt.Sprintf("%02d", (int(good[0]-'0')*10+int(good[1]-'0')+1+r.IntN(98))%100)
		if _, err := NormalizeSNILS(d[:9] + bad); err == nil {
			t.Fatalf("%s with control %s (the right one is %s) accepted", d[:9], bad, good)
		}
		if esiatest.ValidSNILS(s[:12]+bad) && bad != good {
			t.Fatalf("the emulator accepts %s%s", s[:12], bad)
		}
	}
}
