package linking

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/esia-broker/esia-broker/storage"
)

// ParentAge is the age from which an account may be linked to a student as a parent or
// manage a child's login.
const ParentAge = 18

// Errors of who may hold a link; the broker explains each on a page.
var (
	ErrChildAccount   = errors.New("a child's sub-account cannot link students or manage logins")
	ErrNoBirthdate    = errors.New("the account's birth date is not known")
	ErrNotAdult       = errors.New("only an adult may be linked as a parent")
	ErrNotThisStudent = errors.New("the account's birth date differs from the student's card")
	ErrAccountOff     = errors.New("the account is not active")
)

// MayLink tells whether account a may hold a link of relation ("parent" or "self") to student
// st on day today: never a child's sub-account or an inactive account; a parent only an adult
// by the birth date ESIA gave (none known: refused); self only the student, by the card's birth
// date.
func MayLink(a *storage.Account, st *storage.Student, relation string, today time.Time) error {
	if a.Kind == "child" {
		return ErrChildAccount
	}
	if a.Status != "active" {
		return ErrAccountOff
	}
	switch relation {
	case "parent":
		if a.Birthdate == "" {
			return ErrNoBirthdate
		}
		age, err := Age(a.Birthdate, today)
		if err != nil {
			return ErrNoBirthdate
		}
		if age < ParentAge {
			return ErrNotAdult
		}
		return nil
	case "self":
		if a.Birthdate == "" {
			return ErrNoBirthdate
		}
		if st == nil || a.Birthdate != st.Birthdate {
			return ErrNotThisStudent
		}
		return nil
	}
	return fmt.Errorf("unknown relation %q", relation)
}

// mayBeParent checks, before anything is spent, that accountID may act as a parent.
func (s *Service) mayBeParent(ctx context.Context, accountID string) error {
	a, err := s.store.Account(ctx, accountID)
	if err != nil {
		return fmt.Errorf("read account: %w", err)
	}
	return MayLink(a, nil, "parent", s.now())
}

// ChildMayLogIn tells whether the sub-account of child credential c may still be used now:
// password accounts allowed in the region, its card active, the child under 14 (with grace
// days), a parent still linked. The broker asks
// at every refresh and authorization, so that the end of a right ends access at once.
func (s *Service) ChildMayLogIn(ctx context.Context, studentID string) error {
	if s.children.PasswordAccountsOff {
		return ErrPasswordAccountsOff
	}
	st, err := s.store.Student(ctx, studentID)
	if err != nil {
		return err
	}
	if !st.Active {
		return ErrStudentLeft
	}
	if !s.childMayUse(st) {
		return ErrChildTooOld
	}
	gl, err := s.store.GuardianLinks(ctx, studentID)
	if err != nil {
		return err
	}
	if len(gl) == 0 {
		return ErrNoGuardianLeft
	}
	return nil
}
