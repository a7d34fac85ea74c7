package storage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// A region moving onto the broker brings the links its diary made over the years and the
// logins parents made for their children (docs/MIGRATION.md). These are the store's side of
// `links import`, `children import` and `migrate report`.

// ESIAUpstream is the upstream name of ESIA accounts (the connector id "esia").
const ESIAUpstream = "esia"

// AwaitingAccount returns the account the upstream (ESIA, or a gateway to it) knows as oid,
// made awaiting its first login when the broker has not seen it yet. created tells which.
func (s *Store) AwaitingAccount(ctx context.Context, upstream, oid string) (a *Account, created bool, err error) {
	a, err = s.AccountByUpstream(ctx, upstream, oid)
	if err == nil {
		return a, false, nil
	}
	if !errors.Is(err, ErrNotFound) {
		return nil, false, err
	}
	sub := oid
	a, err = s.UpsertUpstreamAccount(ctx, &Account{Kind: "esia", Upstream: upstream, UpstreamSub: &sub, AwaitingLogin: true})
	if err != nil {
		return nil, false, fmt.Errorf("make awaiting account: %w", err)
	}
	return a, true, nil
}

// ImportLink makes an imported link of the account to the student, dated linkedAt, unless an
// active link between them exists; it returns the new link's id, or "" when it made none.
func (s *Store) ImportLink(ctx context.Context, accountID, studentID, relation string, linkedAt time.Time) (string, error) {
	var n int
	if err := s.get(ctx, &n, `SELECT COUNT(*) FROM links WHERE account_id = ? AND student_id = ? AND revoked_at IS NULL`, accountID, studentID); err != nil {
		return "", fmt.Errorf("import link: %w", err)
	}
	if n > 0 {
		return "", nil
	}
	id := uuid.NewString()
	if _, err := s.exec(ctx, `INSERT INTO links (id, account_id, student_id, relation, method, created_at) VALUES (?, ?, ?, ?, 'imported', ?)`,
		id, accountID, studentID, relation, linkedAt.UTC()); err != nil {
		return "", fmt.Errorf("import link: %w", err)
	}
	return id, nil
}

// SelfLinks returns the student's active self links (the student's own accounts: one, as a
// rule).
func (s *Store) SelfLinks(ctx context.Context, studentID string) ([]Link, error) {
	var ls []Link
	if err := s.selectAll(ctx, &ls, `SELECT id, account_id, student_id, relation, method, created_at, revoked_at FROM links
		WHERE student_id = ? AND relation = 'self' AND revoked_at IS NULL ORDER BY created_at, id`, studentID); err != nil {
		return nil, fmt.Errorf("self links of student: %w", err)
	}
	return ls, nil
}

// ClearAwaiting marks an awaiting account as logged in; it tells whether this call did (a
// concurrent first login may have).
func (s *Store) ClearAwaiting(ctx context.Context, accountID string) (bool, error) {
	res, err := s.exec(ctx, `UPDATE accounts SET awaiting_login = ?, updated_at = ? WHERE id = ? AND awaiting_login = ?`, false, s.clock(), accountID, true)
	if err != nil {
		return false, fmt.Errorf("settle imported account: %w", err)
	}
	return affected(res) == 1, nil
}

// RehashChildPassword replaces an imported hash by the broker's own, unless the password
// changed meanwhile (a parent set a new one): it tells whether it did.
func (s *Store) RehashChildPassword(ctx context.Context, accountID, oldHash, newHash string) (bool, error) {
	res, err := s.exec(ctx, `UPDATE child_credentials SET password_hash = ?, updated_by = ?, updated_at = ? WHERE account_id = ? AND password_hash = ?`,
		newHash, "system:rehash", s.clock(), accountID, oldHash)
	if err != nil {
		return false, fmt.Errorf("rehash child password: %w", err)
	}
	return affected(res) == 1, nil
}

// MigrationCounts are the totals of `migrate report`.
type MigrationCounts struct {
	AwaitingAccounts int            // made by the link import, not logged in yet
	LinksByMethod    map[string]int // active links
	ImportedChildren int            // sub-accounts made by the children import
	NotRehashed      int            // of those, the ones whose hash is still the imported one
}

// FamilyWithoutLink is an active card with no guardian SNILS whose family may need an invite
// code: it has no active parent link (Pending false), or only links imported for accounts
// that have not logged in yet (Pending: a code if the first login refuses them).
type FamilyWithoutLink struct {
	StudentID string `db:"id"`
	SchoolID  string `db:"school_id"`
	Class     string `db:"class"`
	Family    string `db:"family_name"`
	Given     string `db:"given_name"`
	Middle    string `db:"middle_name"`
	Pending   bool   `db:"pending"`
}

// MigrationReport counts what the imports left and lists the active cards whose families have
// neither a guardian SNILS on the card nor an active parent link.
func (s *Store) MigrationReport(ctx context.Context) (*MigrationCounts, []FamilyWithoutLink, error) {
	c := &MigrationCounts{LinksByMethod: map[string]int{}}
	if err := s.get(ctx, &c.AwaitingAccounts, `SELECT COUNT(*) FROM accounts WHERE awaiting_login = ?`, true); err != nil {
		return nil, nil, fmt.Errorf("migration report: %w", err)
	}
	var byMethod []struct {
		Method string `db:"method"`
		N      int    `db:"n"`
	}
	if err := s.selectAll(ctx, &byMethod, `SELECT method, COUNT(*) AS n FROM links WHERE revoked_at IS NULL GROUP BY method`); err != nil {
		return nil, nil, fmt.Errorf("migration report: %w", err)
	}
	for _, m := range byMethod {
		c.LinksByMethod[m.Method] = m.N
	}
	if err := s.get(ctx, &c.ImportedChildren, `SELECT COUNT(*) FROM child_credentials WHERE created_by LIKE 'import:%'`); err != nil {
		return nil, nil, fmt.Errorf("migration report: %w", err)
	}
	if err := s.get(ctx, &c.NotRehashed, `SELECT COUNT(*) FROM child_credentials WHERE created_by LIKE 'import:%' AND updated_by = created_by`); err != nil {
		return nil, nil, fmt.Errorf("migration report: %w", err)
	}
	var fam []FamilyWithoutLink
	// A parent link counts when its account is active; "settled" when the account has logged in.
	err := s.selectAll(ctx, &fam, `SELECT st.id, st.school_id, st.class, st.family_name, st.given_name, st.middle_name,
		EXISTS (SELECT 1 FROM links l JOIN accounts a ON a.id = l.account_id
			WHERE l.student_id = st.id AND l.relation = 'parent' AND l.revoked_at IS NULL AND a.status = 'active') AS pending
		FROM students st
		WHERE st.active = ?
		AND NOT EXISTS (SELECT 1 FROM student_guardians g WHERE g.student_id = st.id)
		AND NOT EXISTS (SELECT 1 FROM links l JOIN accounts a ON a.id = l.account_id
			WHERE l.student_id = st.id AND l.relation = 'parent' AND l.revoked_at IS NULL AND a.status = 'active' AND a.awaiting_login = ?)
		ORDER BY st.school_id, st.class, st.family_name, st.given_name, st.id`, true, false)
	if err != nil {
		return nil, nil, fmt.Errorf("migration report: %w", err)
	}
	return c, fam, nil
}

// lookalikes are the Cyrillic letters that read as Latin ones (and ё as е).
var lookalikes = strings.NewReplacer("а", "a", "в", "b", "е", "e", "ё", "e", "к", "k", "м", "m", "н", "h", "о", "o",
	"р", "p", "с", "c", "т", "t", "у", "y", "х", "x")

// LoginSkeleton is what a (lower-cased) login looks like: two logins with one skeleton read
// alike, and the store keeps one of them (a unique index).
func LoginSkeleton(login string) string { return lookalikes.Replace(login) }

// LoginLookalike returns the login of a sub-account that reads as login (its skeleton), or ""
// when none does.
func (s *Store) LoginLookalike(ctx context.Context, login string) (string, error) {
	var out string
	err := s.get(ctx, &out, `SELECT login FROM child_credentials WHERE login_skeleton = ?`, LoginSkeleton(login))
	if errors.Is(err, ErrNotFound) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("login look-alike: %w", err)
	}
	return out, nil
}

// RecordSetting records a setting the server runs with (name → value), for the admin commands.
func (s *Store) RecordSetting(ctx context.Context, name, value string) error {
	_, err := s.exec(ctx, `INSERT INTO settings (name, value, recorded_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET value = excluded.value, recorded_at = excluded.recorded_at`, name, value, s.clock())
	if err != nil {
		return fmt.Errorf("record setting %s: %w", name, err)
	}
	return nil
}

// Setting returns a recorded setting; ok is false when none was recorded.
func (s *Store) Setting(ctx context.Context, name string) (value string, ok bool, err error) {
	err = s.get(ctx, &value, `SELECT value FROM settings WHERE name = ?`, name)
	if errors.Is(err, ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read setting %s: %w", name, err)
	}
	return value, true, nil
}
