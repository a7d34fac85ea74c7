package passwords

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
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Password hashes that regional systems hand over when a region moves onto the broker
// (children import). A sub-account keeps its password: the imported hash is checked as it is,
// and replaced by the broker's argon2id at the first successful login (NeedsRehash).
//
// At import a hash is parsed and its cost bounded, never computed: one check of an imported
// hash may cost little more than one of the broker's own (the hash gate counts checks, sized by
// the broker's argon2id memory), and a cheap one is weak.
//
//   - argon2id, PHC: $argon2id$v=19$m=…,t=…,p=…$salt$hash: memory at most the broker's
//     own (children.argon2_memory_kib), memory × passes at most twice the broker's, t ≤ 10,
//     p ≤ 16, salt ≥ 8 and key ≥ 16 bytes; below OWASP's minimums (7 MiB, or memory × passes
//     under 35 MiB) it is weak;
//   - bcrypt: $2a$, $2b$, $2y$, cost 4–12 (below 8 weak);
//   - PBKDF2-SHA1/SHA256/SHA512, at least 1,000 iterations (below 10,000 weak) and at most
//     1,000,000 counted in one-block runs (a key longer than the digest runs once per block;
//     SHA-512 counts twice), salt 1–128 and key 16–64 bytes, in the PHC form $pbkdf2-sha256$i=N,l=32$salt$hash, passlib's
//     $pbkdf2-sha256$N$salt$hash (its adapted base64) or Django's pbkdf2_sha256$N$salt$hash;
//   - weak: an unsalted MD5, SHA-1 or SHA-256 in hex, stored as $weak$md5$hex (…sha1, …sha256).
//
// Weak hashes are refused unless the operator accepts them (--accept-weak).

// Hash formats, as the import report and the audit name them.
const (
	FormatArgon2id = "argon2id"
	FormatBcrypt   = "bcrypt"
	FormatPBKDF2   = "pbkdf2"
	FormatWeak     = "weak"
)

// Errors of imported hashes.
var (
	ErrHashUnknown = errors.New("unknown password hash format (argon2id, bcrypt or PBKDF2 expected)")
	ErrHashWeak    = errors.New("weak password hash (unsalted, or too cheap to compute): refused unless --accept-weak")
	ErrHashBounds  = errors.New("password hash parameters out of the accepted range")
)

// Bounds of hashes at login (a backstop for what the database holds) and at import.
const (
	minBcryptCost       = 4
	maxBcryptCost       = 16
	importMaxBcryptCost = 12
	weakBcryptCost      = 8
	minPBKDF2Iter       = 1000
	maxPBKDF2Iter       = 2_000_000
	importMaxPBKDF2Iter = 1_000_000
	weakPBKDF2Iter      = 10_000
	importMaxArgonTime  = 10
	importMaxArgonLanes = 16
)

// ImportHash checks a hash from a regional export and returns it as the broker stores it, with
// its format and whether it is weak. own are the broker's argon2id parameters: an imported
// argon2id hash may not take more memory. Weak hashes are refused unless acceptWeak.
func ImportHash(raw string, acceptWeak bool, own Argon2Params) (stored, format string, weak bool, err error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", "", false, errors.New("password hash is empty")
	}
	if len(raw) > 512 {
		return "", "", false, ErrHashUnknown
	}
	if alg, err := parseWeakHex(raw); err == nil {
		if !acceptWeak {
			return "", "", false, ErrHashWeak
		}
		return "$weak$" + alg + "$" + strings.ToLower(raw), FormatWeak, true, nil
	}
	if strings.HasPrefix(raw, "$weak$") {
		return "", "", false, ErrHashUnknown // only the broker writes this form
	}
	format = HashFormat(raw)
	if format == "" {
		return "", "", false, ErrHashUnknown
	}
	weak, err = importBounds(raw, own)
	if err != nil {
		return "", "", false, err
	}
	if weak && !acceptWeak {
		return "", "", false, ErrHashWeak
	}
	return raw, format, weak, nil
}

// importArgonMemory is the most memory an imported argon2id hash may take: the broker's own
// (the hash gate's memory budget is sized by it).
func importArgonMemory(own Argon2Params) uint32 { return max(own.MemoryKiB, 1024) }

// importBounds parses a hash, checks its cost against the import's bounds and tells whether
// it is weak, without computing it.
func importBounds(encoded string, own Argon2Params) (weak bool, err error) {
	switch HashFormat(encoded) {
	case FormatArgon2id:
		p, salt, key, err := parseArgon2(encoded)
		if err != nil {
			return false, fmt.Errorf("%w: %w", ErrHashUnknown, err)
		}
		if p.MemoryKiB > importArgonMemory(own) || uint64(p.MemoryKiB)*uint64(p.Time) > 2*uint64(importArgonMemory(own))*uint64(max(own.Time, 1)) || p.Threads > importMaxArgonLanes {
			return false, fmt.Errorf("%w: argon2id above m=%d KiB, m×t over twice the broker's own or p over %d costs more than the broker's own check", ErrHashBounds, importArgonMemory(own), importMaxArgonLanes)
		}
		if len(salt) < 8 || len(key) < 16 {
			return false, fmt.Errorf("%w: argon2id salt under 8 or key under 16 bytes", ErrHashBounds)
		}
		return p.MemoryKiB < 7*1024 || uint64(p.MemoryKiB)*uint64(p.Time) < 35*1024, nil
	case FormatBcrypt:
		if err := checkStoredHash(encoded); err != nil {
			return false, err
		}
		cost, _ := bcrypt.Cost([]byte(encoded))
		if cost > importMaxBcryptCost {
			return false, fmt.Errorf("%w: bcrypt cost above %d makes each check too slow", ErrHashBounds, importMaxBcryptCost)
		}
		return cost < weakBcryptCost, nil
	case FormatPBKDF2:
		p, err := parsePBKDF2(encoded)
		if err != nil {
			return false, err
		}
		if p.work() > importMaxPBKDF2Iter {
			return false, fmt.Errorf("%w: PBKDF2 above %d iterations of one SHA-1/SHA-256 block makes each check too slow (a key longer than the digest, or SHA-512, costs more per iteration)", ErrHashBounds, importMaxPBKDF2Iter)
		}
		return p.iter < weakPBKDF2Iter, nil
	}
	return false, ErrHashUnknown
}

// checkStoredHash parses a hash and checks its parameters, without the cost of a check.
func checkStoredHash(encoded string) error {
	switch HashFormat(encoded) {
	case FormatArgon2id:
		_, _, _, err := parseArgon2(encoded)
		return err
	case FormatBcrypt:
		cost, err := bcrypt.Cost([]byte(encoded))
		if err != nil {
			return fmt.Errorf("%w: bcrypt: %w", ErrHashUnknown, err)
		}
		if cost < minBcryptCost || cost > maxBcryptCost {
			return ErrHashBounds
		}
		// bcrypt.Cost reads only the prefix: the salt and hash are 53 characters of its base64.
		if len(encoded) != 60 || strings.Trim(encoded[7:], "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") != "" {
			return fmt.Errorf("%w: malformed bcrypt hash", ErrHashUnknown)
		}
		return nil
	case FormatPBKDF2:
		_, err := parsePBKDF2(encoded)
		return err
	}
	return ErrHashUnknown
}

// HashFormat names the format of a stored hash ("" when none of the accepted ones).
func HashFormat(encoded string) string {
	switch {
	case strings.HasPrefix(encoded, "$argon2id$"):
		return FormatArgon2id
	case strings.HasPrefix(encoded, "$2a$"), strings.HasPrefix(encoded, "$2b$"), strings.HasPrefix(encoded, "$2y$"):
		return FormatBcrypt
	case strings.HasPrefix(encoded, "$pbkdf2"), strings.HasPrefix(encoded, "pbkdf2_"):
		return FormatPBKDF2
	case strings.HasPrefix(encoded, "$weak$"):
		return FormatWeak
	}
	return ""
}

// NeedsRehash tells whether a stored hash is to be replaced by the broker's argon2id (own) at
// the next successful login: any other format, and an argon2id hash with other parameters than
// own (an imported one, or the broker's before its parameters changed) or a short salt or key.
func NeedsRehash(encoded string, own Argon2Params) bool {
	if HashFormat(encoded) != FormatArgon2id {
		return true
	}
	p, salt, key, err := parseArgon2(encoded)
	return err != nil || p != own || len(salt) < 16 || len(key) < 32
}

// VerifyStoredPassword checks password against a stored hash of any accepted format, in
// constant time for the hash's own comparison.
func VerifyStoredPassword(encoded, password string) (bool, error) {
	switch HashFormat(encoded) {
	case FormatArgon2id:
		return VerifyPassword(encoded, password)
	case FormatBcrypt:
		cost, err := bcrypt.Cost([]byte(encoded))
		if err != nil {
			return false, fmt.Errorf("bcrypt hash: %w", err)
		}
		if cost < minBcryptCost || cost > maxBcryptCost {
			return false, ErrHashBounds
		}
		err = bcrypt.CompareHashAndPassword([]byte(encoded), []byte(password))
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword), errors.Is(err, bcrypt.ErrPasswordTooLong):
			return false, nil
		default:
			return false, fmt.Errorf("bcrypt hash: %w", err)
		}
	case FormatPBKDF2:
		p, err := parsePBKDF2(encoded)
		if err != nil {
			return false, err
		}
		got, err := pbkdf2.Key(p.h, password, p.salt, p.iter, len(p.key))
		if err != nil {
			return false, fmt.Errorf("pbkdf2: %w", err)
		}
		return subtle.ConstantTimeCompare(got, p.key) == 1, nil
	case FormatWeak:
		parts := strings.Split(encoded, "$") // "", "weak", alg, hex
		if len(parts) != 4 {
			return false, ErrHashUnknown
		}
		want, err := hex.DecodeString(parts[3])
		if err != nil {
			return false, ErrHashUnknown
		}
		var got []byte
		switch parts[2] {
		case "md5":
			s := md5.Sum([]byte(password))
			got = s[:]
		case "sha1":
			s := sha1.Sum([]byte(password))
			got = s[:]
		case "sha256":
			s := sha256.Sum256([]byte(password))
			got = s[:]
		default:
			return false, ErrHashUnknown
		}
		return subtle.ConstantTimeCompare(got, want) == 1, nil
	}
	return false, ErrHashUnknown
}

// parseWeakHex recognises an unsalted digest in hex by its length.
func parseWeakHex(raw string) (string, error) {
	if _, err := hex.DecodeString(raw); err != nil {
		return "", err
	}
	switch len(raw) {
	case 32:
		return "md5", nil
	case 40:
		return "sha1", nil
	case 64:
		return "sha256", nil
	}
	return "", ErrHashUnknown
}

type pbkdf2Hash struct {
	h    func() hash.Hash
	iter int
	salt []byte
	key  []byte
}

// work is what one check costs, in iterations of one SHA-1 or SHA-256 block: each block of the
// key is a run of its own, and SHA-512 takes about twice as long per iteration.
func (p *pbkdf2Hash) work() int {
	size := p.h().Size()
	blocks := (len(p.key) + size - 1) / size
	w := p.iter * blocks
	if size == sha512.Size {
		w *= 2
	}
	return w
}

// CheaperThanOwn tells whether checking a stored hash costs less than one of the broker's own
// argon2id (own): a wrong password against it is then topped up with a check of the broker's own,
// so the time of an answer does not tell an imported login from one that does not exist.
func CheaperThanOwn(encoded string, own Argon2Params) bool {
	switch HashFormat(encoded) {
	case FormatArgon2id:
		p, _, _, err := parseArgon2(encoded)
		return err == nil && uint64(p.MemoryKiB)*uint64(p.Time) < uint64(own.MemoryKiB)*uint64(own.Time)
	case FormatBcrypt:
		cost, err := bcrypt.Cost([]byte(encoded))
		return err == nil && cost < 11 // cost 11 is about one argon2id of 64 MiB here
	case FormatPBKDF2:
		p, err := parsePBKDF2(encoded)
		return err == nil && p.work() < 250_000
	}
	return true
}

func pbkdf2Alg(name string) func() hash.Hash {
	switch name {
	case "sha1", "":
		return sha1.New
	case "sha256":
		return sha256.New
	case "sha512":
		return sha512.New
	}
	return nil
}

// ab64 is passlib's adapted base64: '.' for '+', no padding.
func ab64(s string) ([]byte, error) {
	return base64.RawStdEncoding.DecodeString(strings.ReplaceAll(strings.TrimRight(s, "="), ".", "+"))
}

// parsePBKDF2 reads the PHC, passlib and Django forms.
func parsePBKDF2(encoded string) (*pbkdf2Hash, error) {
	bad := fmt.Errorf("%w: malformed PBKDF2 hash", ErrHashUnknown)
	p := &pbkdf2Hash{}
	var iterText string
	var err error
	if rest, ok := strings.CutPrefix(encoded, "pbkdf2_"); ok {
		// Django: pbkdf2_sha256$iterations$salt$base64(hash); the salt is used as text.
		parts := strings.Split(rest, "$")
		if len(parts) != 4 || parts[2] == "" {
			return nil, bad
		}
		if p.h = pbkdf2Alg(parts[0]); p.h == nil {
			return nil, bad
		}
		iterText, p.salt = parts[1], []byte(parts[2])
		if p.key, err = base64.StdEncoding.DecodeString(parts[3]); err != nil {
			return nil, bad
		}
	} else {
		parts := strings.Split(encoded, "$") // "", "pbkdf2-sha256", params, salt, hash
		if len(parts) != 5 || parts[0] != "" {
			return nil, bad
		}
		alg, ok := strings.CutPrefix(parts[1], "pbkdf2")
		alg = strings.TrimPrefix(alg, "-")
		if !ok {
			return nil, bad
		}
		if p.h = pbkdf2Alg(alg); p.h == nil {
			return nil, bad
		}
		if strings.HasPrefix(parts[2], "i=") {
			// PHC: i=N[,l=L]; salt and hash in standard base64 without padding.
			for _, kv := range strings.Split(parts[2], ",") {
				k, v, _ := strings.Cut(kv, "=")
				switch k {
				case "i":
					iterText = v
				case "l":
				default:
					return nil, bad
				}
			}
			p.salt, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(parts[3], "="))
			if err != nil {
				return nil, bad
			}
			if p.key, err = base64.RawStdEncoding.DecodeString(strings.TrimRight(parts[4], "=")); err != nil {
				return nil, bad
			}
		} else {
			iterText = parts[2]
			if p.salt, err = ab64(parts[3]); err != nil {
				return nil, bad
			}
			if p.key, err = ab64(parts[4]); err != nil {
				return nil, bad
			}
		}
	}
	if p.iter, err = strconv.Atoi(iterText); err != nil {
		return nil, bad
	}
	if p.iter < minPBKDF2Iter || p.iter > maxPBKDF2Iter || len(p.key) < 16 || len(p.key) > 64 || len(p.salt) == 0 || len(p.salt) > 128 {
		return nil, ErrHashBounds
	}
	return p, nil
}
