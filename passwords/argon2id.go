// Package passwords hashes and checks the passwords of children's sub-accounts: the broker's own
// argon2id, and the formats a region's earlier system hands over (bcrypt, PBKDF2, argon2id from
// elsewhere, and, when the operator accepts them, unsalted digests), which are checked as they
// are until a successful login replaces them.
package passwords

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"

	"golang.org/x/crypto/argon2"
)

// Argon2Params are the argon2id parameters of child passwords; the hash records them, so they
// can change without invalidating stored hashes.
type Argon2Params struct {
	Time      uint32
	MemoryKiB uint32
	Threads   uint8
}

// DefaultArgon2 is argon2id with 64 MiB, one pass and 2 lanes: above OWASP's minimum for one
// pass (Password Storage Cheat Sheet: 46 MiB, t=1, p=1), sized so one check costs tens of
// milliseconds on this 2-core machine (about 60 ms, BenchmarkChildLogin; t=3 costs about
// 140 ms). These are not RFC 9106's recommended parameters (its options are t=1 with 2 GiB,
// and t=3 with 64 MiB and 4 lanes). The hash records its parameters, so they can be raised
// later without invalidating stored hashes. The configuration refuses anything below OWASP's
// minimums outside dev (config.ArgonMinMemoryKiB).
func DefaultArgon2() Argon2Params { return Argon2Params{Time: 1, MemoryKiB: 64 * 1024, Threads: 2} }

// HashPassword returns the PHC string $argon2id$v=19$m=…,t=…,p=…$salt$hash.
func HashPassword(password string, p Argon2Params) (string, error) {
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, 32)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

var phc = regexp.MustCompile(`^\$argon2id\$v=19\$m=(\d+),t=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$`)

// The argon2id parameters a stored hash may carry: a hash is data (imported from a regional
// system, or tampered with), and its parameters decide how much memory and time one check takes.
const (
	maxArgon2MemoryKiB = 1 << 22 // 4 GiB
	maxArgon2Time      = 100
	maxArgon2Threads   = 64
)

// checkArgon2 refuses parameters out of range; a time of 0 would make argon2 panic.
func checkArgon2(mem, t, par uint64) error {
	if mem == 0 || mem > maxArgon2MemoryKiB || t == 0 || t > maxArgon2Time || par == 0 || par > maxArgon2Threads {
		return errors.New("argon2id parameters out of range")
	}
	return nil
}

// VerifyPassword checks a password against a PHC string, in constant time.
func VerifyPassword(encoded, password string) (bool, error) {
	p, salt, want, err := parseArgon2(encoded)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

// parseArgon2 reads a PHC argon2id string and checks its parameters.
func parseArgon2(encoded string) (p Argon2Params, salt, key []byte, err error) {
	m := phc.FindStringSubmatch(encoded)
	if m == nil {
		return p, nil, nil, errors.New("not an argon2id hash")
	}
	var t, mem, par uint64
	if _, err := fmt.Sscan(m[1], &mem); err != nil {
		return p, nil, nil, err
	}
	if _, err := fmt.Sscan(m[2], &t); err != nil {
		return p, nil, nil, err
	}
	if _, err := fmt.Sscan(m[3], &par); err != nil {
		return p, nil, nil, err
	}
	if err := checkArgon2(mem, t, par); err != nil {
		return p, nil, nil, err
	}
	p = Argon2Params{Time: uint32(t), MemoryKiB: uint32(mem), Threads: uint8(par)}
	salt, err1 := base64.RawStdEncoding.DecodeString(m[4])
	key, err2 := base64.RawStdEncoding.DecodeString(m[5])
	if err1 != nil || err2 != nil || len(key) == 0 {
		return p, nil, nil, errors.New("bad argon2id hash encoding")
	}
	return p, salt, key, nil
}
