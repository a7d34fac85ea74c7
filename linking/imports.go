package linking

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"time"

	"github.com/esia-broker/esia-broker/storage"
)

// A region moving onto the broker brings what its diary already holds: the links parents made
// by code over the years (keyed by ESIA oid, which is what the diaries know), and the logins
// parents made for children under 14. Both are imported before the switch, so that nobody has
// to find a new code or a new password (docs/MIGRATION.md).

// MigrationStore is what the imports and the first-login settlement need of the store.
type MigrationStore interface {
	AwaitingAccount(ctx context.Context, upstream, oid string) (*storage.Account, bool, error)
	AccountByUpstream(ctx context.Context, upstream, sub string) (*storage.Account, error)
	AccountForUpdate(ctx context.Context, id string) (*storage.Account, error)
	ImportLink(ctx context.Context, accountID, studentID, relation string, linkedAt time.Time) (string, error)
	SelfLinks(ctx context.Context, studentID string) ([]storage.Link, error)
	ClearAwaiting(ctx context.Context, accountID string) (bool, error)
	RehashChildPassword(ctx context.Context, accountID, oldHash, newHash string) (bool, error)
	LoginLookalike(ctx context.Context, login string) (string, error)
}

// importLoginPattern is the form a login imported from a region's system may have
// (regionimport): wider than a new sub-account's.
var importLoginPattern = regexp.MustCompile(`^[a-z0-9а-яё][a-z0-9а-яё._@-]{1,31}$`)

// ImportedLogin tells whether a lower-cased login has the form an imported one may have.
func ImportedLogin(login string) bool { return importLoginPattern.MatchString(login) }

// LoginSkeleton is what a login looks like (storage.LoginSkeleton): two logins with one skeleton
// read alike.
func LoginSkeleton(login string) string { return storage.LoginSkeleton(login) }

// ValidID tells whether s has the form of the roster's ids (students, schools).
func ValidID(s string) bool { return idPattern.MatchString(s) }

func (s *Service) migrationStore() (MigrationStore, error) {
	ms, ok := s.store.(MigrationStore)
	if !ok {
		return nil, errors.New("this store cannot import")
	}
	return ms, nil
}

// OtherSelfLink tells whether an account other than a (nil: any) holds the student's own link.
func OtherSelfLink(ctx context.Context, ms MigrationStore, studentID string, a *storage.Account) (bool, error) {
	ls, err := ms.SelfLinks(ctx, studentID)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(ls, func(l storage.Link) bool { return a == nil || l.AccountID != a.ID }), nil
}

// SettleImported turns the imported links of an account awaiting its first login into normal
// links, in the login's transaction: each is checked by the rules every link follows (a parent
// link only for an adult, the student's own only for the card's birth date) now that ESIA has
// told who the person is; those that fail are revoked. (An account ESIA reports as not
// confirmed gets this far only as a child's own account: its parent links are refused like
// any minor's.) It tells how many links were settled and refused.
func (s *Service) SettleImported(ctx context.Context, a *storage.Account) (settled, refused int, err error) {
	if !a.AwaitingLogin || a.Kind != "esia" {
		return 0, 0, nil
	}
	ms, err := s.migrationStore()
	if err != nil {
		return 0, 0, err
	}
	err = s.store.InTx(ctx, func(ctx context.Context) error {
		first, err := ms.ClearAwaiting(ctx, a.ID)
		if err != nil || !first {
			return err
		}
		a.AwaitingLogin = false
		links, err := s.store.Links(ctx, a.ID, false)
		if err != nil {
			return err
		}
		today := s.now()
		for _, l := range links {
			if l.Method != "imported" {
				continue
			}
			st, err := s.store.Student(ctx, l.StudentID)
			if err != nil {
				return err
			}
			why := MayLink(a, st, l.Relation, today)
			if why == nil && l.Relation == "self" {
				// One own account per card: not when another holds it meanwhile, nor when ESIA's
				// SNILS is not the card's.
				if other, err := OtherSelfLink(ctx, ms, st.ID, a); err != nil {
					return err
				} else if other {
					why = errors.New("the student's own account is another")
				} else if st.SNILSDigest != "" && a.SNILSDigest != "" && st.SNILSDigest != a.SNILSDigest {
					why = errors.New("the SNILS is not the card's")
				}
			}
			if why != nil {
				if _, err := s.store.RevokeLink(ctx, l.ID); err != nil {
					return err
				}
				refused++
				if err := s.store.Audit(ctx, "account:"+a.ID, "link.import_refused", l.StudentID, map[string]any{"relation": l.Relation, "reason": why.Error()}); err != nil {
					return err
				}
				if err := s.store.AppendEvent(ctx, LinkEvent(storage.EventLinkRevoked, a.ID, l.StudentID, l.ID, l.Relation, l.Method)); err != nil {
					return err
				}
				continue
			}
			settled++
			if err := s.store.Audit(ctx, "account:"+a.ID, "link.import_settled", l.StudentID, map[string]any{"relation": l.Relation}); err != nil {
				return err
			}
		}
		return nil
	})
	return settled, refused, err
}
