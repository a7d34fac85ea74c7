package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Consent is what a person agreed a diary may receive: the text version, the scopes and the
// children, as they were when asked.
type Consent struct {
	AccountID   string    `db:"account_id"`
	ClientID    string    `db:"client_id"`
	TextVersion string    `db:"text_version"`
	Scopes      string    `db:"scopes"`
	Students    string    `db:"students"`
	GrantedAt   time.Time `db:"granted_at"`
}

// Consent returns the recorded consent, or ErrNotFound.
func (s *Store) Consent(ctx context.Context, accountID, clientID string) (*Consent, error) {
	var c Consent
	if err := s.get(ctx, &c, `SELECT account_id, client_id, text_version, scopes, students, granted_at FROM consents WHERE account_id = ? AND client_id = ?`, accountID, clientID); err != nil {
		return nil, fmt.Errorf("get consent: %w", err)
	}
	return &c, nil
}

// SaveConsent records (or replaces) a consent.
func (s *Store) SaveConsent(ctx context.Context, c *Consent) error {
	c.GrantedAt = s.clock()
	_, err := s.exec(ctx, `INSERT INTO consents (account_id, client_id, text_version, scopes, students, granted_at) VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (account_id, client_id) DO UPDATE SET text_version = excluded.text_version, scopes = excluded.scopes, students = excluded.students, granted_at = excluded.granted_at`,
		c.AccountID, c.ClientID, c.TextVersion, c.Scopes, c.Students, c.GrantedAt)
	if err != nil {
		return fmt.Errorf("save consent: %w", err)
	}
	return nil
}

// LinkIntent is a diary's request to link the ESIA account that logs in next to its students.
type LinkIntent struct {
	IDHash     string    `db:"id_hash"`
	ClientID   string    `db:"client_id"`
	StudentIDs string    `db:"student_ids"`
	ReturnURI  string    `db:"return_uri"`
	Relation   string    `db:"relation"`
	CreatedAt  time.Time `db:"created_at"`
	ExpiresAt  time.Time `db:"expires_at"`
	// BrowserHash is the browser the intent was first opened in ("" until then).
	BrowserHash string `db:"browser_hash"`
}

const intentCols = `id_hash, client_id, student_ids, return_uri, relation, created_at, expires_at, browser_hash`

// ErrIntentElsewhere is returned when a link intent was opened in another browser first.
var ErrIntentElsewhere = errors.New("the link was opened in another browser")

// BindLinkIntent binds the unexpired intent to the browser browserHash when it is not bound
// yet, and returns it; ErrIntentElsewhere when another browser opened it first.
func (s *Store) BindLinkIntent(ctx context.Context, idHash, browserHash string) (*LinkIntent, error) {
	var l LinkIntent
	err := s.get(ctx, &l, `UPDATE link_intents SET browser_hash = ? WHERE id_hash = ? AND expires_at > ? AND (browser_hash = '' OR browser_hash = ?) RETURNING `+intentCols,
		browserHash, idHash, s.clock(), browserHash)
	if errors.Is(err, ErrNotFound) {
		if _, gerr := s.LinkIntent(ctx, idHash); gerr == nil {
			return nil, ErrIntentElsewhere
		}
	}
	if err != nil {
		return nil, fmt.Errorf("bind link intent: %w", err)
	}
	return &l, nil
}

// Students decodes the intent's student ids.
func (l *LinkIntent) Students() []string {
	var out []string
	_ = json.Unmarshal([]byte(l.StudentIDs), &out)
	return out
}

// CreateLinkIntent stores an intent.
func (s *Store) CreateLinkIntent(ctx context.Context, l *LinkIntent, students []string) error {
	l.StudentIDs = jsonList(students)
	l.CreatedAt = s.clock()
	_, err := s.exec(ctx, `INSERT INTO link_intents (id_hash, client_id, student_ids, return_uri, relation, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		l.IDHash, l.ClientID, l.StudentIDs, l.ReturnURI, l.Relation, l.CreatedAt, l.ExpiresAt.UTC())
	if err != nil {
		return fmt.Errorf("create link intent: %w", err)
	}
	return nil
}

// LinkIntent returns the unexpired intent, or ErrNotFound.
func (s *Store) LinkIntent(ctx context.Context, idHash string) (*LinkIntent, error) {
	var l LinkIntent
	err := s.get(ctx, &l, `SELECT `+intentCols+` FROM link_intents WHERE id_hash = ? AND expires_at > ?`, idHash, s.clock())
	if err != nil {
		return nil, fmt.Errorf("get link intent: %w", err)
	}
	return &l, nil
}

// ConsumeLinkIntent deletes and returns the intent: it links once.
func (s *Store) ConsumeLinkIntent(ctx context.Context, idHash string) (*LinkIntent, error) {
	var out *LinkIntent
	err := s.InTx(ctx, func(ctx context.Context) error {
		l, err := s.LinkIntent(ctx, idHash)
		if err != nil {
			return err
		}
		res, err := s.exec(ctx, `DELETE FROM link_intents WHERE id_hash = ?`, idHash)
		if err != nil {
			return fmt.Errorf("consume link intent: %w", err)
		}
		if affected(res) == 0 {
			return fmt.Errorf("consume link intent: %w", ErrNotFound)
		}
		out = l
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return nil, err
	}
	return out, err
}
