package storage

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Event types of the diaries' feed (GET /api/v1/events).
const (
	EventLinkCreated        = "link.created"
	EventLinkRevoked        = "link.revoked"
	EventInviteRedeemed     = "invite.redeemed"
	EventAccountDisabled    = "account.disabled"
	EventAccountForgotten   = "account.forgotten"
	EventChildCreated       = "child.created"
	EventChildDisabled      = "child.disabled"
	EventStudentDeactivated = "student.deactivated"
)

// Event is one change the diaries are told of. Data holds no personal data: ids, roles,
// relations and methods only.
type Event struct {
	ID        int64          `db:"id"`
	Type      string         `db:"type"`
	At        time.Time      `db:"at"`
	StudentID string         `db:"student_id"`
	AccountID string         `db:"account_id"`
	Data      map[string]any `db:"-"`
}

// eventsLock is the advisory-lock id every event-writing PostgreSQL transaction takes before
// its event gets an id; it is held until commit.
const eventsLock = 0x65736576 // "esev"

// ErrEventsPruned is returned for a cursor older than what retention kept.
var ErrEventsPruned = errors.New("events after this cursor were removed by retention")

// AppendEvent records an event in the transaction of ctx (in one of its own when there is
// none), so that the event commits with the change it records or not at all.
//
// A reader that follows id > cursor must never see a later id commit before an earlier one:
// sequence values are drawn before commit. The events of a transaction are therefore written
// just before it commits, after it took a transaction-scoped advisory lock on PostgreSQL that it
// holds to the end: ids of committed events follow commit order, and the lock is held only for
// those inserts and the commit (not, say, for the rest of a login). On SQLite, writers are
// serialised anyway.
func (s *Store) AppendEvent(ctx context.Context, e Event) error {
	data := "{}"
	if len(e.Data) > 0 {
		b, err := json.Marshal(e.Data)
		if err != nil {
			return fmt.Errorf("event %s: %w", e.Type, err)
		}
		data = string(b)
	}
	p := pendingEvent{typ: e.Type, at: s.clock(), student: e.StudentID, account: e.AccountID, data: data}
	if h, ok := txFrom(ctx); ok {
		h.events = append(h.events, p)
		return nil
	}
	return s.InTx(ctx, func(ctx context.Context) error {
		h, _ := txFrom(ctx)
		h.events = append(h.events, p)
		return nil
	})
}

// pendingEvent is an event waiting for its transaction's commit.
type pendingEvent struct {
	typ              string
	at               time.Time
	student, account string
	data             string
}

// flushEvents writes the transaction's events, under the events lock (see AppendEvent).
func (s *Store) flushEvents(ctx context.Context, h *txHandle) error {
	if len(h.events) == 0 {
		return nil
	}
	if s.dialect == Postgres {
		if _, err := h.tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, eventsLock); err != nil {
			return fmt.Errorf("events: lock: %w", err)
		}
	}
	for _, e := range h.events {
		if _, err := h.tx.ExecContext(ctx, s.db.Rebind(`INSERT INTO events (type, at, student_id, account_id, data) VALUES (?, ?, ?, ?, ?)`),
			e.typ, e.at, e.student, e.account, e.data); err != nil {
			return fmt.Errorf("event %s: %w", e.typ, err)
		}
	}
	h.events = nil
	return nil
}

// ErrCursorAhead is returned for a cursor beyond every event recorded: no answer gave it.
var ErrCursorAhead = errors.New("the cursor is beyond the newest event")

// Events returns up to limit events with ids above after, oldest first, and the cursor below
// which retention removed events (the cursor of an empty feed). after -1 starts at the oldest
// event kept; an after below what retention removed gives ErrEventsPruned (0 included, once
// anything was pruned), one beyond the newest event ErrCursorAhead.
func (s *Store) Events(ctx context.Context, after int64, limit int) ([]Event, int64, error) {
	// One statement, so one snapshot: the retention bound and the rows are read together, and a
	// prune committing in between cannot make a page skip events instead of answering 410.
	var rows []struct {
		Through int64          `db:"through"`
		Newest  int64          `db:"newest"`
		ID      sql.NullInt64  `db:"id"`
		Type    sql.NullString `db:"type"`
		At      sql.NullTime   `db:"at"`
		Student sql.NullString `db:"student_id"`
		Account sql.NullString `db:"account_id"`
		Raw     sql.NullString `db:"data"`
	}
	err := s.selectAll(ctx, &rows, `SELECT p.through, COALESCE((SELECT MAX(id) FROM events), 0) AS newest,
		e.id, e.type, e.at, e.student_id, e.account_id, e.data
		FROM events_pruned p LEFT JOIN (SELECT id, type, at, student_id, account_id, data FROM events WHERE id > ? ORDER BY id LIMIT ?) e ON 1 = 1
		ORDER BY e.id`, max(after, 0), limit)
	if err != nil {
		return nil, 0, fmt.Errorf("read events: %w", err)
	}
	if len(rows) == 0 {
		return nil, 0, errors.New("read events: no events_pruned row")
	}
	through, newest := rows[0].Through, rows[0].Newest
	if after >= 0 && after < through {
		return nil, 0, ErrEventsPruned
	}
	if after > max(through, newest) {
		return nil, 0, ErrCursorAhead
	}
	out := make([]Event, 0, len(rows))
	for _, r := range rows {
		if !r.ID.Valid {
			continue
		}
		e := Event{ID: r.ID.Int64, Type: r.Type.String, At: r.At.Time, StudentID: r.Student.String, AccountID: r.Account.String}
		if err := json.Unmarshal([]byte(r.Raw.String), &e.Data); err != nil {
			return nil, 0, fmt.Errorf("read event %d: %w", e.ID, err)
		}
		out = append(out, e)
	}
	return out, through, nil
}

// PruneEvents removes events older than keep and remembers the highest id removed, so that a
// cursor below it is told it missed events. It returns how many it removed.
func (s *Store) PruneEvents(ctx context.Context, keep time.Duration) (int64, error) {
	cutoff := s.clock().Add(-keep)
	var n int64
	err := s.InTx(ctx, func(ctx context.Context) error {
		var top *int64
		if err := s.get(ctx, &top, `SELECT MAX(id) FROM events WHERE at < ?`, cutoff); err != nil {
			return fmt.Errorf("prune events: %w", err)
		}
		if top == nil {
			return nil
		}
		res, err := s.exec(ctx, `DELETE FROM events WHERE id <= ?`, *top)
		if err != nil {
			return fmt.Errorf("prune events: %w", err)
		}
		n = affected(res)
		if _, err := s.exec(ctx, `UPDATE events_pruned SET through = ? WHERE through < ?`, *top, *top); err != nil {
			return fmt.Errorf("prune events: %w", err)
		}
		return nil
	})
	return n, err
}
