package linking

import (
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"regexp"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Password hashes of the regional systems a region moves in from (esia-broker children import).
// They are verified as they are and replaced by the broker's argon2id at the child's first
// successful login. Unsalted digests (MD5, SHA-1, SHA-256 as hex) are weak: imported only when
// the operator says so, tagged "$weak$ALG$HEX" in the store.

// Hash formats a stored child password may have.
const (
	FormatArgon2id = "argon2id"
	FormatBcrypt   = "bcrypt"
	FormatPBKDF2   = "pbkdf2"
	FormatWeak     = "weak"
)

// The work a stored hash may ask for: it is data, and a check must not take unbounded time.
const (
	minPBKDF2Iterations = 1000
	maxPBKDF2Iterations = 10_000_000
	minBcryptCost       = 8
)

// ErrWeakHash is returned by ImportHash for an unsalted digest or a hash with too little work,
// unless weak ones are accepted.
var ErrWeakHash = errors.New("a weak hash (unsalted MD5/SHA-1/SHA-256, bcrypt below cost 8 or PBKDF2 below 1000 iterations)")

var (
	passlibPBKDF2 = regexp.MustCompile(`^\$pbkdf2(-sha256|-sha512)?\$(\d+)\$([A-Za-z0-9./]+)\$([A-Za-z0-9./]+)$`)
	phcPBKDF2     = regexp.MustCompile(`^\$pbkdf2-(sha256|sha512|sha1)\$i=(\d+)(?:,l=\d+)?\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$`)
	djangoPBKDF2  = regexp.MustCompile(`^pbkdf2_(sha256|sha1)\$(\d+)\$([^$]+)\$([A-Za-z0-9+/]+=*)$`)
	weakTagged    = regexp.MustCompile(`^\$weak\$(md5|sha1|sha256)\$([0-9a-f]+)$`)
	hexDigest     = regexp.MustCompile(`^[0-9a-fA-F]+$`)
)

// ImportHash checks a password hash from a regional system and returns it as the broker stores
// it, with its format. A weak one is ErrWeakHash unless acceptWeak; then it is returned tagged,
// with weak true.
func ImportHash(h string, acceptWeak bool) (stored, format string, weak bool, err error) {
	h = strings.TrimSpace(h)
	switch {
	case h == "":
		return "", "", false, errors.New("empty hash")
	case strings.HasPrefix(h, "$weak$"):
		return "", "", false, errors.New("unknown hash format")
	case hexDigest.MatchString(h) && (len(h) == 32 || len(h) == 40 || len(h) == 64):
		if !acceptWeak {
			return "", "", false, ErrWeakHash
		}
		alg := map[int]string{32: "md5", 40: "sha1", 64: "sha256"}[len(h)]
		return "$weak$" + alg + "$" + strings.ToLower(h), FormatWeak, true, nil
	}
	format, weak, err = classify(h)
	if err != nil {
		return "", "", false, err
	}
	if weak && !acceptWeak {
		return "", "", false, ErrWeakHash
	}
	return h, format, weak, nil
}

// classify recognises a stored hash, checks that it can be verified within bounds, and tells
// whether it is weak.
func classify(h string) (format string, weak bool, err error) {
	switch {
	case strings.HasPrefix(h, "$argon2id$"):
		if _, err := VerifyPassword(h, ""); err != nil {
			return "", false, err
		}
		return FormatArgon2id, false, nil
	case strings.HasPrefix(h, "$2a$"), strings.HasPrefix(h, "$2b$"), strings.HasPrefix(h, "$2y$"):
		cost, err := bcrypt.Cost([]byte(h))
		if err != nil || len(h) != 60 {
			return "", false, errors.New("not a valid bcrypt hash")
		}
		return FormatBcrypt, cost < minBcryptCost, nil
	case weakTagged.MatchString(h):
		return FormatWeak, true, nil
	}
	p, err := parsePBKDF2(h)
	if err != nil {
		return "", false, err
	}
	return FormatPBKDF2, p.iter < minPBKDF2Iterations, nil
}

type pbkdf2Hash struct {
	h          func() hash.Hash
	iter       int
	salt, want []byte
}

// parsePBKDF2 reads the PBKDF2 forms in use: passlib's $pbkdf2-sha256$ROUNDS$SALT$HASH (its
// "adapted" base64), the PHC form $pbkdf2-sha256$i=ROUNDS$SALT$HASH, and Django's
// pbkdf2_sha256$ROUNDS$SALT$HASH.
func parsePBKDF2(h string) (*pbkdf2Hash, error) {
	algs := map[string]func() hash.Hash{"": sha1.New, "-sha256": sha256.New, "-sha512": sha512.New, "sha256": sha256.New, "sha512": sha512.New, "sha1": sha1.New}
	ab64 := func(s string) ([]byte, error) { return base64.RawStdEncoding.DecodeString(strings.ReplaceAll(s, ".", "+")) }
	var p pbkdf2Hash
	var rounds string
	var err1, err2 error
	switch {
	case passlibPBKDF2.MatchString(h):
		m := passlibPBKDF2.FindStringSubmatch(h)
		p.h, rounds = algs[m[1]], m[2]
		p.salt, err1 = ab64(m[3])
		p.want, err2 = ab64(m[4])
	case phcPBKDF2.MatchString(h):
		m := phcPBKDF2.FindStringSubmatch(h)
		p.h, rounds = algs[m[1]], m[2]
		p.salt, err1 = base64.RawStdEncoding.DecodeString(m[3])
		p.want, err2 = base64.RawStdEncoding.DecodeString(m[4])
	case djangoPBKDF2.MatchString(h):
		m := djangoPBKDF2.FindStringSubmatch(h)
		p.h, rounds = algs[m[1]], m[2]
		p.salt = []byte(m[3])
		p.want, err2 = base64.StdEncoding.DecodeString(m[4])
	default:
		return nil, errors.New("unknown hash format (argon2id, bcrypt and PBKDF2 are read; unsalted MD5/SHA-1/SHA-256 only with --accept-weak)")
	}
	if err1 != nil || err2 != nil || len(p.want) < 16 || len(p.want) > 64 || len(p.salt) == 0 {
		return nil, errors.New("not a valid PBKDF2 hash")
	}
	iter, err := strconv.Atoi(rounds)
	if err != nil || iter < 1 || iter > maxPBKDF2Iterations {
		return nil, fmt.Errorf("PBKDF2 iterations must be 1 to %d", maxPBKDF2Iterations)
	}
	p.iter = iter
	return &p, nil
}

// VerifyStoredPassword checks a password against a stored hash of any format ImportHash takes
// (the broker's own argon2id among them), in constant time for the comparison.
func VerifyStoredPassword(encoded, password string) (bool, error) {
	switch {
	case strings.HasPrefix(encoded, "$argon2id$"):
		return VerifyPassword(encoded, password)
	case strings.HasPrefix(encoded, "$2a$"), strings.HasPrefix(encoded, "$2b$"), strings.HasPrefix(encoded, "$2y$"):
		err := bcrypt.CompareHashAndPassword([]byte(encoded), []byte(password))
		if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			return false, nil
		}
		return err == nil, err
	case weakTagged.MatchString(encoded):
		m := weakTagged.FindStringSubmatch(encoded)
		var sum []byte
		switch m[1] {
		case "md5":
			s := md5.Sum([]byte(password))
			sum = s[:]
		case "sha1":
			s := sha1.Sum([]byte(password))
			sum = s[:]
		default:
			s := sha256.Sum256([]byte(password))
			sum = s[:]
		}
		return subtle.ConstantTimeCompare([]byte(hex.EncodeToString(sum)), []byte(m[2])) == 1, nil
	}
	p, err := parsePBKDF2(encoded)
	if err != nil {
		return false, err
	}
	got, err := pbkdf2.Key(p.h, password, p.salt, p.iter, len(p.want))
	if err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(got, p.want) == 1, nil
}

// NeedsRehash tells whether a stored hash is not the broker's argon2id: it is replaced at the
// next successful login.
func NeedsRehash(encoded string) bool { return !strings.HasPrefix(encoded, "$argon2id$") }

// HashFormatOf names the format of a stored hash (for the audit line of a rehash).
func HashFormatOf(encoded string) string {
	f, _, err := classify(encoded)
	if err != nil {
		return "unknown"
	}
	return f
}
