package linking

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

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
)

// ChildLockedError tells until when child logins are locked.
type ChildLockedError struct{ Until time.Time }

func (e *ChildLockedError) Error() string {
	return "too many wrong passwords until " + e.Until.Format(time.RFC3339)
}

// childMayUse tells whether a card's child is under 14 (with grace days) on now.
func (s *Service) childMayUse(st *storage.Student) bool {
	return !IsAdult(st.Birthdate, s.now().AddDate(0, 0, -s.children.GraceDays))
}

// guardianOf checks that parentID has an active parent link to the student.
func (s *Service) guardianOf(ctx context.Context, parentID, studentID string) (*storage.Student, error) {
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

// CreateChildLogin makes a sub-account for a linked child under 14. Any parent linked to the
// child may do it; the creator is recorded.
func (s *Service) CreateChildLogin(ctx context.Context, parentID, studentID, login, password string) (string, error) {
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
	hash, err := HashPassword(password, s.children.Argon2)
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
		return s.store.Audit(ctx, "account:"+parentID, "child.create", studentID, nil)
	})
	return l, err
}

// ResetChildPassword sets a new password for a child's sub-account.
func (s *Service) ResetChildPassword(ctx context.Context, parentID, studentID, password string) error {
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
	hash, err := HashPassword(password, s.children.Argon2)
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

// ChildLogin checks a child's login and password. Wrong passwords count per login and per IP;
// the error does not tell whether the login exists. From the 14th birthday (plus grace days)
// and when no parent link remains, the sub-account no longer logs in.
func (s *Service) ChildLogin(ctx context.Context, login, password, ip string) (accountID string, err error) {
	l, lerr := NormalizeLogin(login)
	keys := []struct {
		key string
		lim storage.AttemptLimit
	}{{"child:ip:" + ip, s.children.PerIP}}
	if lerr == nil {
		keys = append(keys, struct {
			key string
			lim storage.AttemptLimit
		}{"child:login:" + l, s.children.PerLogin})
	}
	for _, k := range keys {
		until, err := s.store.LockedUntil(ctx, k.key)
		if err != nil {
			return "", err
		}
		if !until.IsZero() {
			return "", &ChildLockedError{Until: until}
		}
	}
	fail := func() (string, error) {
		var until time.Time
		for _, k := range keys {
			u, err := s.store.RecordFailure(ctx, k.key, k.lim)
			if err != nil {
				return "", err
			}
			if u.After(until) {
				until = u
			}
		}
		if !until.IsZero() {
			_ = s.store.Audit(ctx, "ip:"+ip, "child.lockout", "", nil)
			return "", &ChildLockedError{Until: until}
		}
		return "", ErrBadCredentials
	}
	var c *storage.ChildCredential
	if lerr == nil {
		c, err = s.store.ChildByLogin(ctx, l)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return "", err
		}
	}
	if c == nil {
		// Spend the same time as a real check, so timing does not tell which logins exist.
		_, _ = VerifyPassword(s.dummyHash(), password)
		return fail()
	}
	ok, err := VerifyPassword(c.PasswordHash, password)
	if err != nil {
		return "", fmt.Errorf("check child password: %w", err)
	}
	if !ok {
		return fail()
	}
	_ = s.store.ClearFailures(ctx, "child:login:"+l)
	st, err := s.store.Student(ctx, c.StudentID)
	if err != nil {
		return "", err
	}
	if !st.Active {
		return "", ErrStudentLeft
	}
	if !s.childMayUse(st) {
		_ = s.store.Audit(ctx, "account:"+c.AccountID, "child.age_cutoff", c.StudentID, nil)
		return "", ErrChildTooOld
	}
	gl, err := s.store.GuardianLinks(ctx, c.StudentID)
	if err != nil {
		return "", err
	}
	if len(gl) == 0 {
		return "", ErrNoGuardianLeft
	}
	return c.AccountID, s.store.Audit(ctx, "account:"+c.AccountID, "child.login", c.StudentID, nil)
}

func (s *Service) dummyHash() string {
	s.dummyMu.Lock()
	defer s.dummyMu.Unlock()
	if s.dummy == "" {
		s.dummy, _ = HashPassword("dummy-password-for-timing", s.children.Argon2)
	}
	return s.dummy
}
