package linking

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/esia-broker/esia-broker/clientip"
	"github.com/esia-broker/esia-broker/passwords"
	"github.com/esia-broker/esia-broker/storage"
)

// Errors of children's sub-accounts that the broker shows as pages.
var (
	ErrNotGuardian    = errors.New("only a parent linked to the child may manage the child's login")
	ErrChildTooOld    = errors.New("from 14 the student logs in through ESIA")
	ErrChildExists    = errors.New("the child already has a login")
	ErrNoChildLogin   = errors.New("the child has no login yet")
	ErrLoginTaken     = errors.New("this login is taken")
	ErrBadCredentials = errors.New("wrong login or password")
	ErrNoGuardianLeft = errors.New("no parent is linked to the child any more")
	// ErrPasswordAccountsOff: the region allows only ESIA (children.password_accounts false).
	ErrPasswordAccountsOff = errors.New("login-and-password sub-accounts are switched off in this region")
	// ErrChildDisabled: the sub-account was disabled (by an admin, or moved to the child's own
	// ESIA account).
	ErrChildDisabled = errors.New("the sub-account is disabled")
	// ErrNoOwnESIA: the child has not yet logged in with an own ESIA account.
	ErrNoOwnESIA = errors.New("the child has no own ESIA account linked yet")
)

// MoveChildToESIA ends a child's login-and-password sub-account once the child logs in with an
// own ESIA account: the sub-account is disabled, and with it its sessions, devices and refresh
// families. Any parent linked to the child may do it; it is audited.
func (s *Service) MoveChildToESIA(ctx context.Context, parentID, studentID string) error {
	if _, err := s.guardianOf(ctx, parentID, studentID); err != nil {
		return err
	}
	own, err := s.store.OwnESIALink(ctx, studentID)
	if err != nil {
		return err
	}
	if !own {
		return ErrNoOwnESIA
	}
	c, err := s.store.ChildByStudent(ctx, studentID)
	if errors.Is(err, storage.ErrNotFound) {
		return ErrNoChildLogin
	}
	if err != nil {
		return err
	}
	return s.store.InTx(ctx, func(ctx context.Context) error {
		if err := s.store.SetAccountStatus(ctx, c.AccountID, "disabled"); err != nil {
			return err
		}
		if err := s.store.AppendEvent(ctx, storage.Event{Type: storage.EventChildDisabled, AccountID: c.AccountID, StudentID: studentID,
			Data: map[string]any{"reason": "moved_to_esia"}}); err != nil {
			return err
		}
		return s.store.Audit(ctx, "account:"+parentID, "child.moved_to_esia", studentID, map[string]any{"sub_account": c.AccountID})
	})
}

// DisablePasswordAccounts disables every active sub-account, each with an audit line: a region
// that switched password access off (children.password_accounts false) at start. It returns
// how many it disabled.
func (s *Service) DisablePasswordAccounts(ctx context.Context, actor string) (int, error) {
	all, err := s.store.ChildAccounts(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range all {
		if c.Status != "active" {
			continue
		}
		err := s.store.InTx(ctx, func(ctx context.Context) error {
			if err := s.store.SetAccountStatus(ctx, c.AccountID, "disabled"); err != nil {
				return err
			}
			if err := s.store.AppendEvent(ctx, storage.Event{Type: storage.EventChildDisabled, AccountID: c.AccountID, StudentID: c.StudentID,
				Data: map[string]any{"reason": "password_accounts_off"}}); err != nil {
				return err
			}
			return s.store.Audit(ctx, actor, "child.disabled", c.StudentID, map[string]any{"sub_account": c.AccountID, "reason": "children.password_accounts is off"})
		})
		if err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// ChildLockedError tells until when child logins are locked.
type ChildLockedError struct{ Until time.Time }

func (e *ChildLockedError) Error() string {
	return "too many wrong passwords until " + e.Until.Format(time.RFC3339)
}

// childMayUse tells whether a card's child is under 14 (with grace days) on now.
func (s *Service) childMayUse(st *storage.Student) bool {
	return !IsAdult(st.Birthdate, s.now().AddDate(0, 0, -s.children.GraceDays))
}

// guardianOf checks that parentID may act as a parent and has an active parent link to the
// student.
func (s *Service) guardianOf(ctx context.Context, parentID, studentID string) (*storage.Student, error) {
	if err := s.mayBeParent(ctx, parentID); err != nil {
		return nil, err
	}
	gl, err := s.store.GuardianLinks(ctx, studentID)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(gl, func(l storage.Link) bool { return l.AccountID == parentID }) {
		return nil, ErrNotGuardian
	}
	st, err := s.store.Student(ctx, studentID)
	if err != nil {
		return nil, err
	}
	if !st.Active {
		return nil, ErrStudentLeft
	}
	return st, nil
}

// hash computes a password hash under the hash gate.
func (s *Service) hash(ctx context.Context, password string) (string, error) {
	release, err := s.gate.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	return passwords.HashPassword(password, s.children.Argon2)
}

// CreateChildLogin makes a sub-account for a linked child under 14. Any parent linked to the
// child may do it; the creator is recorded. A login that is taken counts against the parent
// (CreatePerAccount), so that the form is no oracle for probing which logins exist.
func (s *Service) CreateChildLogin(ctx context.Context, parentID, studentID, login, password string) (string, error) {
	if s.children.PasswordAccountsOff {
		return "", ErrPasswordAccountsOff
	}
	st, err := s.guardianOf(ctx, parentID, studentID)
	if err != nil {
		return "", err
	}
	if !s.childMayUse(st) {
		return "", ErrChildTooOld
	}
	if _, err := s.store.ChildByStudent(ctx, studentID); err == nil {
		return "", ErrChildExists
	} else if !errors.Is(err, storage.ErrNotFound) {
		return "", err
	}
	l, err := NormalizeLogin(login)
	if err != nil {
		return "", err
	}
	if err := s.CheckPassword(l, password); err != nil {
		return "", err
	}
	tries := storage.LimitKey{Key: "child:create:" + parentID, Limit: s.children.CreatePerAccount}
	if until, err := s.store.ReserveAttempt(ctx, tries); err != nil {
		return "", err
	} else if !until.IsZero() {
		return "", &ChildLockedError{Until: until}
	}
	hash, err := s.hash(ctx, password)
	if err != nil {
		return "", err
	}
	err = s.store.InTx(ctx, func(ctx context.Context) error {
		a := &storage.Account{FamilyName: st.FamilyName, GivenName: st.GivenName, MiddleName: st.MiddleName, Birthdate: st.Birthdate}
		if err := s.store.CreateChild(ctx, a, &storage.ChildCredential{StudentID: studentID, Login: l, PasswordHash: hash, CreatedBy: parentID}); err != nil {
			if errors.Is(err, storage.ErrConflict) {
				return ErrLoginTaken
			}
			return err
		}
		if err := s.store.AppendEvent(ctx, storage.Event{Type: storage.EventChildCreated, AccountID: a.ID, StudentID: studentID,
			Data: map[string]any{"parent": parentID}}); err != nil {
			return err
		}
		return s.store.Audit(ctx, "account:"+parentID, "child.create", studentID, nil)
	})
	switch {
	case errors.Is(err, ErrLoginTaken):
		// Visible to operators: a parent who keeps hitting taken logins may be probing for them.
		if aerr := s.store.Audit(ctx, "account:"+parentID, "child.create_login_taken", studentID, nil); aerr != nil {
			return "", aerr
		}
		if until, ferr := s.store.Failed(ctx, tries); ferr != nil {
			return "", ferr
		} else if !until.IsZero() {
			return "", &ChildLockedError{Until: until}
		}
	case err == nil:
		// Only taken logins count; a login made refunds its attempt.
		if err := s.store.Succeeded(ctx, tries.Key); err != nil {
			return "", err
		}
	}
	return l, err
}

// ResetChildPassword sets a new password for a child's sub-account.
func (s *Service) ResetChildPassword(ctx context.Context, parentID, studentID, password string) error {
	if s.children.PasswordAccountsOff {
		return ErrPasswordAccountsOff
	}
	if _, err := s.guardianOf(ctx, parentID, studentID); err != nil {
		return err
	}
	c, err := s.store.ChildByStudent(ctx, studentID)
	if errors.Is(err, storage.ErrNotFound) {
		return ErrNoChildLogin
	}
	if err != nil {
		return err
	}
	if err := s.CheckPassword(c.Login, password); err != nil {
		return err
	}
	hash, err := s.hash(ctx, password)
	if err != nil {
		return err
	}
	return s.store.InTx(ctx, func(ctx context.Context) error {
		if err := s.store.SetChildPassword(ctx, c.AccountID, hash, parentID); err != nil {
			return err
		}
		return s.store.Audit(ctx, "account:"+parentID, "child.reset_password", studentID, nil)
	})
}

// childLimitKeys are the attempt limits of a child login from source src (clientip.Key).
// A known device (a browser the login succeeded in before) is not slowed down by the login's
// limit from everywhere, so strangers guessing from many sources cannot keep the child out.
func (s *Service) childLimitKeys(login string, loginOK bool, src string, knownDevice bool) []storage.LimitKey {
	keys := []storage.LimitKey{{Key: "child:ip:" + src, Limit: s.children.PerIP}}
	if loginOK {
		keys = append(keys, storage.LimitKey{Key: "child:login:" + login + ":src:" + src, Limit: s.children.PerLogin})
		if !knownDevice {
			keys = append(keys, storage.LimitKey{Key: "child:login:" + login, Limit: s.children.PerLoginAll})
		}
	}
	return keys
}

// ChildLogin checks a child's login and password. Each attempt is reserved against the limits
// (per login and source, per source, per login from everywhere) before the password is
// checked, so that concurrent guesses are counted one by one; the error does not tell whether
// the login exists. knownDevice says the browser proved an earlier success for this login (the
// broker's device cookie): the login's limit from everywhere then does not apply. Password
// checks run under the hash gate (ErrBusy past it). From the 14th
// birthday (plus grace days), when the card is inactive and when no parent link remains, the
// sub-account no longer logs in.
func (s *Service) ChildLogin(ctx context.Context, login, password, ip string, knownDevice bool) (accountID string, err error) {
	if s.children.PasswordAccountsOff {
		return "", ErrPasswordAccountsOff
	}
	l, valid := LoginKey(login)
	keys := s.childLimitKeys(l, valid, clientip.Key(ip), knownDevice)
	release, err := s.gate.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer release()
	until, err := s.store.ReserveAttempt(ctx, keys...)
	if err != nil {
		return "", err
	}
	if !until.IsZero() {
		return "", &ChildLockedError{Until: until}
	}
	fail := func() (string, error) {
		until, err := s.store.Failed(ctx, keys...)
		if err != nil {
			return "", err
		}
		if !until.IsZero() {
			if err := s.store.Audit(ctx, "ip:"+ip, "child.lockout", "", nil); err != nil {
				return "", err
			}
			return "", &ChildLockedError{Until: until}
		}
		return "", ErrBadCredentials
	}
	var c *storage.ChildCredential
	if valid {
		c, err = s.store.ChildByLogin(ctx, l)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return "", err
		}
	}
	if c == nil || password == "" || strings.ContainsFunc(password, unicode.IsControl) {
		// Spend the same time as a real check, so timing does not tell which logins exist. An
		// empty password, or one with a control character, never logs in, whatever hash a
		// region's import brought: bcrypt and PBKDF2 read "", "\x00" and "\x00\x00" alike.
		_, _ = s.verify(s.dummyHash(), password)
		return fail()
	}
	ok, err := s.verify(c.PasswordHash, password)
	if err != nil {
		return "", fmt.Errorf("check child password: %w", err)
	}
	if !ok {
		if passwords.CheaperThanOwn(c.PasswordHash, s.children.Argon2) {
			// An imported hash may be much cheaper than the broker's own: a wrong password
			// costs at least a check of the broker's own, as for a login that does not exist.
			_, _ = s.verify(s.dummyHash(), password)
		}
		return fail()
	}
	// A success refunds only this login's attempts, never the source's.
	for _, k := range keys[1:] {
		if err := s.store.Succeeded(ctx, k.Key); err != nil {
			return "", err
		}
	}
	if a, err := s.store.Account(ctx, c.AccountID); err != nil {
		return "", err
	} else if a.Status != "active" {
		return "", ErrChildDisabled
	}
	if err := s.ChildMayLogIn(ctx, c.StudentID); err != nil {
		if errors.Is(err, ErrChildTooOld) {
			if aerr := s.store.Audit(ctx, "account:"+c.AccountID, "child.age_cutoff", c.StudentID, nil); aerr != nil {
				return "", aerr
			}
		}
		return "", err
	}
	// Not a bcrypt hash checked against more than its 72 bytes: bcrypt read only those, and a
	// re-hash of the longer text typed would lock the child out of the real password.
	if passwords.NeedsRehash(c.PasswordHash, s.children.Argon2) && (passwords.HashFormat(c.PasswordHash) != passwords.FormatBcrypt || len(password) <= 72) {
		if err := s.rehash(ctx, c, password); err != nil {
			return "", err
		}
	}
	return c.AccountID, s.store.Audit(ctx, "account:"+c.AccountID, "child.login", c.StudentID, nil)
}

// rehash replaces an imported hash by the broker's argon2id after a successful login, unless
// a parent set a new password meanwhile.
func (s *Service) rehash(ctx context.Context, c *storage.ChildCredential, password string) error {
	ms, err := s.migrationStore()
	if err != nil {
		return err
	}
	h, err := passwords.HashPassword(password, s.children.Argon2)
	if err != nil {
		return err
	}
	done, err := ms.RehashChildPassword(ctx, c.AccountID, c.PasswordHash, h)
	if err != nil || !done {
		return err
	}
	return s.store.Audit(ctx, "account:"+c.AccountID, "child.rehash", c.StudentID, map[string]any{"from": passwords.HashFormat(c.PasswordHash)})
}

func (s *Service) dummyHash() string {
	s.dummyMu.Lock()
	defer s.dummyMu.Unlock()
	if s.dummy == "" {
		s.dummy, _ = passwords.HashPassword("dummy-password-for-timing", s.children.Argon2)
	}
	return s.dummy
}
