// Package backchannel delivers back-channel logouts.
//
// Back-channel logout (OpenID Connect Back-Channel Logout 1.0). When a browser session ends —
// logout here, or a revocation that ends sessions (unlink, disable, forget, a child's 14th
// birthday) — the store queues, in the same transaction, one delivery per diary the person
// consented to that registered a backchannel_logout_uri. A worker (one replica at a time)
// signs a fresh logout token for each due delivery and POSTs it; a diary that does not answer
// 200 is tried again with a growing pause until logoutMaxAge has passed. A restart loses
// nothing: the queue is in the database.
package backchannel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/esia-broker/esia-broker/provider"
	"github.com/esia-broker/esia-broker/signing"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/google/uuid"
	"github.com/ory/fosite/token/jwt"
)

const (
	// logoutJob is the advisory-lock id of the delivery worker.
	logoutJob = 0x65736c6f // "eslo"
	// logoutMaxAge is how long a logout is tried before it is given up.
	logoutMaxAge = 24 * time.Hour
	// logoutBatch is how many deliveries one round sends at most.
	logoutBatch = 100
	// logoutTokenLifespan is the logout token's exp after its iat.
	logoutTokenLifespan = 2 * time.Minute
	// backchannelEvent is the logout token's event.
	backchannelEvent = "http://schemas.openid.net/event/backchannel-logout"
)

// logoutBackoff is the pause after the n-th failed attempt (n ≥ 1): 5 s doubling, at most 30 min.
func logoutBackoff(n int) time.Duration {
	d := 5 * time.Second
	for i := 1; i < n && d < 30*time.Minute; i++ {
		d *= 2
	}
	return min(d, 30*time.Minute)
}

// DeliverLogouts sends the due back-channel logouts once and reports how many were delivered.
// The server's Run calls it every few seconds; with several replicas on PostgreSQL one runs it
// at a time.
func (s *Sender) DeliverLogouts(ctx context.Context) (int, error) {
	delivered := 0
	_, err := s.store.RunExclusive(ctx, logoutJob, func(ctx context.Context) error {
		due, err := s.store.DueLogouts(ctx, logoutBatch)
		if err != nil {
			return err
		}
		for _, d := range due {
			// A claim leases the delivery for longer than one attempt takes: of two workers
			// (replicas on SQLite's single node, or a round that overlaps) one sends it.
			claimed, err := s.store.ClaimLogout(ctx, d, time.Minute)
			if err != nil {
				return err
			}
			if !claimed {
				continue
			}
			ok, err := s.deliverLogout(ctx, d)
			if err != nil {
				return err
			}
			if ok {
				delivered++
			}
		}
		return nil
	})
	if n, perr := s.store.PendingLogouts(ctx); perr == nil {
		s.metrics.LogoutsPending.Set(float64(n))
	}
	return delivered, err
}

// deliverLogout makes one attempt; an error is the store's (the diary's failures are recorded).
func (s *Sender) deliverLogout(ctx context.Context, d storage.LogoutDelivery) (bool, error) {
	log := s.log.With("client", d.ClientID, "attempt", d.Attempts+1)
	sendErr := s.postLogoutToken(ctx, d)
	if sendErr == nil {
		s.metrics.Logouts.WithLabelValues("delivered").Inc()
		log.Info("back-channel logout delivered")
		return true, s.store.LogoutDelivered(ctx, d.ID)
	}
	if s.store.Now().Sub(d.CreatedAt) >= logoutMaxAge {
		s.metrics.Logouts.WithLabelValues("abandoned").Inc()
		log.Error("back-channel logout abandoned: the diary did not take it within the delivery window", "err", sendErr, "window", logoutMaxAge)
		if err := s.store.LogoutDelivered(ctx, d.ID); err != nil {
			return false, err
		}
		return false, s.store.Audit(ctx, "system:logout", "logout.backchannel_abandoned", d.ClientID, map[string]any{"attempts": d.Attempts + 1})
	}
	s.metrics.Logouts.WithLabelValues("failed").Inc()
	pause := logoutBackoff(d.Attempts + 1)
	log.Warn("back-channel logout failed; will retry", "err", sendErr, "retry_in", pause.String())
	return false, s.store.LogoutFailed(ctx, d.ID, pause, sendErr.Error())
}

// postLogoutToken signs a fresh logout token for the delivery and POSTs it.
func (s *Sender) postLogoutToken(ctx context.Context, d storage.LogoutDelivery) error {
	now := time.Now()
	claims := jwt.MapClaims{
		"iss":    s.issuer,
		"aud":    []string{d.ClientID},
		"iat":    now.Unix(),
		"exp":    now.Add(logoutTokenLifespan).Unix(),
		"jti":    uuid.NewString(),
		"events": map[string]any{backchannelEvent: map[string]any{}},
	}
	if sub := s.logoutSubject(ctx, d); sub != "" {
		claims["sub"] = sub
	}
	if d.SID != "" {
		claims["sid"] = d.SID
	}
	header := &jwt.Headers{Extra: map[string]any{"typ": "logout+jwt"}}
	if d.IDTokenAlg != "" {
		header.Extra[signing.AlgHint] = d.IDTokenAlg
	}
	token, _, err := s.provider.Signer().Generate(ctx, claims, header)
	if err != nil {
		return fmt.Errorf("sign logout token: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URI, strings.NewReader(url.Values{"logout_token": {token}}.Encode()))
	if err != nil {
		return fmt.Errorf("logout request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := s.logoutClient.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is the diary's registered one: no need to repeat it
		}
		return fmt.Errorf("post logout token: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		return errors.New("the diary answered " + strconv.Itoa(resp.StatusCode))
	}
	return nil
}

// newLogoutClient is the HTTP client of back-channel logouts: it follows no redirect (a logout
// token goes only to the registered URI), and it connects to no address a diary cannot have —
// link-local (cloud metadata), unspecified or multicast — nor to loopback or another address of
// its own host unless the broker itself is served on loopback (a local or test deployment), so that a registered URI cannot
// probe the broker's own host or network. The address checked is the one dialled, after DNS.
func newLogoutClient(issuer string) *http.Client {
	allowLoopback := false
	if u, err := url.Parse(issuer); err == nil {
		allowLoopback = provider.IsLoopbackHost(u.Hostname())
	}
	dialer := &net.Dialer{Timeout: 5 * time.Second, Control: func(_, address string, _ syscall.RawConn) error {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return err
		}
		ip := net.ParseIP(host)
		if err := logoutTargetAllowed(ip, allowLoopback); err != nil {
			return err
		}
		if !allowLoopback && isOwnAddress(ip) {
			return errLogoutTarget
		}
		return nil
	}}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil
	tr.DialContext = dialer.DialContext
	return &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// errLogoutTarget is returned for a back-channel logout URI that resolves to a refused address.
var errLogoutTarget = errors.New("the back-channel logout URI resolves to an address the broker does not call (its own host, loopback, link-local, unspecified or multicast)")

// isOwnAddress tells whether ip is an address of one of this host's interfaces (the broker's
// own host, reached by an address that is not loopback).
func isOwnAddress(ip net.IP) bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return true // unknown: refuse rather than probe
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
			return true
		}
	}
	return false
}

func logoutTargetAllowed(ip net.IP, allowLoopback bool) error {
	switch {
	case ip == nil:
		return errLogoutTarget
	case ip.IsLoopback() && !allowLoopback, ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast(), ip.IsUnspecified(), ip.IsMulticast(), ip.IsInterfaceLocalMulticast():
		return errLogoutTarget
	}
	return nil
}

// logoutSubject is the sub of a logout token: the one the diary saw in its ID tokens
// (tokens.subject), as computed when the logout was queued (storage.SetShownSubject). For a
// logout queued without it, it is computed now; when it cannot be (the account forgotten
// meanwhile) the token names the session by its sid alone, or, without a sid, by the account id.
func (s *Sender) logoutSubject(ctx context.Context, d storage.LogoutDelivery) string {
	if d.ShownSubject != "" {
		return d.ShownSubject // computed when the logout was queued
	}
	if s.provider.Subjects().Mode() == "uuid" {
		return d.Subject
	}
	a, err := s.store.Account(ctx, d.Subject)
	if err == nil && (a.Kind != "esia" || a.UpstreamSub != nil) {
		if sub, err := s.provider.SubjectForClient(ctx, a, d.ClientID); err == nil {
			return sub
		}
	}
	if d.SID != "" {
		return ""
	}
	return d.Subject
}
