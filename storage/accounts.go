package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Account is a person known to the broker.
type Account struct {
	ID          string    `db:"id"`
	Kind        string    `db:"kind"`
	Upstream    string    `db:"upstream"`
	UpstreamSub *string   `db:"upstream_sub"`
	FamilyName  string    `db:"family_name"`
	GivenName   string    `db:"given_name"`
	MiddleName  string    `db:"middle_name"`
	Birthdate   string    `db:"birthdate"`
	SNILSDigest string    `db:"snils_digest"`
	Status      string    `db:"status"`
	CreatedAt   time.Time `db:"created_at"`
	UpdatedAt   time.Time `db:"updated_at"`
	// Unconfirmed: ESIA reported the account as not confirmed at its last login (it was
	// admitted as a child's own account matching a card).
	Unconfirmed bool `db:"unconfirmed"`
	// AwaitingLogin: made by a region's link import from the ESIA oid alone; its imported
	// links are settled at its first login (linking.Service.SettleImported).
	AwaitingLogin bool `db:"awaiting_login"`
}

const accountCols = `id, kind, upstream, upstream_sub, family_name, given_name, middle_name, birthdate, snils_digest, status, created_at, updated_at, unconfirmed, awaiting_login`

// UpsertUpstreamAccount creates or updates the account known to upstream by sub, and returns it
// with its stable id.
func (s *Store) UpsertUpstreamAccount(ctx context.Context, a *Account) (*Account, error) {
	if a.UpstreamSub == nil || *a.UpstreamSub == "" || a.Upstream == "" {
		return nil, errors.New("upsert account: upstream and subject are required")
	}
	var out *Account
	err := s.InTx(ctx, func(ctx context.Context) error {
		now := s.clock()
		existing, err := s.AccountByUpstream(ctx, a.Upstream, *a.UpstreamSub)
		switch {
		case errors.Is(err, ErrNotFound):
			a.ID = uuid.NewString()
			a.CreatedAt, a.UpdatedAt = now, now
			if a.Status == "" {
				a.Status = "active"
			}
			_, err = s.exec(ctx, `INSERT INTO accounts (`+accountCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				a.ID, a.Kind, a.Upstream, a.UpstreamSub, a.FamilyName, a.GivenName, a.MiddleName, a.Birthdate, a.SNILSDigest, a.Status, now, now, a.Unconfirmed, a.AwaitingLogin)
			if isUniqueViolation(err) {
				return fmt.Errorf("create account: %w", ErrConflict)
			}
			if err != nil {
				return fmt.Errorf("create account: %w", err)
			}
			out = a
			return nil
		case err != nil:
			return err
		}
		snils := existing.SNILSDigest
		if a.SNILSDigest != "" {
			snils = a.SNILSDigest
		}
		if existing.FamilyName == a.FamilyName && existing.GivenName == a.GivenName && existing.MiddleName == a.MiddleName &&
			existing.Birthdate == a.Birthdate && existing.SNILSDigest == snils && existing.Unconfirmed == a.Unconfirmed {
			out = existing // nothing changed upstream: no write (most logins)
			return nil
		}
		existing.FamilyName, existing.GivenName, existing.MiddleName = a.FamilyName, a.GivenName, a.MiddleName
		existing.Birthdate, existing.UpdatedAt, existing.SNILSDigest, existing.Unconfirmed = a.Birthdate, now, snils, a.Unconfirmed
		_, err = s.exec(ctx, `UPDATE accounts SET family_name = ?, given_name = ?, middle_name = ?, birthdate = ?, snils_digest = ?, updated_at = ?, unconfirmed = ? WHERE id = ?`,
			existing.FamilyName, existing.GivenName, existing.MiddleName, existing.Birthdate, existing.SNILSDigest, now, existing.Unconfirmed, existing.ID)
		if err != nil {
			return fmt.Errorf("update account: %w", err)
		}
		out = existing
		return nil
	})
	return out, err
}

// AccountByUpstream finds the account upstream knows as sub.
func (s *Store) AccountByUpstream(ctx context.Context, upstream, sub string) (*Account, error) {
	var a Account
	if err := s.get(ctx, &a, `SELECT `+accountCols+` FROM accounts WHERE upstream = ? AND upstream_sub = ?`, upstream, sub); err != nil {
		return nil, fmt.Errorf("get account by upstream: %w", err)
	}
	return &a, nil
}

// Account finds an account by id.
func (s *Store) Account(ctx context.Context, id string) (*Account, error) {
	var a Account
	if err := s.get(ctx, &a, `SELECT `+accountCols+` FROM accounts WHERE id = ?`, id); err != nil {
		return nil, fmt.Errorf("get account: %w", err)
	}
	return &a, nil
}

// AccountForUpdate is Account that, on PostgreSQL, also locks the row until the transaction
// ends: a refresh holds it while it issues new tokens, and RevokeTokensOf takes it before it
// deletes them, so a refresh racing the end of a right cannot leave tokens behind.
func (s *Store) AccountForUpdate(ctx context.Context, id string) (*Account, error) {
	q := `SELECT ` + accountCols + ` FROM accounts WHERE id = ?`
	if s.dialect == Postgres {
		q += ` FOR UPDATE`
	}
	var a Account
	if err := s.get(ctx, &a, q, id); err != nil {
		return nil, fmt.Errorf("get account: %w", err)
	}
	return &a, nil
}

// CountAccounts counts accounts; tests use it to prove nothing half-made was left.
func (s *Store) CountAccounts(ctx context.Context) (int, error) {
	var n int
	if err := s.get(ctx, &n, `SELECT COUNT(*) FROM accounts`); err != nil {
		return 0, fmt.Errorf("count accounts: %w", err)
	}
	return n, nil
}

// SetAccountStatus sets active or disabled.
// A disabled account's sessions and tokens end, and so do those of the sub-accounts of
// children it was the last active parent of.
func (s *Store) SetAccountStatus(ctx context.Context, id, status string) error {
	return s.InTx(ctx, func(ctx context.Context) error {
		res, err := s.exec(ctx, `UPDATE accounts SET status = ?, updated_at = ? WHERE id = ?`, status, s.clock(), id)
		if err != nil {
			return fmt.Errorf("set account status: %w", err)
		}
		if affected(res) == 0 {
			return fmt.Errorf("set account status: %w", ErrNotFound)
		}
		if status == "active" {
			return nil
		}
		if err := s.RevokeTokensOf(ctx, id); err != nil {
			return err
		}
		students, err := s.studentsOf(ctx, id)
		if err != nil {
			return err
		}
		_, err = s.EndOrphanedChildAccess(ctx, students...)
		return err
	})
}

// ForgetAccount removes an account's personal data: names, birth date, SNILS digest and upstream
// id are blanked, its sessions, consents and tokens deleted, its links revoked. The account row
// and the audit log stay, so what happened remains known without who it was.
func (s *Store) ForgetAccount(ctx context.Context, id string) error {
	return s.InTx(ctx, func(ctx context.Context) error {
		now := s.clock()
		students, err := s.studentsOf(ctx, id)
		if err != nil {
			return err
		}
		if _, err := s.Account(ctx, id); err != nil {
			return fmt.Errorf("forget account: %w", err)
		}
		// The diaries learn of it while the consents still name them, and by the sub they saw
		// (made from the ESIA oid, about to be blanked).
		if err := s.enqueueLogouts(ctx, id, ""); err != nil {
			return err
		}
		res, err := s.exec(ctx, `UPDATE accounts SET family_name = '', given_name = '', middle_name = '', birthdate = '', snils_digest = '', upstream_sub = NULL, status = 'forgotten', updated_at = ? WHERE id = ?`, now, id)
		if err != nil {
			return fmt.Errorf("forget account: %w", err)
		}
		if affected(res) == 0 {
			return fmt.Errorf("forget account: %w", ErrNotFound)
		}
		for _, q := range []string{
			`DELETE FROM browser_sessions WHERE account_id = ?`,
			`DELETE FROM consents WHERE account_id = ?`,
			`DELETE FROM oauth2_access WHERE subject = ?`,
			`DELETE FROM oauth2_refresh WHERE subject = ?`,
			`DELETE FROM oauth2_code WHERE subject = ?`,
			`DELETE FROM oauth2_oidc WHERE subject = ?`,
			`DELETE FROM oauth2_pkce WHERE subject = ?`,
		} {
			if _, err := s.exec(ctx, q, id); err != nil {
				return fmt.Errorf("forget account: %w", err)
			}
		}
		active, err := s.Links(ctx, id, false)
		if err != nil {
			return err
		}
		if _, err := s.exec(ctx, `UPDATE links SET revoked_at = ? WHERE account_id = ? AND revoked_at IS NULL`, now, id); err != nil {
			return fmt.Errorf("forget account: %w", err)
		}
		if _, err = s.EndOrphanedChildAccess(ctx, students...); err != nil {
			return err
		}
		for _, l := range active {
			if err := s.AppendEvent(ctx, Event{Type: EventLinkRevoked, AccountID: id, StudentID: l.StudentID,
				Data: map[string]any{"link_id": l.ID, "relation": l.Relation, "method": APILinkMethod(l.Method), "reason": "account_forgotten"}}); err != nil {
				return err
			}
		}
		return s.AppendEvent(ctx, Event{Type: EventAccountForgotten, AccountID: id})
	})
}

// RevokeTokensOf deletes every code, access and refresh token (the app devices among them) and
// browser session of a subject: the account may no longer use what it was given.
// The diaries that take back-channel logouts are told (sub only: every session of the subject)
// when anything was ended.
func (s *Store) RevokeTokensOf(ctx context.Context, subject string) error {
	return s.InTx(ctx, func(ctx context.Context) error {
		if s.dialect == Postgres {
			var ids []string // the account's lock, which a refresh holds while it issues
			if err := s.selectAll(ctx, &ids, `SELECT id FROM accounts WHERE id = ? FOR UPDATE`, subject); err != nil {
				return fmt.Errorf("revoke tokens: lock account: %w", err)
			}
		}
		ended := int64(0)
		for _, t := range []string{tableAccess, tableRefresh, tableCode, tablePKCE, tableOIDC} {
			res, err := s.exec(ctx, `DELETE FROM `+t+` WHERE subject = ?`, subject)
			if err != nil {
				return fmt.Errorf("revoke tokens: %w", err)
			}
			ended += affected(res)
		}
		res, err := s.exec(ctx, `DELETE FROM browser_sessions WHERE account_id = ?`, subject)
		if err != nil {
			return fmt.Errorf("revoke sessions: %w", err)
		}
		if ended+affected(res) == 0 {
			return nil
		}
		return s.enqueueLogouts(ctx, subject, "")
	})
}

// FullName joins family, given and middle names, skipping empty parts.
func FullName(parts ...string) string {
	out := ""
	for _, p := range parts {
		if p == "" {
			continue
		}
		if out != "" {
			out += " "
		}
		out += p
	}
	return out
}
