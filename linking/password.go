package linking

import (
	"bufio"
	_ "embed"
	"errors"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/esia-broker/esia-broker/passwords"
)

// Argon2Params are the argon2id parameters of children's passwords (passwords.Argon2Params).
type Argon2Params = passwords.Argon2Params

// DefaultArgon2 are the default argon2id parameters (passwords.DefaultArgon2).
func DefaultArgon2() Argon2Params { return passwords.DefaultArgon2() }

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
	ErrPasswordControl = errors.New("password must not contain control characters")
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
	case strings.ContainsFunc(password, unicode.IsControl):
		// ChildLogin refuses them (bcrypt and PBKDF2 read NUL bytes as nothing): the password
		// set is one the child can log in with.
		return ErrPasswordControl
	case strings.EqualFold(strings.TrimSpace(password), login):
		return ErrPasswordIsLogin
	case s.common[strings.ToLower(password)]:
		return ErrPasswordCommon
	}
	return nil
}
