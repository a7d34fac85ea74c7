package storage

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// BrowserSession is a logged-in browser. The cookie carries a random id; the database keeps only
// its hash.
type BrowserSession struct {
	IDHash string `db:"id_hash"`
	// SID is the session's public id, put in ID tokens as sid; made at creation.
	SID       string    `db:"sid"`
	AccountID string    `db:"account_id"`
	AuthTime  time.Time `db:"auth_time"`
	AMRJSON   string    `db:"amr"`
	ACR       string    `db:"acr"`
	CreatedAt time.Time `db:"created_at"`
	ExpiresAt time.Time `db:"expires_at"`
}

// AMR decodes the authentication methods.
func (b *BrowserSession) AMR() []string {
	var out []string
	_ = json.Unmarshal([]byte(b.AMRJSON), &out)
	return out
}

// CreateBrowserSession stores a new session.
func (s *Store) CreateBrowserSession(ctx context.Context, b *BrowserSession, amr []string) error {
	b.AMRJSON = jsonList(amr)
	b.CreatedAt = s.clock()
	if b.SID == "" {
		b.SID = newSID()
	}
	_, err := s.exec(ctx, `INSERT INTO browser_sessions (id_hash, account_id, auth_time, amr, acr, created_at, expires_at, sid) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		b.IDHash, b.AccountID, b.AuthTime.UTC(), b.AMRJSON, b.ACR, b.CreatedAt, b.ExpiresAt.UTC(), b.SID)
	if err != nil {
		return fmt.Errorf("create browser session: %w", err)
	}
	return nil
}

// BrowserSession returns the unexpired session with idHash, or ErrNotFound.
func (s *Store) BrowserSession(ctx context.Context, idHash string) (*BrowserSession, error) {
	var b BrowserSession
	err := s.get(ctx, &b, `SELECT id_hash, account_id, auth_time, amr, acr, created_at, expires_at, sid FROM browser_sessions WHERE id_hash = ? AND expires_at > ?`, idHash, s.clock())
	if err != nil {
		return nil, fmt.Errorf("get browser session: %w", err)
	}
	return &b, nil
}

// newSID makes a session's public id: 128 random bits, base64url.
func newSID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// DeleteBrowserSessionsBySID ends the session with public id sid of account accountID (a
// diary's logout request names both in its ID token); it reports how many it ended.
func (s *Store) DeleteBrowserSessionsBySID(ctx context.Context, sid, accountID string) (int, error) {
	if sid == "" {
		return 0, nil
	}
	var n int
	err := s.InTx(ctx, func(ctx context.Context) error {
		res, err := s.exec(ctx, `DELETE FROM browser_sessions WHERE sid = ? AND account_id = ?`, sid, accountID)
		if err != nil {
			return fmt.Errorf("delete browser session by sid: %w", err)
		}
		if n = int(affected(res)); n > 0 {
			return s.enqueueLogouts(ctx, accountID, sid)
		}
		return nil
	})
	return n, err
}

// DeleteBrowserSession ends a session; the diaries that take back-channel logouts are told.
func (s *Store) DeleteBrowserSession(ctx context.Context, idHash string) error {
	return s.InTx(ctx, func(ctx context.Context) error {
		var ended struct {
			AccountID string `db:"account_id"`
			SID       string `db:"sid"`
		}
		err := s.get(ctx, &ended, `SELECT account_id, sid FROM browser_sessions WHERE id_hash = ?`, idHash)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("delete browser session: %w", err)
		}
		if _, err := s.exec(ctx, `DELETE FROM browser_sessions WHERE id_hash = ?`, idHash); err != nil {
			return fmt.Errorf("delete browser session: %w", err)
		}
		return s.enqueueLogouts(ctx, ended.AccountID, ended.SID)
	})
}

// LoginRequest is an authorization request waiting for the user to log in.
type LoginRequest struct {
	ID             string    `db:"id"`
	AuthorizeQuery string    `db:"authorize_query"`
	BrowserHash    string    `db:"browser_hash"`
	SessionHash    string    `db:"session_hash"`
	CreatedAt      time.Time `db:"created_at"`
	ExpiresAt      time.Time `db:"expires_at"`
	// LinkIntent is the hash of a diary link intent this login completes, if any.
	LinkIntent string `db:"link_intent"`
	// StudentID is the student picked on the picker page.
	StudentID string `db:"student_id"`
	// Consented records that consent was given during this login.
	Consented bool `db:"consented"`
}

const loginCols = `id, authorize_query, browser_hash, session_hash, created_at, expires_at, link_intent, student_id, consented`

// CreateLoginRequest stores r.
func (s *Store) CreateLoginRequest(ctx context.Context, r *LoginRequest) error {
	r.CreatedAt = s.clock()
	_, err := s.exec(ctx, `INSERT INTO login_requests (`+loginCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		r.ID, r.AuthorizeQuery, r.BrowserHash, r.SessionHash, r.CreatedAt, r.ExpiresAt.UTC(), r.LinkIntent, r.StudentID, r.Consented)
	if err != nil {
		return fmt.Errorf("create login request: %w", err)
	}
	return nil
}

// LoginRequest returns the unexpired login request id, or ErrNotFound.
func (s *Store) LoginRequest(ctx context.Context, id string) (*LoginRequest, error) {
	var r LoginRequest
	err := s.get(ctx, &r, `SELECT `+loginCols+` FROM login_requests WHERE id = ? AND expires_at > ?`, id, s.clock())
	if err != nil {
		return nil, fmt.Errorf("get login request: %w", err)
	}
	return &r, nil
}

// CompleteLoginRequest records that the session sessionHash logged in for request id, binds the
// request to the browser id the login renewed (browserHash), and returns the request.
func (s *Store) CompleteLoginRequest(ctx context.Context, id, sessionHash, browserHash string) (*LoginRequest, error) {
	var r LoginRequest
	err := s.get(ctx, &r, `UPDATE login_requests SET session_hash = ?, browser_hash = ? WHERE id = ? AND expires_at > ? RETURNING `+loginCols, sessionHash, browserHash, id, s.clock())
	if err != nil {
		return nil, fmt.Errorf("complete login request: %w", err)
	}
	return &r, nil
}

// UpdateLoginRequest records the picked student and the consent of a login in progress.
func (s *Store) UpdateLoginRequest(ctx context.Context, id, studentID string, consented bool) error {
	res, err := s.exec(ctx, `UPDATE login_requests SET student_id = ?, consented = ? WHERE id = ? AND expires_at > ?`, studentID, consented, id, s.clock())
	if err != nil {
		return fmt.Errorf("update login request: %w", err)
	}
	if affected(res) == 0 {
		return fmt.Errorf("update login request: %w", ErrNotFound)
	}
	return nil
}

// ConsumeLoginRequest deletes and returns the login request id: it can be resumed once.
func (s *Store) ConsumeLoginRequest(ctx context.Context, id string) (*LoginRequest, error) {
	var r LoginRequest
	err := s.get(ctx, &r, `DELETE FROM login_requests WHERE id = ? AND expires_at > ? RETURNING `+loginCols, id, s.clock())
	if err != nil {
		return nil, fmt.Errorf("consume login request: %w", err)
	}
	return &r, nil
}

// UpstreamFlow is one trip to the upstream identity provider: single use, short-lived, bound to
// the browser that started it.
type UpstreamFlow struct {
	State          string    `db:"state"`
	Connector      string    `db:"connector"`
	LoginRequestID string    `db:"login_request_id"`
	BrowserHash    string    `db:"browser_hash"`
	Data           string    `db:"data"`
	CreatedAt      time.Time `db:"created_at"`
	ExpiresAt      time.Time `db:"expires_at"`
}

// flowCols are the upstream_flows columns, in the order UpstreamFlow is written and read.
const flowCols = `state, connector, login_request_id, browser_hash, data, created_at, expires_at`

// CreateUpstreamFlow stores f.
func (s *Store) CreateUpstreamFlow(ctx context.Context, f *UpstreamFlow) error {
	f.CreatedAt = s.clock()
	_, err := s.exec(ctx, `INSERT INTO upstream_flows (`+flowCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		f.State, f.Connector, f.LoginRequestID, f.BrowserHash, f.Data, f.CreatedAt, f.ExpiresAt.UTC())
	if err != nil {
		return fmt.Errorf("create upstream flow: %w", err)
	}
	return nil
}

// CreateLoginWithFlow writes a login request and the upstream flow that starts it, together or
// not at all: on PostgreSQL as one statement (a data-modifying WITH), elsewhere in one
// transaction.
func (s *Store) CreateLoginWithFlow(ctx context.Context, r *LoginRequest, f *UpstreamFlow) error {
	r.CreatedAt = s.clock()
	f.CreatedAt = r.CreatedAt
	if s.dialect != Postgres {
		return s.InTx(ctx, func(ctx context.Context) error {
			if err := s.CreateLoginRequest(ctx, r); err != nil {
				return err
			}
			return s.CreateUpstreamFlow(ctx, f)
		})
	}
	_, err := s.exec(ctx, `WITH lr AS (INSERT INTO login_requests (`+loginCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id)
		INSERT INTO upstream_flows (`+flowCols+`) SELECT ?, ?, lr.id, ?, ?, ?, ? FROM lr`,
		r.ID, r.AuthorizeQuery, r.BrowserHash, r.SessionHash, r.CreatedAt, r.ExpiresAt.UTC(), r.LinkIntent, r.StudentID, r.Consented,
		f.State, f.Connector, f.BrowserHash, f.Data, f.CreatedAt, f.ExpiresAt.UTC())
	if err != nil {
		return fmt.Errorf("create login request and upstream flow: %w", err)
	}
	return nil
}

// ConsumeUpstreamFlow deletes and returns the unexpired flow with state; a second call for the
// same state, even a concurrent one, gets ErrNotFound.
func (s *Store) ConsumeUpstreamFlow(ctx context.Context, state string) (*UpstreamFlow, error) {
	// One statement: the row is gone whoever asked first, expired or not, and only the one
	// DELETE that removed it sees it.
	var f UpstreamFlow
	err := s.get(ctx, &f, `DELETE FROM upstream_flows WHERE state = ? RETURNING `+flowCols, state)
	if err != nil {
		return nil, fmt.Errorf("consume upstream flow: %w", err)
	}
	if !f.ExpiresAt.After(s.clock()) {
		return nil, fmt.Errorf("upstream flow expired: %w", ErrNotFound)
	}
	return &f, nil
}

// AuditEvent is one line of the append-only audit log.
type AuditEvent struct {
	ID      int64     `db:"id"`
	At      time.Time `db:"at"`
	Actor   string    `db:"actor"`
	Action  string    `db:"action"`
	Target  string    `db:"target"`
	Details string    `db:"details"`
}

// Audit appends an event. details must hold no personal data.
func (s *Store) Audit(ctx context.Context, actor, action, target string, details map[string]any) error {
	d := "{}"
	if len(details) > 0 {
		b, err := json.Marshal(details)
		if err != nil {
			return fmt.Errorf("audit %s: %w", action, err)
		}
		d = string(b)
	}
	if _, err := s.exec(ctx, `INSERT INTO audit_log (at, actor, action, target, details) VALUES (?, ?, ?, ?, ?)`, s.clock(), actor, action, target, d); err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}

// AuditEvents returns the newest events first, at most limit.
func (s *Store) AuditEvents(ctx context.Context, limit int) ([]AuditEvent, error) {
	var ev []AuditEvent
	if err := s.selectAll(ctx, &ev, `SELECT id, at, actor, action, target, details FROM audit_log ORDER BY id DESC LIMIT ?`, limit); err != nil {
		return nil, fmt.Errorf("read audit log: %w", err)
	}
	return ev, nil
}

// SessionWithAccount returns the unexpired session with idHash and its account in one query.
func (s *Store) SessionWithAccount(ctx context.Context, idHash string) (*BrowserSession, *Account, error) {
	var r struct {
		IDHash      string    `db:"id_hash"`
		SID         string    `db:"sid"`
		AuthTime    time.Time `db:"auth_time"`
		AMR         string    `db:"amr"`
		ACR         string    `db:"acr"`
		SCreated    time.Time `db:"s_created"`
		SExpires    time.Time `db:"s_expires"`
		ID          string    `db:"id"`
		Kind        string    `db:"kind"`
		Upstream    string    `db:"upstream"`
		UpstreamSub *string   `db:"upstream_sub"`
		Family      string    `db:"family_name"`
		Given       string    `db:"given_name"`
		Middle      string    `db:"middle_name"`
		Birthdate   string    `db:"birthdate"`
		SNILS       string    `db:"snils_digest"`
		Status      string    `db:"status"`
		ACreated    time.Time `db:"a_created"`
		AUpdated    time.Time `db:"a_updated"`
		Unconfirmed bool      `db:"unconfirmed"`
	}
	err := s.get(ctx, &r, `SELECT bs.id_hash, bs.sid, bs.auth_time, bs.amr, bs.acr, bs.created_at AS s_created, bs.expires_at AS s_expires,
		a.id, a.kind, a.upstream, a.upstream_sub, a.family_name, a.given_name, a.middle_name, a.birthdate, a.snils_digest, a.status,
		a.created_at AS a_created, a.updated_at AS a_updated, a.unconfirmed
		FROM browser_sessions bs JOIN accounts a ON a.id = bs.account_id WHERE bs.id_hash = ? AND bs.expires_at > ?`, idHash, s.clock())
	if err != nil {
		return nil, nil, fmt.Errorf("get session with account: %w", err)
	}
	return &BrowserSession{IDHash: r.IDHash, SID: r.SID, AccountID: r.ID, AuthTime: r.AuthTime, AMRJSON: r.AMR, ACR: r.ACR, CreatedAt: r.SCreated, ExpiresAt: r.SExpires},
		&Account{ID: r.ID, Kind: r.Kind, Upstream: r.Upstream, UpstreamSub: r.UpstreamSub, FamilyName: r.Family, GivenName: r.Given, MiddleName: r.Middle,
			Birthdate: r.Birthdate, SNILSDigest: r.SNILS, Status: r.Status, CreatedAt: r.ACreated, UpdatedAt: r.AUpdated, Unconfirmed: r.Unconfirmed}, nil
}

// AccountBySID returns the account of the live browser session with public id sid.
func (s *Store) AccountBySID(ctx context.Context, sid string) (string, error) {
	var id string
	if err := s.get(ctx, &id, `SELECT account_id FROM browser_sessions WHERE sid = ?`, sid); err != nil {
		return "", fmt.Errorf("account by sid: %w", err)
	}
	return id, nil
}
