package invites

import (
	"bytes"
	"errors"
	"regexp"
	"strings"
	"testing"
)

func TestGenerateFormatAndEntropy(t *testing.T) {
	format := regexp.MustCompile(`^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$`)
	seen := map[string]bool{}
	counts := map[rune]int{}
	for range 20000 {
		c, err := GenerateRandom()
		if err != nil {
			t.Fatal(err)
		}
		if !format.MatchString(c) {
			t.Fatalf("bad format %q", c)
		}
		if seen[c] {
			t.Fatalf("duplicate code %q in 20000", c)
		}
		seen[c] = true
		for _, r := range strings.ReplaceAll(c, "-", "") {
			counts[r]++
		}
	}
	// 240000 symbols over 32 letters: each about 7500; a biased source would show.
	for _, r := range alphabet {
		if n := counts[r]; n < 6500 || n > 8500 {
			t.Errorf("symbol %c appears %d times: not uniform", r, n)
		}
	}
	if CodeLength*5 < 50 {
		t.Errorf("only %d bits of entropy", CodeLength*5)
	}
}

func TestGenerateUsesTheGivenSource(t *testing.T) {
	a, _ := Generate(bytes.NewReader(make([]byte, 8)))
	if a != "0000-0000-0000" {
		t.Errorf("all-zero source gave %q", a)
	}
	b, _ := Generate(bytes.NewReader(bytes.Repeat([]byte{0xff}, 8)))
	if b != "ZZZZ-ZZZZ-ZZZZ" {
		t.Errorf("all-ones source gave %q", b)
	}
	if _, err := Generate(bytes.NewReader([]byte{1, 2})); err == nil {
		t.Error("a short random source was not reported")
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		in, want string
		err      error
	}{
		{"7KQ4-M2XD-9PRT", "7KQ4M2XD9PRT", nil},
		{"7kq4 m2xd 9prt", "7KQ4M2XD9PRT", nil},
		{" 7kq4-m2xd-9prt\t", "7KQ4M2XD9PRT", nil},
		{"OOII-LLoo-1234", "00111100" + "1234", nil},
		{"7КQ4-М2ХD-9РТ", "7KQ4M2XD9PT", ErrCodeFormat}, // Cyrillic lookalikes, one symbol short
		{"7КQ4-М2ХD-9РRТ", "7KQ4M2XD9PRT", nil},
		{"7KQ4-M2XD-9PR", "", ErrCodeFormat},
		{"7KQ4-M2XD-9PRTT", "", ErrCodeFormat},
		{"7KQ4-M2XD-9PRU", "", ErrCodeFormat}, // U is not in Crockford's alphabet
		{"<script>alert</script>", "", ErrCodeFormat},
		{"", "", ErrCodeFormat},
	}
	for _, tc := range tests {
		got, err := Normalize(tc.in)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("Normalize(%q) = %q, %v; want error", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestDigest(t *testing.T) {
	a := Digest([]byte("k1"), "7KQ4M2XD9PRT")
	if a != Digest([]byte("k1"), "7KQ4M2XD9PRT") || a == Digest([]byte("k2"), "7KQ4M2XD9PRT") || strings.Contains(strings.ToUpper(a), "7KQ4") || len(a) != 64 {
		t.Errorf("digest %s", a)
	}
}
