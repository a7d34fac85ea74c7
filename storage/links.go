package storage

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Link ties an account to a student card.
type Link struct {
	ID        string     `db:"id"`
	AccountID string     `db:"account_id"`
	StudentID string     `db:"student_id"`
	Relation  string     `db:"relation"`
	Method    string     `db:"method"`
	CreatedAt time.Time  `db:"created_at"`
	RevokedAt *time.Time `db:"revoked_at"`
}

// LinkedStudent is an active link with its card.
type LinkedStudent struct {
	LinkID    string    `db:"link_id"`
	Relation  string    `db:"relation"`
	Method    string    `db:"method"`
	LinkedAt  time.Time `db:"linked_at"`
	StudentID string    `db:"student_id"`
	SchoolID  string    `db:"school_id"`
	Class     string    `db:"class"`
	Family    string    `db:"family_name"`
	Given     string    `db:"given_name"`
	Middle    string    `db:"middle_name"`
	Birthdate string    `db:"birthdate"`
}

// AddLink links account to student unless an active link exists; it returns the new link's id,
// or "" when it made none.
func (s *Store) AddLink(ctx context.Context, accountID, studentID, relation, method string) (string, error) {
	var n int
	if err := s.get(ctx, &n, `SELECT COUNT(*) FROM links WHERE account_id = ? AND student_id = ? AND revoked_at IS NULL`, accountID, studentID); err != nil {
		return "", fmt.Errorf("add link: %w", err)
	}
	if n > 0 {
		return "", nil
	}
	id := uuid.NewString()
	_, err := s.exec(ctx, `INSERT INTO links (id, account_id, student_id, relation, method, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		id, accountID, studentID, relation, method, s.clock())
	if isUniqueViolation(err) {
		return "", nil // a concurrent login made the same link
	}
	if err != nil {
		return "", fmt.Errorf("add link: %w", err)
	}
	return id, nil
}

// RevokeLink ends an active link by id; it tells whether one was revoked. When it was a
// child's last parent, the child's sub-account loses its sessions and tokens in the same
// transaction (EndOrphanedChildAccess).
func (s *Store) RevokeLink(ctx context.Context, id string) (bool, error) {
	revoked := false
	err := s.InTx(ctx, func(ctx context.Context) error {
		var studentIDs []string
		if err := s.selectAll(ctx, &studentIDs, `UPDATE links SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL RETURNING student_id`, s.clock(), id); err != nil {
			return fmt.Errorf("revoke link: %w", err)
		}
		revoked = len(studentIDs) > 0
		_, err := s.EndOrphanedChildAccess(ctx, studentIDs...)
		return err
	})
	return revoked, err
}

// Links lists the account's links, active ones first; with all=false only active ones.
func (s *Store) Links(ctx context.Context, accountID string, all bool) ([]Link, error) {
	q := `SELECT id, account_id, student_id, relation, method, created_at, revoked_at FROM links WHERE account_id = ?`
	if !all {
		q += ` AND revoked_at IS NULL`
	}
	var out []Link
	if err := s.selectAll(ctx, &out, q+` ORDER BY created_at, id`, accountID); err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	return out, nil
}

// LinkedStudents lists the account's active links to active cards, with the cards.
func (s *Store) LinkedStudents(ctx context.Context, accountID string) ([]LinkedStudent, error) {
	var out []LinkedStudent
	err := s.selectAll(ctx, &out, `SELECT l.id AS link_id, l.relation, l.method, l.created_at AS linked_at, s.id AS student_id,
		s.school_id, s.class, s.family_name, s.given_name, s.middle_name, s.birthdate
		FROM links l JOIN students s ON s.id = l.student_id
		WHERE l.account_id = ? AND l.revoked_at IS NULL AND s.active = ? ORDER BY s.family_name, s.given_name, s.id`, accountID, true)
	if err != nil {
		return nil, fmt.Errorf("linked students: %w", err)
	}
	return out, nil
}

// GuardianLinks lists the active parent links of active accounts to a student card.
func (s *Store) GuardianLinks(ctx context.Context, studentID string) ([]Link, error) {
	var out []Link
	err := s.selectAll(ctx, &out, `SELECT l.id, l.account_id, l.student_id, l.relation, l.method, l.created_at, l.revoked_at
		FROM links l JOIN accounts a ON a.id = l.account_id
		WHERE l.student_id = ? AND l.relation = 'parent' AND l.revoked_at IS NULL AND a.status = 'active' ORDER BY l.created_at`, studentID)
	if err != nil {
		return nil, fmt.Errorf("guardian links: %w", err)
	}
	return out, nil
}

// APILinkMethod names a link's method as the diaries see it (API and event feed): a link made
// by an invite code is "code"; "admin" and "imported" stay as they are.
func APILinkMethod(method string) string {
	if method == "invite" {
		return "code"
	}
	return method
}

// LinkByID returns one link, active or revoked.
func (s *Store) LinkByID(ctx context.Context, id string) (*Link, error) {
	var l Link
	if err := s.get(ctx, &l, `SELECT id, account_id, student_id, relation, method, created_at, revoked_at FROM links WHERE id = ?`, id); err != nil {
		return nil, fmt.Errorf("get link: %w", err)
	}
	return &l, nil
}

// StudentLinks lists the active links of active accounts to a student card, oldest first.
func (s *Store) StudentLinks(ctx context.Context, studentID string) ([]Link, error) {
	var out []Link
	if err := s.selectAll(ctx, &out, `SELECT l.id, l.account_id, l.student_id, l.relation, l.method, l.created_at, l.revoked_at FROM links l
		JOIN accounts a ON a.id = l.account_id
		WHERE l.student_id = ? AND l.revoked_at IS NULL AND a.status = 'active' ORDER BY l.created_at, l.id`, studentID); err != nil {
		return nil, fmt.Errorf("student links: %w", err)
	}
	return out, nil
}

// LinkFollowsSNILS tells whether the card names the account's SNILS for the relation (a
// guardian's for parent, its own for self): a link that the next login makes again.
func (s *Store) LinkFollowsSNILS(ctx context.Context, accountID, studentID, relation string) (bool, error) {
	var n int
	err := s.get(ctx, &n, `SELECT COUNT(*) FROM accounts a WHERE a.id = ? AND a.snils_digest <> '' AND (
		(? = 'parent' AND EXISTS (SELECT 1 FROM student_guardians g WHERE g.student_id = ? AND g.snils_digest = a.snils_digest))
		OR (? = 'self' AND EXISTS (SELECT 1 FROM students st WHERE st.id = ? AND st.snils_digest = a.snils_digest)))`,
		accountID, relation, studentID, relation, studentID)
	if err != nil {
		return false, fmt.Errorf("does the link follow the SNILS: %w", err)
	}
	return n > 0, nil
}
