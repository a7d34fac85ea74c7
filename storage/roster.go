package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// School is a school of the region.
type School struct {
	ID        string    `db:"id"`
	Name      string    `db:"name"`
	CreatedAt time.Time `db:"created_at"`
}

// Student is one card of the roster the diary holds. Its SNILS and its guardians' are kept only
// as keyed digests.
type Student struct {
	ID          string    `db:"id"`
	SchoolID    string    `db:"school_id"`
	Class       string    `db:"class"`
	FamilyName  string    `db:"family_name"`
	GivenName   string    `db:"given_name"`
	MiddleName  string    `db:"middle_name"`
	Birthdate   string    `db:"birthdate"`
	SNILSDigest string    `db:"snils_digest"`
	Active      bool      `db:"active"`
	UpdatedAt   time.Time `db:"updated_at"`
}

// Guardian is a parent written on a student's card.
type Guardian struct {
	SNILSDigest string `db:"snils_digest"`
	Name        string `db:"name"`
}

const studentCols = `id, school_id, class, family_name, given_name, middle_name, birthdate, snils_digest, active, updated_at`

// UpsertSchool adds or renames a school.
func (s *Store) UpsertSchool(ctx context.Context, id, name string) error {
	_, err := s.exec(ctx, `INSERT INTO schools (id, name, created_at) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET name = excluded.name`, id, name, s.clock())
	if err != nil {
		return fmt.Errorf("upsert school %s: %w", id, err)
	}
	return nil
}

// Schools lists every school.
func (s *Store) Schools(ctx context.Context) ([]School, error) {
	var out []School
	if err := s.selectAll(ctx, &out, `SELECT id, name, created_at FROM schools ORDER BY id`); err != nil {
		return nil, fmt.Errorf("list schools: %w", err)
	}
	return out, nil
}

// Student returns the card id.
func (s *Store) Student(ctx context.Context, id string) (*Student, error) {
	var st Student
	if err := s.get(ctx, &st, `SELECT `+studentCols+` FROM students WHERE id = ?`, id); err != nil {
		return nil, fmt.Errorf("get student: %w", err)
	}
	return &st, nil
}

// studentForUpdate reads a card and, on PostgreSQL, locks it until the transaction ends.
func (s *Store) studentForUpdate(ctx context.Context, id string) (*Student, error) {
	q := `SELECT ` + studentCols + ` FROM students WHERE id = ?`
	if s.dialect == Postgres {
		q += ` FOR UPDATE`
	}
	var st Student
	if err := s.get(ctx, &st, q, id); err != nil {
		return nil, fmt.Errorf("get student: %w", err)
	}
	return &st, nil
}

// Guardians returns the guardians of a card, ordered by digest.
func (s *Store) Guardians(ctx context.Context, studentID string) ([]Guardian, error) {
	var g []Guardian
	if err := s.selectAll(ctx, &g, `SELECT snils_digest, name FROM student_guardians WHERE student_id = ? ORDER BY snils_digest`, studentID); err != nil {
		return nil, fmt.Errorf("get guardians: %w", err)
	}
	return g, nil
}

// UpsertStudent writes a card and its guardians, and tells whether anything changed: writing the
// same card twice changes nothing.
func (s *Store) UpsertStudent(ctx context.Context, st *Student, guardians []Guardian) (bool, error) {
	changed := false
	err := s.InTx(ctx, func(ctx context.Context) error {
		// Two writers of one card run one after the other: the second sees the first's card
		// (a new card is inserted once, a change is made and told once).
		old, err := s.studentForUpdate(ctx, st.ID)
		now := s.clock()
		if errors.Is(err, ErrNotFound) {
			res, ierr := s.exec(ctx, `INSERT INTO students (`+studentCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`,
				st.ID, st.SchoolID, st.Class, st.FamilyName, st.GivenName, st.MiddleName, st.Birthdate, st.SNILSDigest, st.Active, now)
			if ierr != nil {
				return fmt.Errorf("insert student %s: %w", st.ID, ierr)
			}
			if affected(res) == 0 { // a concurrent writer inserted it: take it from there
				old, err = s.studentForUpdate(ctx, st.ID)
			}
		}
		switch {
		case errors.Is(err, ErrNotFound):
			changed = true
		case err != nil:
			return err
		default:
			if old.SchoolID != st.SchoolID || old.Class != st.Class || old.FamilyName != st.FamilyName || old.GivenName != st.GivenName ||
				old.MiddleName != st.MiddleName || old.Birthdate != st.Birthdate || old.SNILSDigest != st.SNILSDigest || old.Active != st.Active {
				changed = true
				_, err = s.exec(ctx, `UPDATE students SET school_id = ?, class = ?, family_name = ?, given_name = ?, middle_name = ?, birthdate = ?, snils_digest = ?, active = ?, updated_at = ? WHERE id = ?`,
					st.SchoolID, st.Class, st.FamilyName, st.GivenName, st.MiddleName, st.Birthdate, st.SNILSDigest, st.Active, now, st.ID)
				if err != nil {
					return fmt.Errorf("update student %s: %w", st.ID, err)
				}
				if old.Active && !st.Active {
					if _, err := s.EndOrphanedChildAccess(ctx, st.ID); err != nil {
						return err
					}
					if err := s.AppendEvent(ctx, Event{Type: EventStudentDeactivated, StudentID: st.ID}); err != nil {
						return err
					}
				}
			}
		}
		have, err := s.Guardians(ctx, st.ID)
		if err != nil {
			return err
		}
		want := slices.Clone(guardians)
		slices.SortFunc(want, func(a, b Guardian) int { return strings.Compare(a.SNILSDigest, b.SNILSDigest) })
		want = slices.CompactFunc(want, func(a, b Guardian) bool { return a.SNILSDigest == b.SNILSDigest })
		guardiansChanged := !slices.Equal(have, want)
		if guardiansChanged {
			changed = true
			if _, err := s.exec(ctx, `DELETE FROM student_guardians WHERE student_id = ?`, st.ID); err != nil {
				return fmt.Errorf("replace guardians of %s: %w", st.ID, err)
			}
			for _, g := range want {
				if _, err := s.exec(ctx, `INSERT INTO student_guardians (student_id, snils_digest, name) VALUES (?, ?, ?)`, st.ID, g.SNILSDigest, g.Name); err != nil {
					return fmt.Errorf("insert guardian of %s: %w", st.ID, err)
				}
			}
		}
		if guardiansChanged || (old != nil && old.SNILSDigest != st.SNILSDigest) {
			return s.revokeStaleSNILSLinks(ctx, st.ID)
		}
		return nil
	})
	return changed, err
}

// SetStudentActive marks a card active or inactive (a student who left). It tells whether the
// card changed.
func (s *Store) SetStudentActive(ctx context.Context, id string, active bool) (bool, error) {
	var res sql.Result
	err := s.InTx(ctx, func(ctx context.Context) error {
		var err error
		res, err = s.exec(ctx, `UPDATE students SET active = ?, updated_at = ? WHERE id = ? AND active <> ?`, active, s.clock(), id, active)
		if err != nil {
			return fmt.Errorf("set student %s active=%v: %w", id, active, err)
		}
		if !active && affected(res) > 0 {
			// A child who left loses the sub-account's sessions and tokens at once.
			if _, err = s.EndOrphanedChildAccess(ctx, id); err != nil {
				return err
			}
			return s.AppendEvent(ctx, Event{Type: EventStudentDeactivated, StudentID: id})
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	if affected(res) == 0 {
		if _, err := s.Student(ctx, id); err != nil {
			return false, err
		}
		return false, nil
	}
	return true, nil
}

// StudentsForSNILS lists, in one statement, the active cards on which digest d is a guardian's
// SNILS (parents) and those whose own SNILS it is (own), each ordered by id: what the link
// re-check at every login needs.
func (s *Store) StudentsForSNILS(ctx context.Context, d string) (parents, own []Student, err error) {
	var rows []struct {
		Via string `db:"via"`
		Student
	}
	// snils_digest <> '' lets the planner use the partial index even in a generic plan.
	err = s.selectAll(ctx, &rows, `SELECT 'parent' AS via, s.id, s.school_id, s.class, s.family_name, s.given_name, s.middle_name, s.birthdate, s.snils_digest, s.active, s.updated_at
		FROM student_guardians g JOIN students s ON s.id = g.student_id WHERE g.snils_digest = ? AND s.active = ?
		UNION ALL
		SELECT 'self' AS via, `+studentCols+` FROM students WHERE snils_digest = ? AND snils_digest <> '' AND active = ?
		ORDER BY 1, 2`, d, true, d, true)
	if err != nil {
		return nil, nil, fmt.Errorf("students for SNILS: %w", err)
	}
	for _, r := range rows {
		if r.Via == "parent" {
			parents = append(parents, r.Student)
		} else {
			own = append(own, r.Student)
		}
	}
	return parents, own, nil
}

// StudentSelection selects cards for invites: a school, optionally a class, optionally ids.
type StudentSelection struct {
	SchoolID string
	Class    string
	IDs      []string
}

// SelectStudents returns the active cards of a selection, ordered by class and name.
func (s *Store) SelectStudents(ctx context.Context, sel StudentSelection) ([]Student, error) {
	q := `SELECT ` + studentCols + ` FROM students WHERE school_id = ? AND active = ?`
	args := []any{sel.SchoolID, true}
	if sel.Class != "" {
		q += ` AND class = ?`
		args = append(args, sel.Class)
	}
	if len(sel.IDs) > 0 {
		q += ` AND id IN (?` + strings.Repeat(", ?", len(sel.IDs)-1) + `)`
		for _, id := range sel.IDs {
			args = append(args, id)
		}
	}
	q += ` ORDER BY class, family_name, given_name, id`
	var out []Student
	if err := s.selectAll(ctx, &out, q, args...); err != nil {
		return nil, fmt.Errorf("select students: %w", err)
	}
	return out, nil
}

// AnalyzeRoster refreshes the query planner's statistics of the roster tables (after a large
// import).
func (s *Store) AnalyzeRoster(ctx context.Context) error {
	for _, t := range []string{"students", "student_guardians"} {
		if _, err := s.db.ExecContext(ctx, "ANALYZE "+t); err != nil {
			return fmt.Errorf("analyze %s: %w", t, err)
		}
	}
	return nil
}

// revokeStaleSNILSLinks ends, at once, the links made by SNILS to a card that no longer names
// that SNILS — a guardian taken off the card, the card's own SNILS changed — instead of waiting
// for the person's next login; and with them a sub-account that has no parent left.
func (s *Store) revokeStaleSNILSLinks(ctx context.Context, studentID string) error {
	var stale []Link
	err := s.selectAll(ctx, &stale, `SELECT l.id, l.account_id, l.student_id, l.relation, l.method, l.created_at, l.revoked_at
		FROM links l JOIN accounts a ON a.id = l.account_id
		WHERE l.student_id = ? AND l.method = 'snils' AND l.revoked_at IS NULL AND (
			(l.relation = 'parent' AND NOT EXISTS (SELECT 1 FROM student_guardians g WHERE g.student_id = l.student_id AND g.snils_digest = a.snils_digest AND a.snils_digest <> ''))
			OR (l.relation = 'self' AND NOT EXISTS (SELECT 1 FROM students st WHERE st.id = l.student_id AND st.snils_digest = a.snils_digest AND a.snils_digest <> '')))`, studentID)
	if err != nil {
		return fmt.Errorf("find stale SNILS links of %s: %w", studentID, err)
	}
	for _, l := range stale {
		if _, err := s.exec(ctx, `UPDATE links SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL`, s.clock(), l.ID); err != nil {
			return fmt.Errorf("revoke stale SNILS link: %w", err)
		}
		if err := s.Audit(ctx, "roster", "link.revoke", l.StudentID, map[string]any{"account": l.AccountID, "method": "snils", "reason": "snils no longer on the card"}); err != nil {
			return err
		}
		if err := s.AppendEvent(ctx, Event{Type: EventLinkRevoked, AccountID: l.AccountID, StudentID: l.StudentID,
			Data: map[string]any{"link_id": l.ID, "relation": l.Relation, "method": APILinkMethod(l.Method)}}); err != nil {
			return err
		}
		// The end of a right ends what the account was given, as any other end of a link does.
		if err := s.RevokeTokensOf(ctx, l.AccountID); err != nil {
			return err
		}
	}
	if len(stale) > 0 {
		_, err = s.EndOrphanedChildAccess(ctx, studentID)
	}
	return err
}
