package storage

import (
	"context"
	"fmt"
	"time"
)

// LogoutDelivery is a back-channel logout waiting to reach a diary: its session (SID, or "" for
// every session of the subject) ended.
type LogoutDelivery struct {
	ID       string `db:"id"`
	ClientID string `db:"client_id"`
	Subject  string `db:"subject"`
	// ShownSubject is the sub the diary saw in its tokens when it differs from Subject (the
	// account id): tokens.subject esia_oid or pairwise; computed when the logout was queued.
	ShownSubject  string    `db:"shown_subject"`
	SID           string    `db:"sid"`
	CreatedAt     time.Time `db:"created_at"`
	NextAttemptAt time.Time `db:"next_attempt_at"`
	Attempts      int       `db:"attempts"`
	LastError     string    `db:"last_error"`
	// URI is the client's backchannel_logout_uri.
	URI string `db:"uri"`
	// IDTokenAlg is the client's ID token alg ("" = the broker's default).
	IDTokenAlg string `db:"id_token_alg"`
}

// enqueueLogouts queues a back-channel logout of subject's session sid ("" = every session)
// for each diary the subject consented to that registered a backchannel_logout_uri. It runs in
// the caller's transaction: the logout is queued exactly when the session ends. A logout
// already waiting for the same diary, subject and session is not queued twice.
func (s *Store) enqueueLogouts(ctx context.Context, subject, sid string) error {
	clients, err := s.loggedInClients(ctx, subject, sid, "backchannel_logout_uri")
	if err != nil {
		return fmt.Errorf("queue back-channel logouts: %w", err)
	}
	now := s.clock()
	var account *Account
	if s.shownSubject != nil && len(clients) > 0 {
		if account, err = s.Account(ctx, subject); err != nil {
			return fmt.Errorf("queue back-channel logouts: %w", err)
		}
	}
	for _, c := range clients {
		shown := ""
		if account != nil {
			client, err := s.Client(ctx, c)
			if err != nil {
				return fmt.Errorf("queue back-channel logouts: %w", err)
			}
			if shown = s.shownSubject(account, client); shown == subject {
				shown = ""
			}
		}
		if _, err := s.exec(ctx, `INSERT INTO logout_deliveries (id, client_id, subject, shown_subject, sid, created_at, next_attempt_at, attempts, last_error)
			SELECT ?, ?, ?, ?, ?, ?, ?, 0, '' WHERE NOT EXISTS (SELECT 1 FROM logout_deliveries WHERE client_id = ? AND subject = ? AND sid = ?)`,
			newSID(), c, subject, shown, sid, now, now, c, subject, sid); err != nil {
			return fmt.Errorf("queue back-channel logout: %w", err)
		}
	}
	return nil
}

// SetShownSubject sets how the sub a diary sees is made from an account (tokens.subject), for
// the back-channel logouts queued from then on; nil (the default) is the account id.
func (s *Store) SetShownSubject(f func(a *Account, c *Client) string) { s.shownSubject = f }

// loggedInClients returns the ids of the clients, with a non-empty column uriColumn, that a
// logout of the account's session sid must reach: those the session gave codes to (none when it
// gave none). For sid "" (every session of the account) those of all its recorded sessions and
// every client it consented to.
func (s *Store) loggedInClients(ctx context.Context, accountID, sid, uriColumn string) ([]string, error) {
	var out []string
	if sid != "" {
		err := s.selectAll(ctx, &out, `SELECT c.id FROM session_clients sc JOIN clients c ON c.id = sc.client_id
			WHERE sc.account_id = ? AND sc.sid = ? AND c.`+uriColumn+` <> '' ORDER BY c.id`, accountID, sid)
		return out, err
	}
	err := s.selectAll(ctx, &out, `SELECT c.id FROM clients c WHERE c.`+uriColumn+` <> '' AND (
			c.id IN (SELECT client_id FROM consents WHERE account_id = ?) OR c.id IN (SELECT client_id FROM session_clients WHERE account_id = ?))
		ORDER BY c.id`, accountID, accountID)
	return out, err
}

// RecordSessionClient records that the account's browser session sid gave a code to client,
// for its logouts (in the transaction that issues the code).
func (s *Store) RecordSessionClient(ctx context.Context, accountID, sid, clientID string, expires time.Time) error {
	if sid == "" {
		return nil
	}
	_, err := s.exec(ctx, `INSERT INTO session_clients (account_id, sid, client_id, expires_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (account_id, sid, client_id) DO UPDATE SET expires_at = excluded.expires_at`, accountID, sid, clientID, expires.UTC())
	if err != nil {
		return fmt.Errorf("record the session's client: %w", err)
	}
	return nil
}

// DueLogouts returns up to limit queued logouts whose next attempt is due, oldest first, with
// the diary's URI.
func (s *Store) DueLogouts(ctx context.Context, limit int) ([]LogoutDelivery, error) {
	var out []LogoutDelivery
	err := s.selectAll(ctx, &out, `SELECT d.id, d.client_id, d.subject, d.shown_subject, d.sid, d.created_at, d.next_attempt_at, d.attempts, d.last_error,
		c.backchannel_logout_uri AS uri, c.id_token_alg
		FROM logout_deliveries d JOIN clients c ON c.id = d.client_id
		WHERE d.next_attempt_at <= ? ORDER BY d.next_attempt_at, d.id LIMIT ?`, s.clock(), limit)
	if err != nil {
		return nil, fmt.Errorf("due back-channel logouts: %w", err)
	}
	return out, nil
}

// ClaimLogout takes a due delivery for one attempt: its next attempt moves lease ahead, so no
// other worker (another replica, another round) sends it meanwhile. It tells whether this
// caller got it.
func (s *Store) ClaimLogout(ctx context.Context, d LogoutDelivery, lease time.Duration) (bool, error) {
	res, err := s.exec(ctx, `UPDATE logout_deliveries SET next_attempt_at = ? WHERE id = ? AND next_attempt_at = ? AND attempts = ?`,
		s.clock().Add(lease), d.ID, d.NextAttemptAt, d.Attempts)
	if err != nil {
		return false, fmt.Errorf("claim back-channel logout: %w", err)
	}
	return affected(res) == 1, nil
}

// Now is the store's clock (tests step it).
func (s *Store) Now() time.Time { return s.clock() }

// LogoutDelivered removes a delivered (or abandoned) logout.
func (s *Store) LogoutDelivered(ctx context.Context, id string) error {
	if _, err := s.exec(ctx, `DELETE FROM logout_deliveries WHERE id = ?`, id); err != nil {
		return fmt.Errorf("delivered back-channel logout: %w", err)
	}
	return nil
}

// LogoutFailed records a failed attempt; the next one comes after pause.
func (s *Store) LogoutFailed(ctx context.Context, id string, pause time.Duration, reason string) error {
	if len(reason) > 200 {
		reason = reason[:200]
	}
	if _, err := s.exec(ctx, `UPDATE logout_deliveries SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?`, s.clock().Add(pause), reason, id); err != nil {
		return fmt.Errorf("failed back-channel logout: %w", err)
	}
	return nil
}

// PendingLogouts counts the queued logouts (for the metrics).
func (s *Store) PendingLogouts(ctx context.Context) (int, error) {
	var n int
	if err := s.get(ctx, &n, `SELECT count(*) FROM logout_deliveries`); err != nil {
		return 0, fmt.Errorf("count back-channel logouts: %w", err)
	}
	return n, nil
}

// FrontchannelLogoutURIs returns the frontchannel_logout_uri of every diary a logout of the
// account's session sid must reach (see loggedInClients), by client id.
func (s *Store) FrontchannelLogoutURIs(ctx context.Context, accountID, sid string) ([]string, error) {
	ids, err := s.loggedInClients(ctx, accountID, sid, "frontchannel_logout_uri")
	if err != nil {
		return nil, fmt.Errorf("read front-channel logout URIs: %w", err)
	}
	uris := make([]string, 0, len(ids))
	for _, id := range ids {
		var u string
		if err := s.get(ctx, &u, `SELECT frontchannel_logout_uri FROM clients WHERE id = ?`, id); err != nil {
			return nil, fmt.Errorf("read front-channel logout URIs: %w", err)
		}
		uris = append(uris, u)
	}
	return uris, nil
}
