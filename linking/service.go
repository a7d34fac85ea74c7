package linking

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/esia-broker/esia-broker/clientip"
	"github.com/esia-broker/esia-broker/invites"
	"github.com/esia-broker/esia-broker/passwords"
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
	AddLink(ctx context.Context, accountID, studentID, relation, method string) (string, error)
	RevokeLink(ctx context.Context, id string) (bool, error)
	Links(ctx context.Context, accountID string, all bool) ([]storage.Link, error)
	Audit(ctx context.Context, actor, action, target string, details map[string]any) error
	GuardianLinks(ctx context.Context, studentID string) ([]storage.Link, error)
	ChildByLogin(ctx context.Context, login string) (*storage.ChildCredential, error)
	ChildByStudent(ctx context.Context, studentID string) (*storage.ChildCredential, error)
	CreateChild(ctx context.Context, a *storage.Account, c *storage.ChildCredential) error
	SetChildPassword(ctx context.Context, accountID, hash, by string) error
	ReserveAttempt(ctx context.Context, keys ...storage.LimitKey) (time.Time, error)
	Failed(ctx context.Context, keys ...storage.LimitKey) (time.Time, error)
	Succeeded(ctx context.Context, key string) error
	Account(ctx context.Context, id string) (*storage.Account, error)
	SetAccountStatus(ctx context.Context, id, status string) error
	OwnESIALink(ctx context.Context, studentID string) (bool, error)
	ChildAccounts(ctx context.Context) ([]storage.ChildAccount, error)
	AppendEvent(ctx context.Context, e storage.Event) error
	LinkByID(ctx context.Context, id string) (*storage.Link, error)
	RevokeTokensOf(ctx context.Context, subject string) error
	LinkFollowsSNILS(ctx context.Context, accountID, studentID, relation string) (bool, error)
}

// Service applies the linking rules.
type Service struct {
	store    Store
	digester *Digester
	invites  *invites.Service
	now      func() time.Time
	common   map[string]bool
	children ChildOptions

	gate *hashGate
	// verify checks a password against its hash (passwords.VerifyStoredPassword; tests count the calls).
	verify func(encoded, password string) (bool, error)

	dummyMu sync.Mutex
	dummy   string
}

// ChildOptions tune children's sub-accounts.
type ChildOptions struct {
	// PasswordAccountsOff refuses login-and-password sub-accounts everywhere (a region that
	// allows only ESIA): creating, logging in, resetting, and using what they were given.
	PasswordAccountsOff bool
	Argon2              Argon2Params
	// GraceDays lets a sub-account log in this many days past the 14th birthday.
	GraceDays int
	// PerLogin limits wrong passwords for one login from one source (an IPv4 address or an
	// IPv6 /64), PerIP those from one source for any login, and PerLoginAll those for one login
	// from all sources together: a short lock-out that slows a distributed guesser down without
	// letting one stranger lock a known child out for long.
	PerLogin    storage.AttemptLimit
	PerIP       storage.AttemptLimit
	PerLoginAll storage.AttemptLimit
	// HashConcurrency bounds the argon2 computations that run at once (each takes
	// Argon2.MemoryKiB); HashQueue requests more may wait up to HashWait for one, and any further
	// one is told to come back (ErrBusy).
	HashConcurrency int
	HashQueue       int
	HashWait        time.Duration
	// CreatePerAccount limits the logins a parent may find taken when creating a child's login.
	CreatePerAccount storage.AttemptLimit
}

// DefaultChildOptions: DefaultArgon2 (OWASP-compliant), no grace, 5 wrong passwords per login and 30 per IP
// in 15 minutes lock for 15 minutes.
func DefaultChildOptions() ChildOptions {
	return ChildOptions{
		Argon2:           passwords.DefaultArgon2(),
		PerLogin:         storage.AttemptLimit{Max: 5, Window: 15 * time.Minute, Lockout: 15 * time.Minute},
		PerIP:            storage.AttemptLimit{Max: 30, Window: 15 * time.Minute, Lockout: 15 * time.Minute},
		PerLoginAll:      storage.AttemptLimit{Max: 20, Window: 15 * time.Minute, Lockout: time.Minute},
		HashConcurrency:  4,
		HashQueue:        16,
		HashWait:         3 * time.Second,
		CreatePerAccount: storage.AttemptLimit{Max: 10, Window: time.Hour, Lockout: time.Hour},
	}
}

// NewService makes the linking service with default child options.
func NewService(store Store, d *Digester, inv *invites.Service) *Service {
	o := DefaultChildOptions()
	return &Service{store: store, digester: d, invites: inv, now: time.Now, common: commonPasswords(), children: o,
		gate: newHashGate(o.HashConcurrency, o.HashQueue, o.HashWait), verify: passwords.VerifyStoredPassword}
}

// SetChildOptions replaces the child sub-account options.
func (s *Service) SetChildOptions(o ChildOptions) {
	s.dummyMu.Lock()
	s.children, s.dummy = o, ""
	s.gate = newHashGate(o.HashConcurrency, o.HashQueue, o.HashWait)
	s.dummyMu.Unlock()
}

// SetVerifier replaces the password check (tests count the secrets actually checked).
func (s *Service) SetVerifier(v func(encoded, password string) (bool, error)) { s.verify = v }

// Now is the service's today (its clock).
func (s *Service) Now() time.Time { return s.now() }

// ChildOptions returns the child sub-account options.
func (s *Service) ChildOptions() ChildOptions {
	s.dummyMu.Lock()
	defer s.dummyMu.Unlock()
	return s.children
}

// ChildMayUse tells whether the student is young enough for a sub-account today (with the
// grace days).
func (s *Service) ChildMayUse(st *storage.Student) bool { return s.childMayUse(st) }

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
// parent to all those students, the student's own SNILS links as self when the birth date
// matches the card too (at any age); SNILS links that
// no longer match are revoked; links made by code or by the diary stay. A login without SNILS
// (scope not granted) changes nothing.
func (s *Service) Resolve(ctx context.Context, accountID, snils string) (Changes, error) {
	if snils == "" {
		return Changes{}, nil
	}
	a, err := s.store.Account(ctx, accountID)
	if err != nil {
		return Changes{}, fmt.Errorf("read account: %w", err)
	}
	return s.ResolveAccount(ctx, a, snils)
}

// ResolveAccount is Resolve for an account already read (the login callback has it: no second
// read on the login path).
func (s *Service) ResolveAccount(ctx context.Context, a *storage.Account, snils string) (Changes, error) {
	var ch Changes
	accountID := a.ID
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
		today := s.now()
		if MayLink(a, nil, "parent", today) == nil {
			for _, st := range parents {
				wanted[st.ID] = want{"parent"}
			}
		}
		for _, st := range selves {
			// The student's own account, at any age (children under 14 have ESIA accounts of
			// their own since 2022): the SNILS and the birth date must both match the card.
			if MayLink(a, &st, "self", today) == nil {
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
					if err := s.store.AppendEvent(ctx, LinkEvent(storage.EventLinkRevoked, l.AccountID, l.StudentID, l.ID, l.Relation, l.Method)); err != nil {
						return err
					}
				}
			}
		}
		for id, w := range wanted {
			if have[id] {
				continue
			}
			if w.relation == "self" {
				// The card's own SNILS is the stronger proof: an imported own link of another
				// account (settled by the birth date alone) gives way.
				if err := s.yieldImportedSelf(ctx, id, accountID); err != nil {
					return err
				}
			}
			linkID, err := s.store.AddLink(ctx, accountID, id, w.relation, "snils")
			if err != nil {
				return err
			}
			if linkID != "" {
				ch.Added++
				if err := s.store.Audit(ctx, "account:"+accountID, "link.add", id, map[string]any{"method": "snils", "relation": w.relation}); err != nil {
					return err
				}
				if err := s.store.AppendEvent(ctx, LinkEvent(storage.EventLinkCreated, accountID, id, linkID, w.relation, "snils")); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return ch, err
}

// yieldImportedSelf revokes, when accountID gets the student's own link by the card's SNILS, the
// imported self links of the student held by other accounts, and accountID's imported self
// links to other students.
func (s *Service) yieldImportedSelf(ctx context.Context, studentID, accountID string) error {
	ms, ok := s.store.(MigrationStore)
	if !ok {
		return nil
	}
	ls, err := ms.SelfLinks(ctx, studentID)
	if err != nil {
		return err
	}
	// And one account is the own account of one card: its imported own links to other cards
	// give way too (a twin's oid imported for the other twin).
	mine, err := s.store.Links(ctx, accountID, false)
	if err != nil {
		return err
	}
	for _, l := range mine {
		if l.Relation == "self" && l.StudentID != studentID {
			ls = append(ls, l)
		}
	}
	for _, l := range ls {
		if (l.AccountID == accountID && l.StudentID == studentID) || l.Method != "imported" {
			continue
		}
		if ok, err := s.store.RevokeLink(ctx, l.ID); err != nil {
			return err
		} else if !ok {
			continue
		}
		reason := "the card's SNILS names another account"
		if l.AccountID == accountID {
			// The account logging in now: its claims are read after this, in the same login.
			reason = "the account's own card is another, by its SNILS"
		} else if err := s.store.RevokeTokensOf(ctx, l.AccountID); err != nil {
			// As every end of a right: the account's sessions and tokens end with it (their
			// students claim named the card), and the diaries are told.
			return err
		}
		if err := s.store.Audit(ctx, "account:"+l.AccountID, "link.import_refused", l.StudentID, map[string]any{"relation": "self", "reason": reason}); err != nil {
			return err
		}
		if err := s.store.AppendEvent(ctx, LinkEvent(storage.EventLinkRevoked, l.AccountID, l.StudentID, l.ID, l.Relation, l.Method)); err != nil {
			return err
		}
	}
	return nil
}

// Errors of code redemption that the person may see.
var (
	ErrStudentLeft   = errors.New("the student is no longer in the school's roster")
	ErrAlreadyLinked = errors.New("this child is already linked to the account")
)

// RedeemCode spends an invite code for the account and links it to the code's student. Who may
// redeem is checked before the code is tried: a parent code only by an adult's account (never a
// child's sub-account), a student code only by the student, by the card's birth date.
func (s *Service) RedeemCode(ctx context.Context, accountID, code, role, ip string) (*storage.Student, error) {
	a, err := s.store.Account(ctx, accountID)
	if err != nil {
		return nil, fmt.Errorf("read account: %w", err)
	}
	if role == invites.RoleParent {
		if err := MayLink(a, nil, "parent", s.now()); err != nil {
			return nil, err
		}
	} else if a.Kind == "child" {
		return nil, ErrChildAccount
	}
	in, err := s.invites.Redeem(ctx, code, role, accountID, clientip.Key(ip))
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
		// A student code works at any age for the student's own ESIA account: MayLink below
		// checks the account's birth date against the card.
		relation = "self"
	}
	if err := MayLink(a, st, relation, s.now()); err != nil {
		return refuse(err)
	}
	var linkID string
	err = s.store.InTx(ctx, func(ctx context.Context) error {
		var err error
		if linkID, err = s.store.AddLink(ctx, accountID, st.ID, relation, "invite"); err != nil || linkID == "" {
			return err
		}
		if err := s.invites.Settled(ctx, accountID); err != nil {
			return err
		}
		if err := s.store.Audit(ctx, "account:"+accountID, "link.add", st.ID, map[string]any{"method": "invite", "relation": relation, "invite": in.ID}); err != nil {
			return err
		}
		if err := s.store.AppendEvent(ctx, storage.Event{Type: storage.EventInviteRedeemed, AccountID: accountID, StudentID: st.ID,
			Data: map[string]any{"invite_id": in.ID, "role": role}}); err != nil {
			return err
		}
		return s.store.AppendEvent(ctx, LinkEvent(storage.EventLinkCreated, accountID, st.ID, linkID, relation, "invite"))
	})
	if err != nil {
		return nil, err
	}
	if linkID == "" {
		return refuse(ErrAlreadyLinked)
	}
	return st, nil
}

// linkEvent is the feed's event of a link made or ended; method is as stored ("invite" is a
// code).
// LinkEvent is the feed's event of a link made or ended.
func LinkEvent(typ, accountID, studentID, linkID, relation, method string) storage.Event {
	return storage.Event{Type: typ, AccountID: accountID, StudentID: studentID,
		Data: map[string]any{"link_id": linkID, "relation": relation, "method": APIMethod(method)}}
}

// APIMethod names a link's method as the diaries' API does (storage.APILinkMethod).
func APIMethod(method string) string { return storage.APILinkMethod(method) }

// ErrSNILSLink is returned for ending a link the card's SNILS makes: the next login would make
// it again. The card is what changes (the guardian taken off it, or the card's SNILS).
var ErrSNILSLink = errors.New("the link follows the SNILS on the student's card: take the guardian off the card (or correct the card's SNILS), which ends the link at once")

// EndLink ends an active link with everything the end of a right ends, in one transaction: the
// account's sessions, codes and tokens (refresh families and app devices among them), a
// sub-account left with no parent, and the link.revoked event. It returns the link as it was.
func (s *Service) EndLink(ctx context.Context, linkID, actor string) (*storage.Link, error) {
	var l *storage.Link
	err := s.store.InTx(ctx, func(ctx context.Context) error {
		var err error
		if l, err = s.store.LinkByID(ctx, linkID); err != nil {
			return err
		}
		if l.RevokedAt != nil {
			return fmt.Errorf("link %s was already revoked: %w", linkID, storage.ErrNotFound)
		}
		if l.Method == "snils" {
			return ErrSNILSLink
		}
		// A link made by code or by the diary to a card that also names the account's SNILS
		// would come back at the next login, as a SNILS link.
		if follows, err := s.store.LinkFollowsSNILS(ctx, l.AccountID, l.StudentID, l.Relation); err != nil {
			return err
		} else if follows {
			return ErrSNILSLink
		}
		revoked, err := s.store.RevokeLink(ctx, linkID)
		if err != nil {
			return err
		}
		if !revoked {
			return fmt.Errorf("link %s was already revoked: %w", linkID, storage.ErrNotFound)
		}
		if err := s.store.RevokeTokensOf(ctx, l.AccountID); err != nil {
			return err
		}
		if err := s.store.Audit(ctx, actor, "link.revoke", l.StudentID, map[string]any{"account": l.AccountID, "link": l.ID, "method": l.Method}); err != nil {
			return err
		}
		return s.store.AppendEvent(ctx, LinkEvent(storage.EventLinkRevoked, l.AccountID, l.StudentID, l.ID, l.Relation, l.Method))
	})
	return l, err
}

// ApplyIntent links the account to the students a diary named (method diary). Every link
// follows MayLink: a diary cannot make a child's parent of a minor or an adult its "self".
func (s *Service) ApplyIntent(ctx context.Context, accountID, clientID, relation string, studentIDs []string) (int, error) {
	n := 0
	err := s.store.InTx(ctx, func(ctx context.Context) error {
		a, err := s.store.Account(ctx, accountID)
		if err != nil {
			return fmt.Errorf("read account: %w", err)
		}
		for _, id := range studentIDs {
			st, err := s.store.Student(ctx, id)
			if err != nil || !st.Active {
				continue
			}
			if err := MayLink(a, st, relation, s.now()); err != nil {
				return err
			}
			linkID, err := s.store.AddLink(ctx, accountID, id, relation, "diary")
			if err != nil {
				return err
			}
			if linkID != "" {
				n++
				if err := s.store.Audit(ctx, "account:"+accountID, "link.add", id, map[string]any{"method": "diary", "relation": relation, "client": clientID}); err != nil {
					return err
				}
				if err := s.store.AppendEvent(ctx, LinkEvent(storage.EventLinkCreated, accountID, id, linkID, relation, "diary")); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return n, err
}
