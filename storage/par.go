package storage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/ory/fosite"
)

// storedPAR is a pushed authorization request: the request and what fosite's PAR merge reads
// besides it.
type storedPAR struct {
	Request       json.RawMessage         `json:"request"`
	RedirectURI   string                  `json:"redirect_uri"`
	ResponseTypes fosite.Arguments        `json:"response_types"`
	State         string                  `json:"state"`
	ResponseMode  fosite.ResponseModeType `json:"response_mode"`
}

func parKey(requestURI string) string {
	h := sha256.Sum256([]byte("par:" + requestURI))
	return hex.EncodeToString(h[:])
}

// CreatePARSession implements fosite.PARStorage: the request is kept (its secrets stripped)
// under the digest of its request_uri until it expires.
func (s *Store) CreatePARSession(ctx context.Context, requestURI string, r fosite.AuthorizeRequester) error {
	req, err := encodeRequest(r, false)
	if err != nil {
		return err
	}
	sp := storedPAR{Request: json.RawMessage(req), ResponseTypes: r.GetResponseTypes(), State: r.GetState(), ResponseMode: r.GetResponseMode()}
	if u := r.GetRedirectURI(); u != nil {
		sp.RedirectURI = u.String()
	}
	b, err := json.Marshal(sp)
	if err != nil {
		return fmt.Errorf("encode pushed request: %w", err)
	}
	exp := r.GetSession()
	expires := s.clock().Add(parLifespanFallback)
	if exp != nil {
		if t := exp.GetExpiresAt(fosite.PushedAuthorizeRequestContext); !t.IsZero() {
			expires = t.UTC()
		}
	}
	if _, err := s.exec(ctx, `INSERT INTO oauth2_par (signature, client_id, expires_at, request) VALUES (?, ?, ?, ?)`,
		parKey(requestURI), r.GetClient().GetID(), expires, string(b)); err != nil {
		return fmt.Errorf("store pushed request: %w", err)
	}
	return nil
}

// parLifespanFallback is a pushed request's life when fosite gave no session to carry it.
const parLifespanFallback = 90 * time.Second

// GetPARSession implements fosite.PARStorage: an unknown or expired request_uri is
// fosite.ErrNotFound.
func (s *Store) GetPARSession(ctx context.Context, requestURI string) (fosite.AuthorizeRequester, error) {
	var raw string
	err := s.get(ctx, &raw, `SELECT request FROM oauth2_par WHERE signature = ? AND expires_at > ?`, parKey(requestURI), s.clock())
	if err == ErrNotFound {
		return nil, fosite.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("get pushed request: %w", err)
	}
	var sp storedPAR
	if err := json.Unmarshal([]byte(raw), &sp); err != nil {
		return nil, fmt.Errorf("decode pushed request: %w", err)
	}
	req, err := s.decodeRequest(ctx, string(sp.Request), nil)
	if err != nil {
		return nil, err
	}
	ar := &fosite.AuthorizeRequest{Request: *req, ResponseTypes: sp.ResponseTypes, State: sp.State, ResponseMode: sp.ResponseMode, HandledResponseTypes: fosite.Arguments{}}
	if sp.RedirectURI != "" {
		if ar.RedirectURI, err = url.Parse(sp.RedirectURI); err != nil {
			return nil, fmt.Errorf("decode pushed request: %w", err)
		}
	}
	return ar, nil
}

// DeletePARSession implements fosite.PARStorage. A request_uri is used once: of two uses at
// once only the one that deletes the row goes on (the other finds it gone).
func (s *Store) DeletePARSession(ctx context.Context, requestURI string) error {
	res, err := s.exec(ctx, `DELETE FROM oauth2_par WHERE signature = ?`, parKey(requestURI))
	if err != nil {
		return fmt.Errorf("delete pushed request: %w", err)
	}
	if affected(res) == 0 {
		return fosite.ErrInvalidRequestURI.WithHint("The request_uri was already used.")
	}
	return nil
}
