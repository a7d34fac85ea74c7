package storage

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ChildCredential is the login and password hash of a child's sub-account.
type ChildCredential struct {
	AccountID    string    `db:"account_id"`
	StudentID    string    `db:"student_id"`
	Login        string    `db:"login"`
	PasswordHash string    `db:"password_hash"`
	CreatedBy    string    `db:"created_by"`
	CreatedAt    time.Time `db:"created_at"`
	UpdatedBy    string    `db:"updated_by"`
	UpdatedAt    time.Time `db:"updated_at"`
}

const childCols = `account_id, student_id, login, password_hash, created_by, created_at, updated_by, updated_at`

// ChildByLogin finds a sub-account by its (normalised) login.
func (s *Store) ChildByLogin(ctx context.Context, login string) (*ChildCredential, error) {
	var c ChildCredential
	if err := s.get(ctx, &c, `SELECT `+childCols+` FROM child_credentials WHERE login = ?`, login); err != nil {
		return nil, fmt.Errorf("child by login: %w", err)
	}
	return &c, nil
}

// ChildByStudent finds the sub-account of a student card.
func (s *Store) ChildByStudent(ctx context.Context, studentID string) (*ChildCredential, error) {
	var c ChildCredential
	if err := s.get(ctx, &c, `SELECT `+childCols+` FROM child_credentials WHERE student_id = ?`, studentID); err != nil {
		return nil, fmt.Errorf("child by student: %w", err)
	}
	return &c, nil
}

// ChildByAccount finds the sub-account of a child account.
func (s *Store) ChildByAccount(ctx context.Context, accountID string) (*ChildCredential, error) {
	var c ChildCredential
	if err := s.get(ctx, &c, `SELECT `+childCols+` FROM child_credentials WHERE account_id = ?`, accountID); err != nil {
		return nil, fmt.Errorf("child by account: %w", err)
	}
	return &c, nil
}

// CreateChild makes the child account and its credential in one transaction; ErrConflict when
// the login is taken, one that reads alike is (LoginSkeleton), or the student already has a
// sub-account.
func (s *Store) CreateChild(ctx context.Context, a *Account, c *ChildCredential) error {
	return s.InTx(ctx, func(ctx context.Context) error {
		sub := c.StudentID
		a.Kind, a.Upstream, a.UpstreamSub = "child", "child", &sub
		acct, err := s.UpsertUpstreamAccount(ctx, a)
		if err != nil {
			return err
		}
		now := s.clock()
		c.AccountID, c.CreatedAt, c.UpdatedAt, c.UpdatedBy = acct.ID, now, now, c.CreatedBy
		_, err = s.exec(ctx, `INSERT INTO child_credentials (`+childCols+`, login_skeleton) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			c.AccountID, c.StudentID, c.Login, c.PasswordHash, c.CreatedBy, c.CreatedAt, c.UpdatedBy, c.UpdatedAt, LoginSkeleton(c.Login))
		if isUniqueViolation(err) {
			return fmt.Errorf("create child login: %w", ErrConflict)
		}
		if err != nil {
			return fmt.Errorf("create child login: %w", err)
		}
		return nil
	})
}

// SetChildPassword replaces a sub-account's password hash.
func (s *Store) SetChildPassword(ctx context.Context, accountID, hash, by string) error {
	res, err := s.exec(ctx, `UPDATE child_credentials SET password_hash = ?, updated_by = ?, updated_at = ? WHERE account_id = ?`, hash, by, s.clock(), accountID)
	if err != nil {
		return fmt.Errorf("set child password: %w", err)
	}
	if affected(res) == 0 {
		return fmt.Errorf("set child password: %w", ErrNotFound)
	}
	return nil
}

// ActivationKey is a one-time key that connects the mobile app; only its digest is stored.
type ActivationKey struct {
	ID        string     `db:"id"`
	KeyDigest string     `db:"key_digest"`
	AccountID string     `db:"account_id"`
	ClientID  string     `db:"client_id"`
	CreatedAt time.Time  `db:"created_at"`
	ExpiresAt time.Time  `db:"expires_at"`
	UsedAt    *time.Time `db:"used_at"`
	RequestID string     `db:"request_id"`
	RevokedAt *time.Time `db:"revoked_at"`
}

const keyColsAK = `id, key_digest, account_id, client_id, created_at, expires_at, used_at, request_id, revoked_at`

// CreateActivationKey stores a key.
func (s *Store) CreateActivationKey(ctx context.Context, k *ActivationKey) error {
	k.CreatedAt = s.clock()
	_, err := s.exec(ctx, `INSERT INTO activation_keys (id, key_digest, account_id, client_id, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)`,
		k.ID, k.KeyDigest, k.AccountID, k.ClientID, k.CreatedAt, k.ExpiresAt.UTC())
	if err != nil {
		return fmt.Errorf("create activation key: %w", err)
	}
	return nil
}

// ErrKeyInvalid is returned for an unknown, used, expired, revoked or foreign key.
var ErrKeyInvalid = errors.New("activation key is not valid")

// UseActivationKey spends a key for clientID, once, and records the token family it starts.
func (s *Store) UseActivationKey(ctx context.Context, digest, clientID, requestID string) (*ActivationKey, error) {
	now := s.clock()
	res, err := s.exec(ctx, `UPDATE activation_keys SET used_at = ?, request_id = ? WHERE key_digest = ? AND client_id = ? AND used_at IS NULL AND revoked_at IS NULL AND expires_at > ?`,
		now, requestID, digest, clientID, now)
	if err != nil {
		return nil, fmt.Errorf("use activation key: %w", err)
	}
	if affected(res) != 1 {
		return nil, ErrKeyInvalid
	}
	var k ActivationKey
	if err := s.get(ctx, &k, `SELECT `+keyColsAK+` FROM activation_keys WHERE key_digest = ?`, digest); err != nil {
		return nil, fmt.Errorf("use activation key: %w", err)
	}
	return &k, nil
}

// Device is a used activation key: a connected app, with its last token use.
type Device struct {
	ActivationKey
	LastUsed *time.Time `db:"last_used"`
}

// Devices lists the apps an account connected and did not revoke.
func (s *Store) Devices(ctx context.Context, accountID string) ([]Device, error) {
	var keys []ActivationKey
	err := s.selectAll(ctx, &keys, `SELECT `+keyColsAK+` FROM activation_keys WHERE account_id = ? AND used_at IS NOT NULL AND revoked_at IS NULL ORDER BY used_at DESC`, accountID)
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	out := make([]Device, 0, len(keys))
	for _, k := range keys {
		d := Device{ActivationKey: k}
		var last time.Time
		// A column of its own (not an aggregate) keeps its declared type in SQLite too.
		err := s.get(ctx, &last, `SELECT requested_at FROM oauth2_refresh WHERE request_id = ? ORDER BY requested_at DESC LIMIT 1`, k.RequestID)
		switch {
		case err == nil:
			d.LastUsed = &last
		case !errors.Is(err, ErrNotFound):
			return nil, fmt.Errorf("list devices: %w", err)
		}
		out = append(out, d)
	}
	return out, nil
}

// RevokeDevice revokes a connected app of the account and every token of its family.
func (s *Store) RevokeDevice(ctx context.Context, accountID, keyID string) error {
	return s.InTx(ctx, func(ctx context.Context) error {
		var k ActivationKey
		if err := s.get(ctx, &k, `SELECT `+keyColsAK+` FROM activation_keys WHERE id = ? AND account_id = ? AND used_at IS NOT NULL AND revoked_at IS NULL`, keyID, accountID); err != nil {
			return fmt.Errorf("revoke device: %w", err)
		}
		if _, err := s.exec(ctx, `UPDATE activation_keys SET revoked_at = ? WHERE id = ?`, s.clock(), keyID); err != nil {
			return fmt.Errorf("revoke device: %w", err)
		}
		if err := s.RevokeRefreshToken(ctx, k.RequestID); err != nil {
			return err
		}
		return s.RevokeAccessToken(ctx, k.RequestID)
	})
}

// EndOrphanedChildAccess ends at once every browser session, code and token of the
// sub-accounts of these students that may no longer be used — the card inactive, or no active
// parent link of an active account left — and tells how many sub-accounts it ended. Every
// change that can end such a right (a link revoked, a card deactivated, a parent disabled or
// forgotten) calls it in its own transaction.
func (s *Store) EndOrphanedChildAccess(ctx context.Context, studentIDs ...string) (int, error) {
	n := 0
	for _, id := range studentIDs {
		var accounts []string
		err := s.selectAll(ctx, &accounts, `SELECT c.account_id FROM child_credentials c JOIN students st ON st.id = c.student_id
			WHERE c.student_id = ? AND (st.active = ? OR NOT EXISTS (
				SELECT 1 FROM links l JOIN accounts a ON a.id = l.account_id
				WHERE l.student_id = c.student_id AND l.relation = 'parent' AND l.revoked_at IS NULL AND a.status = 'active'))`, id, false)
		if err != nil {
			return n, fmt.Errorf("find orphaned sub-accounts: %w", err)
		}
		for _, a := range accounts {
			if err := s.RevokeTokensOf(ctx, a); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// studentsOf lists the students an account is linked to as a parent (active links).
func (s *Store) studentsOf(ctx context.Context, accountID string) ([]string, error) {
	var ids []string
	if err := s.selectAll(ctx, &ids, `SELECT student_id FROM links WHERE account_id = ? AND relation = 'parent' AND revoked_at IS NULL`, accountID); err != nil {
		return nil, fmt.Errorf("students of account: %w", err)
	}
	return ids, nil
}

// OwnESIALink tells whether the student has an active self link from an active ESIA account:
// the child logs in with an own ESIA account.
func (s *Store) OwnESIALink(ctx context.Context, studentID string) (bool, error) {
	var n int
	err := s.get(ctx, &n, `SELECT COUNT(*) FROM links l JOIN accounts a ON a.id = l.account_id
		WHERE l.student_id = ? AND l.relation = 'self' AND l.revoked_at IS NULL AND a.kind <> 'child' AND a.status = 'active'`, studentID)
	if err != nil {
		return false, fmt.Errorf("own ESIA link: %w", err)
	}
	return n > 0, nil
}

// ChildAccount is a sub-account with what the schools need to help its family.
type ChildAccount struct {
	AccountID string `db:"account_id"`
	StudentID string `db:"student_id"`
	Login     string `db:"login"`
	Status    string `db:"status"`
	SchoolID  string `db:"school_id"`
	Class     string `db:"class"`
	OwnESIA   bool   `db:"own_esia"`
}

// ChildAccounts lists every sub-account, by school, class and student.
func (s *Store) ChildAccounts(ctx context.Context) ([]ChildAccount, error) {
	var out []ChildAccount
	err := s.selectAll(ctx, &out, `SELECT c.account_id, c.student_id, c.login, a.status, st.school_id, st.class,
			EXISTS (SELECT 1 FROM links l JOIN accounts e ON e.id = l.account_id
				WHERE l.student_id = c.student_id AND l.relation = 'self' AND l.revoked_at IS NULL AND e.kind <> 'child' AND e.status = 'active') AS own_esia
		FROM child_credentials c JOIN accounts a ON a.id = c.account_id JOIN students st ON st.id = c.student_id
		ORDER BY st.school_id, st.class, c.student_id`)
	if err != nil {
		return nil, fmt.Errorf("child accounts: %w", err)
	}
	return out, nil
}
