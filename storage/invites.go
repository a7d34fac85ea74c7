package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Invite is a stored invite code: only its keyed digest, never the code.
type Invite struct {
	ID         string     `db:"id"`
	CodeDigest string     `db:"code_digest"`
	StudentID  string     `db:"student_id"`
	Role       string     `db:"role"`
	CreatedBy  string     `db:"created_by"`
	CreatedAt  time.Time  `db:"created_at"`
	ExpiresAt  time.Time  `db:"expires_at"`
	RedeemedBy *string    `db:"redeemed_by"`
	RedeemedAt *time.Time `db:"redeemed_at"`
	RevokedAt  *time.Time `db:"revoked_at"`
}

// InviteRow is an invite with its student's card, for listings.
type InviteRow struct {
	Invite
	SchoolID   string `db:"school_id"`
	Class      string `db:"class"`
	FamilyName string `db:"family_name"`
	GivenName  string `db:"given_name"`
}

// Status is open, redeemed, expired or revoked at now.
func (i *Invite) Status(now time.Time) string {
	switch {
	case i.RedeemedAt != nil: // a revocation asked for while it was being used does not undo that
		return "redeemed"
	case i.RevokedAt != nil:
		return "revoked"
	case !i.ExpiresAt.After(now):
		return "expired"
	}
	return "open"
}

const inviteCols = `id, code_digest, student_id, role, created_by, created_at, expires_at, redeemed_by, redeemed_at, revoked_at`

// CreateInvites stores invites, many rows per statement (in the caller's transaction, when it
// has one).
func (s *Store) CreateInvites(ctx context.Context, invs []Invite) error {
	return s.InTx(ctx, func(ctx context.Context) error {
		for len(invs) > 0 {
			n := min(len(invs), 200)
			q := `INSERT INTO invites (id, code_digest, student_id, role, created_by, created_at, expires_at) VALUES ` +
				strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, ?), ", n), ", ")
			args := make([]any, 0, 7*n)
			for _, in := range invs[:n] {
				args = append(args, in.ID, in.CodeDigest, in.StudentID, in.Role, in.CreatedBy, in.CreatedAt.UTC(), in.ExpiresAt.UTC())
			}
			_, err := s.exec(ctx, q, args...)
			if isUniqueViolation(err) {
				return fmt.Errorf("store invites: %w", ErrConflict)
			}
			if err != nil {
				return fmt.Errorf("store invites: %w", err)
			}
			invs = invs[n:]
		}
		return nil
	})
}

// OpenInvites lists the open (unredeemed, unrevoked, unexpired) invites of students for role.
func (s *Store) OpenInvites(ctx context.Context, studentIDs []string, role string) ([]Invite, error) {
	var out []Invite
	for chunk := range chunks(studentIDs, 500) {
		var part []Invite
		q := `SELECT ` + inviteCols + ` FROM invites WHERE role = ? AND redeemed_at IS NULL AND revoked_at IS NULL AND expires_at > ? AND student_id IN (?` + strings.Repeat(", ?", len(chunk)-1) + `)`
		args := []any{role, s.clock()}
		for _, id := range chunk {
			args = append(args, id)
		}
		if err := s.selectAll(ctx, &part, q, args...); err != nil {
			return nil, fmt.Errorf("open invites: %w", err)
		}
		out = append(out, part...)
	}
	return out, nil
}

func chunks(ids []string, n int) func(func([]string) bool) {
	return func(yield func([]string) bool) {
		for len(ids) > 0 {
			k := min(n, len(ids))
			if !yield(ids[:k]) {
				return
			}
			ids = ids[k:]
		}
	}
}

// RevokeInvites revokes open invites by id and returns how many it revoked.
func (s *Store) RevokeInvites(ctx context.Context, ids []string) (int, error) {
	n := 0
	err := s.InTx(ctx, func(ctx context.Context) error {
		for chunk := range chunks(ids, 500) {
			args := []any{s.clock()}
			for _, id := range chunk {
				args = append(args, id)
			}
			res, err := s.exec(ctx, `UPDATE invites SET revoked_at = ? WHERE revoked_at IS NULL AND redeemed_at IS NULL AND id IN (?`+strings.Repeat(", ?", len(chunk)-1)+`)`, args...)
			if err != nil {
				return fmt.Errorf("revoke invites: %w", err)
			}
			n += int(affected(res))
		}
		return nil
	})
	return n, err
}

// InviteFilter selects invites to list.
type InviteFilter struct {
	SchoolID string
	Class    string
	Role     string
}

// ListInvites lists invites with their students' cards.
func (s *Store) ListInvites(ctx context.Context, f InviteFilter) ([]InviteRow, error) {
	q := `SELECT i.id, i.code_digest, i.student_id, i.role, i.created_by, i.created_at, i.expires_at, i.redeemed_by, i.redeemed_at, i.revoked_at,
		s.school_id, s.class, s.family_name, s.given_name FROM invites i JOIN students s ON s.id = i.student_id WHERE 1 = 1`
	var args []any
	if f.SchoolID != "" {
		q += ` AND s.school_id = ?`
		args = append(args, f.SchoolID)
	}
	if f.Class != "" {
		q += ` AND s.class = ?`
		args = append(args, f.Class)
	}
	if f.Role != "" {
		q += ` AND i.role = ?`
		args = append(args, f.Role)
	}
	var out []InviteRow
	if err := s.selectAll(ctx, &out, q+` ORDER BY s.school_id, s.class, s.family_name, s.given_name, i.role, i.created_at`, args...); err != nil {
		return nil, fmt.Errorf("list invites: %w", err)
	}
	return out, nil
}

// Reasons RedeemInvite refuses a code.
var (
	ErrInviteUnknown  = errors.New("invite code unknown")
	ErrInviteUsed     = errors.New("invite code already used")
	ErrInviteExpired  = errors.New("invite code expired")
	ErrInviteRevoked  = errors.New("invite code revoked")
	ErrInviteWrongUse = errors.New("invite code is for another role")
)

// RedeemInvite marks the open invite with digest as redeemed by accountID, atomically: of two
// concurrent redemptions exactly one succeeds.
func (s *Store) RedeemInvite(ctx context.Context, digest, role, accountID string) (*Invite, error) {
	now := s.clock()
	res, err := s.exec(ctx, `UPDATE invites SET redeemed_by = ?, redeemed_at = ? WHERE code_digest = ? AND role = ? AND redeemed_at IS NULL AND revoked_at IS NULL AND expires_at > ?`,
		accountID, now, digest, role, now)
	if err != nil {
		return nil, fmt.Errorf("redeem invite: %w", err)
	}
	var in Invite
	if err := s.get(ctx, &in, `SELECT `+inviteCols+` FROM invites WHERE code_digest = ?`, digest); err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, ErrInviteUnknown
		}
		return nil, fmt.Errorf("redeem invite: %w", err)
	}
	if affected(res) == 1 {
		return &in, nil
	}
	switch {
	case in.RevokedAt != nil:
		return nil, ErrInviteRevoked
	case in.RedeemedAt != nil:
		return nil, ErrInviteUsed
	case in.Role != role:
		return nil, ErrInviteWrongUse
	}
	return nil, ErrInviteExpired
}

// UnredeemInvite gives an invite back (when the link it was for could not be made): open again,
// unless a revocation was asked for meanwhile or a newer code for the same student and role was
// issued (a rotation that saw it in use) — then it ends revoked. The caller holds the card's lock
// (LockStudents), as issuing and revoking do.
func (s *Store) UnredeemInvite(ctx context.Context, id string) error {
	if _, err := s.exec(ctx, `UPDATE invites SET redeemed_by = NULL, redeemed_at = NULL,
		revoked_at = CASE WHEN revoked_at IS NULL AND EXISTS (SELECT 1 FROM invites n WHERE n.student_id = invites.student_id AND n.role = invites.role
			AND n.id <> invites.id AND n.created_at > invites.created_at) THEN ? ELSE revoked_at END
		WHERE id = ?`, s.clock(), id); err != nil {
		return fmt.Errorf("unredeem invite: %w", err)
	}
	return nil
}

// InviteStat counts invites of a school class by status.
type InviteStat struct {
	SchoolID string
	Class    string
	Role     string
	Open     int
	Redeemed int
	Expired  int
	Revoked  int
}

// InviteByID returns one invite.
func (s *Store) InviteByID(ctx context.Context, id string) (*Invite, error) {
	var in Invite
	if err := s.get(ctx, &in, `SELECT `+inviteCols+` FROM invites WHERE id = ?`, id); err != nil {
		return nil, fmt.Errorf("get invite: %w", err)
	}
	return &in, nil
}

// LockStudents takes the row locks of the students' cards until the transaction ends (PostgreSQL;
// SQLite transactions already hold the one write lock), so that two issues or rotations of
// codes for the same students run one after the other: each sees the other's open codes.
func (s *Store) LockStudents(ctx context.Context, ids []string) error {
	if s.dialect != Postgres || len(ids) == 0 {
		return nil
	}
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	for chunk := range chunks(sorted, 500) {
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = id
		}
		var got []string
		if err := s.selectAll(ctx, &got, `SELECT id FROM students WHERE id IN (?`+strings.Repeat(", ?", len(chunk)-1)+`) ORDER BY id FOR UPDATE`, args...); err != nil {
			return fmt.Errorf("lock students: %w", err)
		}
	}
	return nil
}

// RevokeInvite revokes one invite: it tells whether it revoked it now; storage.ErrInviteUsed
// when the code was used (a revocation asked for while it was being used is recorded, so that a
// redemption given back leaves it revoked), ErrNotFound when there is no such invite. One
// already revoked or expired is revoked without change (false). The caller holds the card's lock.
func (s *Store) RevokeInvite(ctx context.Context, id string) (bool, error) {
	res, err := s.exec(ctx, `UPDATE invites SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, s.clock(), id)
	if err != nil {
		return false, fmt.Errorf("revoke invite: %w", err)
	}
	in, err := s.InviteByID(ctx, id)
	if err != nil {
		return false, err
	}
	if in.RedeemedAt != nil {
		return false, ErrInviteUsed
	}
	return affected(res) == 1, nil
}
