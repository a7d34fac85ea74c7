package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"time"

	"github.com/ory/fosite"
)

// The fosite token tables; each row is one stored authorization request.
const (
	tableCode    = "oauth2_code"
	tableAccess  = "oauth2_access"
	tableRefresh = "oauth2_refresh"
	tablePKCE    = "oauth2_pkce"
	tableOIDC    = "oauth2_oidc"
)

var fositeTables = [...]string{tableCode, tableAccess, tableRefresh, tablePKCE, tableOIDC}

// secretFormKeys never reach the database, whatever fosite hands over.
var secretFormKeys = []string{"client_secret", "password", "code_verifier", "refresh_token", "code", "client_assertion"}

type storedRequest struct {
	ID                string     `json:"id"`
	RequestedAt       time.Time  `json:"requested_at"`
	ClientID          string     `json:"client_id"`
	RequestedScope    []string   `json:"requested_scope"`
	GrantedScope      []string   `json:"granted_scope"`
	RequestedAudience []string   `json:"requested_audience"`
	GrantedAudience   []string   `json:"granted_audience"`
	Form              url.Values `json:"form"`
	Lang              string     `json:"lang,omitempty"`
	// Session is the session value itself when encoding, and the caller's session (a pointer
	// that encoding/json fills in place) or a *json.RawMessage when decoding: one pass over the
	// JSON either way.
	Session any `json:"session"`
}

type tokenRow struct {
	Signature       string     `db:"signature"`
	RequestID       string     `db:"request_id"`
	ClientID        string     `db:"client_id"`
	Request         string     `db:"request"`
	Active          bool       `db:"active"`
	ExpiresAt       time.Time  `db:"expires_at"`
	RotatedAt       *time.Time `db:"rotated_at"`
	AccessSignature string     `db:"access_signature"`
}

// encodeRequest writes a request as stored JSON; withSession false leaves the session out
// (null), for rows whose readers need only the form.
func encodeRequest(r fosite.Requester, withSession bool) (string, error) {
	form := url.Values{}
	for k, v := range r.GetRequestForm() {
		form[k] = append([]string(nil), v...)
	}
	for _, k := range secretFormKeys {
		form.Del(k)
	}
	sr := storedRequest{
		ID:                r.GetID(),
		RequestedAt:       r.GetRequestedAt(),
		ClientID:          r.GetClient().GetID(),
		RequestedScope:    r.GetRequestedScopes(),
		GrantedScope:      r.GetGrantedScopes(),
		RequestedAudience: r.GetRequestedAudience(),
		GrantedAudience:   r.GetGrantedAudience(),
		Form:              form,
	}
	if withSession {
		sr.Session = r.GetSession()
	}
	b, err := json.Marshal(sr)
	if err != nil {
		return "", fmt.Errorf("encode request: %w", err)
	}
	return string(b), nil
}

func (s *Store) decodeRequest(ctx context.Context, raw string, session fosite.Session) (*fosite.Request, error) {
	var sr storedRequest
	if session != nil && reflect.ValueOf(session).Kind() == reflect.Pointer && !reflect.ValueOf(session).IsNil() {
		sr.Session = session // decoded in place, in the same pass
	} else {
		session = nil
		sr.Session = new(json.RawMessage)
	}
	if err := json.Unmarshal([]byte(raw), &sr); err != nil {
		return nil, fmt.Errorf("decode stored request: %w", err)
	}
	client, err := s.GetClient(ctx, sr.ClientID)
	if err != nil {
		return nil, fmt.Errorf("load client of stored request: %w", err)
	}
	return &fosite.Request{
		ID:                sr.ID,
		RequestedAt:       sr.RequestedAt,
		Client:            client,
		RequestedScope:    sr.RequestedScope,
		GrantedScope:      sr.GrantedScope,
		RequestedAudience: sr.RequestedAudience,
		GrantedAudience:   sr.GrantedAudience,
		Form:              sr.Form,
		Session:           session,
	}, nil
}

func expiry(r fosite.Requester, kind fosite.TokenType, fallback time.Time) time.Time {
	if r.GetSession() != nil {
		if t := r.GetSession().GetExpiresAt(kind); !t.IsZero() {
			return t.UTC()
		}
	}
	return fallback
}

func (s *Store) createToken(ctx context.Context, table, signature string, r fosite.Requester, exp time.Time) error {
	return s.createTokenWith(ctx, table, signature, r, exp, "")
}

// createTokenWith writes a token row; accessSignature, for a refresh token, names the access
// token issued with it.
func (s *Store) createTokenWith(ctx context.Context, table, signature string, r fosite.Requester, exp time.Time, accessSignature string) error {
	// fosite's PKCE check reads only the form of its row (code_challenge and its method): the
	// session, the bulk of every other row, is not written there.
	raw, err := encodeRequest(r, table != tablePKCE)
	if err != nil {
		return err
	}
	subject := ""
	if r.GetSession() != nil {
		subject = r.GetSession().GetSubject()
	}
	if table == tableRefresh {
		_, err = s.exec(ctx, `INSERT INTO `+table+` (signature, request_id, client_id, subject, requested_at, expires_at, request, active, access_signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			signature, r.GetID(), r.GetClient().GetID(), subject, r.GetRequestedAt().UTC(), exp, raw, true, accessSignature)
	} else {
		_, err = s.exec(ctx, `INSERT INTO `+table+` (signature, request_id, client_id, subject, requested_at, expires_at, request, active) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
			signature, r.GetID(), r.GetClient().GetID(), subject, r.GetRequestedAt().UTC(), exp, raw, true)
	}
	if err != nil {
		return fmt.Errorf("store %s: %w", table, err)
	}
	return nil
}

func (s *Store) tokenRow(ctx context.Context, table, signature string) (*tokenRow, error) {
	cols := `signature, request_id, client_id, request, active, expires_at`
	if table == tableRefresh {
		cols += `, rotated_at, access_signature`
	}
	h, ok := txFrom(ctx)
	cacheable := ok && h.request
	key := table + "\x00" + signature
	if cacheable {
		if r, ok := h.rows[key]; ok {
			c := *r
			return &c, nil
		}
	}
	var row tokenRow
	err := s.get(ctx, &row, `SELECT `+cols+` FROM `+table+` WHERE signature = ?`, signature)
	if errors.Is(err, ErrNotFound) {
		return nil, fosite.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", table, err)
	}
	if cacheable {
		if h.rows == nil {
			h.rows = map[string]*tokenRow{}
		}
		c := row
		h.rows[key] = &c
	}
	return &row, nil
}

// dropCachedRows forgets the token rows cached in a request transaction for every fosite
// table a writing statement names.
func dropCachedRows(ctx context.Context, query string) {
	h, ok := txFrom(ctx)
	if !ok || len(h.rows) == 0 || strings.HasPrefix(query, "SELECT") {
		return
	}
	for _, t := range fositeTables {
		if !strings.Contains(query, t) {
			continue
		}
		for k := range h.rows {
			if strings.HasPrefix(k, t+"\x00") {
				delete(h.rows, k)
			}
		}
	}
}

func (s *Store) deleteToken(ctx context.Context, table, signature string) error {
	if _, err := s.exec(ctx, `DELETE FROM `+table+` WHERE signature = ?`, signature); err != nil {
		return fmt.Errorf("delete %s: %w", table, err)
	}
	return nil
}

// CreateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage.
func (s *Store) CreateAuthorizeCodeSession(ctx context.Context, code string, r fosite.Requester) error {
	return s.createToken(ctx, tableCode, code, r, expiry(r, fosite.AuthorizeCode, s.clock().Add(10*time.Minute)))
}

// GetAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage: a used code returns its request
// with fosite.ErrInvalidatedAuthorizeCode, so that fosite revokes what the first use issued.
func (s *Store) GetAuthorizeCodeSession(ctx context.Context, code string, session fosite.Session) (fosite.Requester, error) {
	row, err := s.tokenRow(ctx, tableCode, code)
	if err != nil {
		return nil, err
	}
	req, err := s.decodeRequest(ctx, row.Request, session)
	if err != nil {
		return nil, err
	}
	if !row.Active {
		return req, fosite.ErrInvalidatedAuthorizeCode
	}
	return req, nil
}

// InvalidateAuthorizeCodeSession implements oauth2.AuthorizeCodeStorage. It fails when the code
// was already invalidated, so that two concurrent exchanges of one code cannot both succeed.
func (s *Store) InvalidateAuthorizeCodeSession(ctx context.Context, code string) error {
	res, err := s.exec(ctx, `UPDATE `+tableCode+` SET active = ? WHERE signature = ? AND active = ?`, false, code, true)
	if err != nil {
		return fmt.Errorf("invalidate authorization code: %w", err)
	}
	if affected(res) == 0 {
		return fosite.ErrInvalidatedAuthorizeCode
	}
	return nil
}

// CreateAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *Store) CreateAccessTokenSession(ctx context.Context, signature string, r fosite.Requester) error {
	return s.createToken(ctx, tableAccess, signature, r, expiry(r, fosite.AccessToken, s.clock().Add(time.Hour)))
}

// GetAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *Store) GetAccessTokenSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	row, err := s.tokenRow(ctx, tableAccess, signature)
	if err != nil {
		return nil, err
	}
	req, err := s.decodeRequest(ctx, row.Request, session)
	if err != nil {
		return nil, err
	}
	if !row.Active {
		return req, fosite.ErrInactiveToken
	}
	return req, nil
}

// DeleteAccessTokenSession implements oauth2.AccessTokenStorage.
func (s *Store) DeleteAccessTokenSession(ctx context.Context, signature string) error {
	return s.deleteToken(ctx, tableAccess, signature)
}

// CreateRefreshTokenSession implements oauth2.RefreshTokenStorage.
func (s *Store) CreateRefreshTokenSession(ctx context.Context, signature, accessSignature string, r fosite.Requester) error {
	return s.createTokenWith(ctx, tableRefresh, signature, r, expiry(r, fosite.RefreshToken, s.clock().Add(100*365*24*time.Hour)), accessSignature)
}

// GetRefreshTokenSession implements oauth2.RefreshTokenStorage. A token rotated less than
// RefreshGrace ago still counts as active, so concurrent refreshes of one token all succeed; a
// token used after that returns fosite.ErrInactiveToken, and fosite then revokes the family.
func (s *Store) GetRefreshTokenSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	row, err := s.tokenRow(ctx, tableRefresh, signature)
	if err != nil {
		return nil, err
	}
	req, err := s.decodeRequest(ctx, row.Request, session)
	if err != nil {
		return nil, err
	}
	if row.Active {
		return req, nil
	}
	if row.RotatedAt != nil && s.clock().Sub(row.RotatedAt.UTC()) <= s.RefreshGrace {
		return req, nil
	}
	return req, fosite.ErrInactiveToken
}

// DeleteRefreshTokenSession implements oauth2.RefreshTokenStorage.
func (s *Store) DeleteRefreshTokenSession(ctx context.Context, signature string) error {
	return s.deleteToken(ctx, tableRefresh, signature)
}

// RotateRefreshToken implements oauth2.RefreshTokenStorage: the used token is marked rotated
// (its grace window starts at the first rotation) and the access token issued with it is
// revoked. Other members of the family are left alone so that a concurrent refresh within the
// grace window keeps what it got.
func (s *Store) RotateRefreshToken(ctx context.Context, requestID, signature string) error {
	row, err := s.tokenRow(ctx, tableRefresh, signature)
	if err != nil {
		return err
	}
	if row.RequestID != requestID {
		return fosite.ErrNotFound
	}
	res, err := s.exec(ctx, `UPDATE `+tableRefresh+` SET active = ?, rotated_at = ? WHERE signature = ? AND active = ?`, false, s.clock(), signature, true)
	if err != nil {
		return fmt.Errorf("rotate refresh token: %w", err)
	}
	if affected(res) == 0 {
		// Rotated already (a concurrent refresh in the grace window) or deleted meanwhile (the
		// account's tokens were revoked after this request read the token): only the first
		// may go on.
		var n int
		if err := s.get(ctx, &n, `SELECT COUNT(*) FROM `+tableRefresh+` WHERE signature = ?`, signature); err != nil {
			return fmt.Errorf("rotate refresh token: %w", err)
		}
		if n == 0 {
			return fosite.ErrNotFound
		}
	}
	if row.AccessSignature != "" {
		if err := s.deleteToken(ctx, tableAccess, row.AccessSignature); err != nil {
			return err
		}
	}
	return nil
}

// RevokeRefreshToken implements oauth2.TokenRevocationStorage: every refresh token of the
// family (one authorization grant) becomes inactive, with no grace.
func (s *Store) RevokeRefreshToken(ctx context.Context, requestID string) error {
	noteRevocation(ctx, tableRefresh, requestID)
	if _, err := s.exec(ctx, `UPDATE `+tableRefresh+` SET active = ?, rotated_at = NULL WHERE request_id = ?`, false, requestID); err != nil {
		return fmt.Errorf("revoke refresh tokens: %w", err)
	}
	return nil
}

// RevokeAccessToken implements oauth2.TokenRevocationStorage: every access token of the grant
// is deleted.
func (s *Store) RevokeAccessToken(ctx context.Context, requestID string) error {
	noteRevocation(ctx, tableAccess, requestID)
	if _, err := s.exec(ctx, `DELETE FROM `+tableAccess+` WHERE request_id = ?`, requestID); err != nil {
		return fmt.Errorf("revoke access tokens: %w", err)
	}
	return nil
}

// CreatePKCERequestSession implements pkce.PKCERequestStorage.
func (s *Store) CreatePKCERequestSession(ctx context.Context, signature string, r fosite.Requester) error {
	return s.createToken(ctx, tablePKCE, signature, r, expiry(r, fosite.AuthorizeCode, s.clock().Add(10*time.Minute)))
}

// GetPKCERequestSession implements pkce.PKCERequestStorage.
func (s *Store) GetPKCERequestSession(ctx context.Context, signature string, session fosite.Session) (fosite.Requester, error) {
	row, err := s.tokenRow(ctx, tablePKCE, signature)
	if err != nil {
		return nil, err
	}
	return s.decodeRequest(ctx, row.Request, session)
}

// DeletePKCERequestSession implements pkce.PKCERequestStorage.
func (s *Store) DeletePKCERequestSession(ctx context.Context, signature string) error {
	return s.deleteToken(ctx, tablePKCE, signature)
}

// CreateOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (s *Store) CreateOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) error {
	return s.createToken(ctx, tableOIDC, code, r, expiry(r, fosite.AuthorizeCode, s.clock().Add(10*time.Minute)))
}

// GetOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (s *Store) GetOpenIDConnectSession(ctx context.Context, code string, r fosite.Requester) (fosite.Requester, error) {
	row, err := s.tokenRow(ctx, tableOIDC, code)
	if err != nil {
		return nil, err
	}
	return s.decodeRequest(ctx, row.Request, r.GetSession())
}

// DeleteOpenIDConnectSession implements openid.OpenIDConnectRequestStorage.
func (s *Store) DeleteOpenIDConnectSession(ctx context.Context, code string) error {
	return s.deleteToken(ctx, tableOIDC, code)
}

// TokenCounts counts stored rows per fosite table; tests use it to prove nothing was left
// behind.
func (s *Store) TokenCounts(ctx context.Context) (map[string]int, error) {
	out := map[string]int{}
	for _, t := range fositeTables {
		var n int
		if err := s.get(ctx, &n, `SELECT COUNT(*) FROM `+t); err != nil {
			return nil, fmt.Errorf("count %s: %w", t, err)
		}
		out[t] = n
	}
	return out, nil
}

// DeleteExpired removes expired tokens, codes, sessions, login requests and flows, and returns
// how many rows went. Refresh tokens are kept until expiry so reuse can still be detected.
func (s *Store) DeleteExpired(ctx context.Context) (int64, error) {
	now := s.clock()
	var total int64
	for _, t := range append(fositeTables[:], "browser_sessions", "login_requests", "upstream_flows", "client_assertions", "oauth2_par", "session_clients") {
		res, err := s.exec(ctx, `DELETE FROM `+t+` WHERE expires_at < ?`, now)
		if err != nil {
			return total, fmt.Errorf("delete expired %s: %w", t, err)
		}
		total += affected(res)
	}
	return total, nil
}
