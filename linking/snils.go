// Package linking ties accounts to school records: the roster, SNILS rules, automatic links at
// login, invite redemption, diary-initiated links and age rules.
package linking

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
)

// Errors of SNILS parsing; their text is safe to show (it never repeats the number).
var (
	ErrSNILSFormat  = errors.New("SNILS must have 11 digits (000-000-000 00)")
	ErrSNILSControl = errors.New("SNILS control number is wrong")
)

// NormalizeSNILS returns the 11 digits of a SNILS written with or without dashes and spaces,
// after checking its control number (numbers up to 001-001-998 carry none).
func NormalizeSNILS(s string) (string, error) {
	var b strings.Builder
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '-' || r == ' ' || r == '\u00a0':
		default:
			return "", ErrSNILSFormat
		}
	}
	d := b.String()
	if len(d) != 11 {
		return "", ErrSNILSFormat
	}
	if d[:9] > "001001998" && snilsControl(d[:9]) != d[9:] {
		return "", ErrSNILSControl
	}
	return d, nil
}

func snilsControl(nine string) string {
	sum := 0
	for i := range 9 {
		sum += int(nine[i]-'0') * (9 - i)
	}
	// Under 100 the sum itself; 100 and 101 give 00; above, the sum mod 101, where 100 gives
	// 00 again — which is sum mod 101 with 100 written as 00, in every case.
	c := sum % 101
	if c == 100 {
		c = 0
	}
	return string([]byte{byte('0' + c/10), byte('0' + c%10)})
}

// Digester makes the keyed digests under which SNILS (and invite codes) are stored.
type Digester struct {
	snilsKey    []byte
	inviteKey   []byte
	pairwiseKey []byte
}

// NewDigester derives the SNILS and invite-code keys from the configured pepper.
func NewDigester(pepper []byte) *Digester {
	derive := func(label string) []byte {
		m := hmac.New(sha256.New, pepper)
		m.Write([]byte(label))
		return m.Sum(nil)
	}
	return &Digester{snilsKey: derive("esia-broker snils v1"), inviteKey: derive("esia-broker invite v1"), pairwiseKey: derive("esia-broker pairwise subject v1")}
}

// SNILS returns the digest of a SNILS; the input is normalised and checked first.
func (d *Digester) SNILS(s string) (string, error) {
	n, err := NormalizeSNILS(s)
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, d.snilsKey)
	m.Write([]byte(n))
	return hex.EncodeToString(m.Sum(nil)), nil
}

// InviteKey is the key of invite-code digests.
func (d *Digester) InviteKey() []byte { return d.inviteKey }

// PairwiseSubject is the pairwise sub of an ESIA oid in a sector (OpenID Connect Core §8.1):
// a keyed hash of both, base64url, the same on every replica and stable as long as the SNILS
// pepper is (which never rotates: the card digests depend on it too).
func (d *Digester) PairwiseSubject(sector, oid string) string {
	m := hmac.New(sha256.New, d.pairwiseKey)
	m.Write([]byte(sector))
	m.Write([]byte{0})
	m.Write([]byte(oid))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
