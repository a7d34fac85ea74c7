package linking

import (
	"bufio"
	"crypto/rand"
	"crypto/subtle"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"

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

//go:embed common-passwords.txt
var commonPasswordList string

func commonPasswords() map[string]bool {
	out := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(commonPasswordList))
	for sc.Scan() {
		if w := strings.TrimSpace(sc.Text()); w != "" && !strings.HasPrefix(w, "#") {
			out[strings.ToLower(w)] = true
		}
	}
	return out
}

var loginPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{2,31}$`)

// Errors of sub-account logins and passwords; the broker shows them in Russian.
var (
	ErrLoginFormat     = errors.New("login must be 3-32 Latin letters, digits, '.', '_' or '-'")
	ErrPasswordShort   = errors.New("password must have at least 8 characters")
	ErrPasswordLong    = errors.New("password must have at most 128 characters")
	ErrPasswordIsLogin = errors.New("password must differ from the login")
	ErrPasswordCommon  = errors.New("password is too common")
)

// LoginKey is the form a typed login is looked up and limited by: NormalizeLogin's, or, for a
// login a region's import brought (ImportChildren), its own form lower-cased; ok is false when
// the text can be no login at all.
func LoginKey(s string) (key string, ok bool) {
	if l, err := NormalizeLogin(s); err == nil {
		return l, true
	}
	if l := strings.ToLower(strings.TrimSpace(s)); importLoginPattern.MatchString(l) {
		return l, true
	}
	return "", false
}

// NormalizeLogin lower-cases and trims a login and checks its form.
func NormalizeLogin(s string) (string, error) {
	l := strings.ToLower(strings.TrimSpace(s))
	if !loginPattern.MatchString(l) {
		return "", ErrLoginFormat
	}
	return l, nil
}

// CheckPassword applies the password rules.
func (s *Service) CheckPassword(login, password string) error {
	n := utf8.RuneCountInString(password)
	switch {
	case n < 8:
		return ErrPasswordShort
	case n > 128:
		return ErrPasswordLong
	case strings.EqualFold(strings.TrimSpace(password), login):
		return ErrPasswordIsLogin
	case s.common[strings.ToLower(password)]:
		return ErrPasswordCommon
	}
	return nil
}
