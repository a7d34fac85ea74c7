package storage

import (
	"context"
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
// sequence values are drawn before commit. On PostgreSQL the transaction therefore takes a
// transaction-scoped advisory lock before it draws the id and holds it until it ends, so ids
// of committed events follow commit order; on SQLite, writers are already serialised.
func (s *Store) AppendEvent(ctx context.Context, e Event) error {
	data := "{}"
	if len(e.Data) > 0 {
		b, err := json.Marshal(e.Data)
		if err != nil {
			return fmt.Errorf("event %s: %w", e.Type, err)
		}
		data = string(b)
	}
	return s.InTx(ctx, func(ctx context.Context) error {
		if s.dialect == Postgres {
			if _, err := s.exec(ctx, `SELECT pg_advisory_xact_lock(?)`, eventsLock); err != nil {
				return fmt.Errorf("event %s: lock: %w", e.Type, err)
			}
		}
		if _, err := s.exec(ctx, `INSERT INTO events (type, at, student_id, account_id, data) VALUES (?, ?, ?, ?, ?)`,
			e.Type, s.clock(), e.StudentID, e.AccountID, data); err != nil {
			return fmt.Errorf("event %s: %w", e.Type, err)
		}
		return nil
	})
}

// ErrCursorAhead is returned for a cursor beyond every event recorded: no answer gave it.
var ErrCursorAhead = errors.New("the cursor is beyond the newest event")

// Events returns up to limit events with ids above after, oldest first, and the cursor below
// which retention removed events (the cursor of an empty feed). after -1 starts at the oldest
// event kept; an after below what retention removed gives ErrEventsPruned (0 included, once
// anything was pruned), one beyond the newest event ErrCursorAhead.
func (s *Store) Events(ctx context.Context, after int64, limit int) ([]Event, int64, error) {
	var bounds struct {
		Through int64 `db:"through"`
		Newest  int64 `db:"newest"`
	}
	if err := s.get(ctx, &bounds, `SELECT p.through, COALESCE((SELECT MAX(id) FROM events), 0) AS newest FROM events_pruned p`); err != nil {
		return nil, 0, fmt.Errorf("read events: %w", err)
	}
	if after >= 0 && after < bounds.Through {
		return nil, 0, ErrEventsPruned
	}
	if after > max(bounds.Through, bounds.Newest) {
		return nil, 0, ErrCursorAhead
	}
	var rows []struct {
		Event
		Raw string `db:"data"`
	}
	if err := s.selectAll(ctx, &rows, `SELECT id, type, at, student_id, account_id, data FROM events WHERE id > ? ORDER BY id LIMIT ?`, max(after, 0), limit); err != nil {
		return nil, 0, fmt.Errorf("read events: %w", err)
	}
	out := make([]Event, len(rows))
	for i, r := range rows {
		out[i] = r.Event
		if err := json.Unmarshal([]byte(r.Raw), &out[i].Data); err != nil {
			return nil, 0, fmt.Errorf("read event %d: %w", r.ID, err)
		}
	}
	return out, bounds.Through, nil
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
