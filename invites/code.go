// Package invites makes, stores and redeems invite codes (пригласительные коды): Crockford
// base32, 60 bits from crypto/rand, stored only as keyed digests, single use, role- and
// student-bound, expiring and attempt-limited.
package invites

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
)

// alphabet is Crockford's base32: no I, L, O or U.
const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// CodeLength is the number of symbols in a code: 12 × 5 = 60 bits.
const CodeLength = 12

// ErrCodeFormat is returned for input that cannot be a code.
var ErrCodeFormat = errors.New("invite code must be 12 letters and digits, e.g. 7KQ4-M2XD-9PRT")

// Generate returns a new code in groups of four (7KQ4-M2XD-9PRT).
func Generate(random io.Reader) (string, error) { return GenerateLen(random, CodeLength) }

// GenerateLen returns a code of n symbols (5 bits each, n ≤ 24) in groups of four, the same
// alphabet as invite codes: activation keys use it too.
func GenerateLen(random io.Reader, n int) (string, error) {
	if n < 1 || n > 24 {
		return "", fmt.Errorf("code length %d out of range", n)
	}
	b := make([]byte, (5*n+7)/8)
	if _, err := io.ReadFull(random, b); err != nil {
		return "", fmt.Errorf("generate code: %w", err)
	}
	var out []byte
	bit := 0
	for i := range n {
		if i > 0 && i%4 == 0 {
			out = append(out, '-')
		}
		v := 0
		for range 5 {
			v = v<<1 | int(b[bit/8]>>(7-bit%8))&1
			bit++
		}
		out = append(out, alphabet[v])
	}
	return string(out), nil
}

// GenerateRandom is Generate with crypto/rand.
func GenerateRandom() (string, error) { return Generate(rand.Reader) }

// Normalize turns what a person typed into the canonical code: case ignored, spaces and dashes
// dropped, O read as 0 and I / L as 1.
func Normalize(s string) (string, error) { return NormalizeLen(s, CodeLength) }

// NormalizeLen is Normalize for codes of n symbols.
func NormalizeLen(s string, n int) (string, error) {
	var b strings.Builder
	for _, r := range strings.ToUpper(s) {
		switch {
		case r == ' ' || r == '-' || r == '\u00a0' || r == '\t':
			continue
		case r == 'O' || r == 'О': // Latin O, and Cyrillic О typed by mistake
			r = '0'
		case r == 'I' || r == 'L':
			r = '1'
		}
		r = latinLookalike(r)
		if !strings.ContainsRune(alphabet, r) { // the alphabet is ASCII: this refuses the rest too
			return "", ErrCodeFormat
		}
		b.WriteRune(r)
	}
	if b.Len() != n {
		return "", ErrCodeFormat
	}
	return b.String(), nil
}

// latinLookalike maps Cyrillic capitals that look like Latin ones (a parent typing on a Russian
// keyboard layout) to those Latin letters.
func latinLookalike(r rune) rune {
	switch r {
	case 'А':
		return 'A'
	case 'В':
		return 'B'
	case 'Е':
		return 'E'
	case 'К':
		return 'K'
	case 'М':
		return 'M'
	case 'Н':
		return 'H'
	case 'Р':
		return 'P'
	case 'С':
		return 'C'
	case 'Т':
		return 'T'
	case 'Х':
		return 'X'
	}
	return r
}

// Digest is the stored form of a normalised code.
func Digest(key []byte, normalized string) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(normalized))
	return hex.EncodeToString(m.Sum(nil))
}
