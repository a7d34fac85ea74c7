package linking

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/esia-broker/esia-broker/invites"
	"github.com/esia-broker/esia-broker/storage"
)

// Store is what linking needs of the database.
type Store interface {
	InTx(ctx context.Context, fn func(ctx context.Context) error) error
	Schools(ctx context.Context) ([]storage.School, error)
	Student(ctx context.Context, id string) (*storage.Student, error)
	UpsertStudent(ctx context.Context, st *storage.Student, guardians []storage.Guardian) (bool, error)
	SetStudentActive(ctx context.Context, id string, active bool) (bool, error)
	StudentsForSNILS(ctx context.Context, digest string) (parents, own []storage.Student, err error)
	AddLink(ctx context.Context, accountID, studentID, relation, method string) (bool, error)
	RevokeLink(ctx context.Context, id string) (bool, error)
	Links(ctx context.Context, accountID string, all bool) ([]storage.Link, error)
	Audit(ctx context.Context, actor, action, target string, details map[string]any) error
	GuardianLinks(ctx context.Context, studentID string) ([]storage.Link, error)
	ChildByLogin(ctx context.Context, login string) (*storage.ChildCredential, error)
	ChildByStudent(ctx context.Context, studentID string) (*storage.ChildCredential, error)
	CreateChild(ctx context.Context, a *storage.Account, c *storage.ChildCredential) error
	SetChildPassword(ctx context.Context, accountID, hash, by string) error
	LockedUntil(ctx context.Context, key string) (time.Time, error)
	RecordFailure(ctx context.Context, key string, l storage.AttemptLimit) (time.Time, error)
	ClearFailures(ctx context.Context, key string) error
}

// Service applies the linking rules.
type Service struct {
	store    Store
	digester *Digester
	invites  *invites.Service
	now      func() time.Time
	common   map[string]bool
	children ChildOptions

	dummyMu sync.Mutex
	dummy   string
}

// ChildOptions tune children's sub-accounts.
type ChildOptions struct {
	Argon2 Argon2Params
	// GraceDays lets a sub-account log in this many days past the 14th birthday.
	GraceDays int
	// PerLogin and PerIP limit wrong passwords.
	PerLogin storage.AttemptLimit
	PerIP    storage.AttemptLimit
}

// DefaultChildOptions: RFC 9106 parameters, no grace, 5 wrong passwords per login and 30 per IP
// in 15 minutes lock for 15 minutes.
func DefaultChildOptions() ChildOptions {
	return ChildOptions{
		Argon2:   DefaultArgon2(),
		PerLogin: storage.AttemptLimit{Max: 5, Window: 15 * time.Minute, Lockout: 15 * time.Minute},
		PerIP:    storage.AttemptLimit{Max: 30, Window: 15 * time.Minute, Lockout: 15 * time.Minute},
	}
}

// NewService makes the linking service with default child options.
func NewService(store Store, d *Digester, inv *invites.Service) *Service {
	return &Service{store: store, digester: d, invites: inv, now: time.Now, common: commonPasswords(), children: DefaultChildOptions()}
}

// SetChildOptions replaces the child sub-account options.
func (s *Service) SetChildOptions(o ChildOptions) {
	s.dummyMu.Lock()
	s.children, s.dummy = o, ""
	s.dummyMu.Unlock()
}

// SetClock replaces the clock (tests).
func (s *Service) SetClock(now func() time.Time) { s.now = now }

// Digester gives the SNILS digester.
func (s *Service) Digester() *Digester { return s.digester }

// Changes counts what an automatic resolution did.
type Changes struct {
	Added   int
	Revoked int
}

// Resolve re-checks an account's SNILS links at login: a guardian SNILS on active cards links as
// parent to all those students, the student's own SNILS links as self from 14; SNILS links that
// no longer match are revoked; links made by code or by the diary stay. A login without SNILS
// (scope not granted) changes nothing.
func (s *Service) Resolve(ctx context.Context, accountID, snils string) (Changes, error) {
	var ch Changes
	if snils == "" {
		return ch, nil
	}
	d, err := s.digester.SNILS(snils)
	if err != nil {
		return ch, nil // ESIA sent a SNILS we cannot read: nothing to match
	}
	err = s.store.InTx(ctx, func(ctx context.Context) error {
		type want struct{ relation string }
		wanted := map[string]want{}
		parents, selves, err := s.store.StudentsForSNILS(ctx, d)
		if err != nil {
			return err
		}
		for _, st := range parents {
			wanted[st.ID] = want{"parent"}
		}
		today := s.now()
		for _, st := range selves {
			if IsAdult(st.Birthdate, today) {
				wanted[st.ID] = want{"self"}
			}
		}
		links, err := s.store.Links(ctx, accountID, false)
		if err != nil {
			return err
		}
		have := map[string]bool{}
		for _, l := range links {
			have[l.StudentID] = true
			if l.Method != "snils" {
				continue
			}
			if w, ok := wanted[l.StudentID]; !ok || w.relation != l.Relation {
				if ok2, err := s.store.RevokeLink(ctx, l.ID); err != nil {
					return err
				} else if ok2 {
					ch.Revoked++
					delete(have, l.StudentID)
					if err := s.store.Audit(ctx, "account:"+accountID, "link.revoke", l.StudentID, map[string]any{"method": "snils", "reason": "snils no longer on the card"}); err != nil {
						return err
					}
				}
			}
		}
		for id, w := range wanted {
			if have[id] {
				continue
			}
			added, err := s.store.AddLink(ctx, accountID, id, w.relation, "snils")
			if err != nil {
				return err
			}
			if added {
				ch.Added++
				if err := s.store.Audit(ctx, "account:"+accountID, "link.add", id, map[string]any{"method": "snils", "relation": w.relation}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return ch, err
}

// Errors of code redemption that the person may see.
var (
	ErrTooYoung      = errors.New("student codes are for students of 14 and over")
	ErrStudentLeft   = errors.New("the student is no longer in the school's roster")
	ErrAlreadyLinked = errors.New("this child is already linked to the account")
)

// RedeemCode spends an invite code for the account and links it to the code's student.
func (s *Service) RedeemCode(ctx context.Context, accountID, code, role, ip string) (*storage.Student, error) {
	in, err := s.invites.Redeem(ctx, code, role, accountID, ip)
	if err != nil {
		return nil, err
	}
	st, err := s.store.Student(ctx, in.StudentID)
	if err != nil {
		return nil, err
	}
	refuse := func(e error) (*storage.Student, error) {
		if err := s.invites.GiveBack(ctx, in.ID); err != nil {
			return nil, fmt.Errorf("give back invite: %w", err)
		}
		return nil, e
	}
	if !st.Active {
		return refuse(ErrStudentLeft)
	}
	relation := "parent"
	if role == invites.RoleStudent {
		relation = "self"
		if !IsAdult(st.Birthdate, s.now()) {
			return refuse(ErrTooYoung)
		}
	}
	added, err := s.store.AddLink(ctx, accountID, st.ID, relation, "invite")
	if err != nil {
		return nil, err
	}
	if !added {
		return refuse(ErrAlreadyLinked)
	}
	return st, s.store.Audit(ctx, "account:"+accountID, "link.add", st.ID, map[string]any{"method": "invite", "relation": relation, "invite": in.ID})
}

// ApplyIntent links the account to the students a diary named (method diary).
func (s *Service) ApplyIntent(ctx context.Context, accountID, clientID, relation string, studentIDs []string) (int, error) {
	n := 0
	err := s.store.InTx(ctx, func(ctx context.Context) error {
		for _, id := range studentIDs {
			st, err := s.store.Student(ctx, id)
			if err != nil || !st.Active {
				continue
			}
			added, err := s.store.AddLink(ctx, accountID, id, relation, "diary")
			if err != nil {
				return err
			}
			if added {
				n++
				if err := s.store.Audit(ctx, "account:"+accountID, "link.add", id, map[string]any{"method": "diary", "relation": relation, "client": clientID}); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return n, err
}
