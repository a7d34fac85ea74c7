package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/ory/fosite"
	"github.com/ory/fosite/token/jwt"

	"github.com/esia-broker/esia-broker/storage"
)

// errNoRight is why an account may no longer use what it was given.
var errNoRight = errors.New("the account may no longer log in")

// accountMayUse tells whether account a may still use its sessions and tokens: active; for an
// account admitted unconfirmed, still a child's under 14 matching an active card; and — for a
// child's sub-account — its card active, under 14 and with a parent still linked. Every
// refresh, authorization, userinfo call and activation key asks, so that a right that ended
// ends access even where no event revoked it (the 14th birthday).
func (b *Broker) accountMayUse(ctx context.Context, a *storage.Account) error {
	if a.Status != "active" {
		return errNoRight
	}
	if a.Unconfirmed {
		reason, err := b.unconfirmedRefusal(ctx, a.Birthdate, a.SNILSDigest)
		if err != nil {
			return err
		}
		if reason != "" {
			return fmt.Errorf("%w: unconfirmed account: %s", errNoRight, reason)
		}
	}
	if a.Kind != "child" {
		return nil
	}
	c, err := b.store.ChildByAccount(ctx, a.ID)
	if errors.Is(err, storage.ErrNotFound) {
		return errNoRight
	}
	if err != nil {
		return fmt.Errorf("read sub-account: %w", err)
	}
	if err := b.linker.ChildMayLogIn(ctx, c.StudentID); err != nil {
		if isUnavailable(err) {
			return err
		}
		return fmt.Errorf("%w: %w", errNoRight, err)
	}
	return nil
}

// bearerToken is the access token of the Authorization header: RFC 6750 §2.1, the one way
// the broker accepts a bearer credential (never the query string or a form field, which end up
// in logs and histories).
func bearerToken(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// accessToken introspects a bearer token and accepts it only as an access token: a refresh
// token, an authorization code or an ID token is not a bearer credential.
func (b *Broker) accessToken(ctx context.Context, token string) (fosite.AccessRequester, error) {
	use, ar, err := b.provider.IntrospectToken(ctx, token, fosite.AccessToken, newEmptySession())
	if err != nil {
		return nil, err
	}
	if use != fosite.AccessToken {
		return nil, fosite.ErrInactiveToken.WithHint("Only an access token is a bearer credential.")
	}
	return ar, nil
}

// decodeIDToken returns the claims of an ID token this broker signed, expired or not; an access
// token (typ at+jwt, or with the access token's own claims) or anything else is refused.
func (b *Broker) decodeIDToken(ctx context.Context, token string) (jwt.MapClaims, error) {
	t, err := b.idSigner.Decode(ctx, token)
	if t == nil || (err != nil && !isExpiredOnly(err)) {
		if err == nil {
			err = errors.New("not a JWT")
		}
		return nil, err
	}
	// The broker signs ID tokens with typ JWT; access tokens (at+jwt) and logout tokens
	// (logout+jwt) are signed with the same keys and are not ID tokens.
	if typ, _ := t.Header["typ"].(string); typ != "" && !strings.EqualFold(typ, "JWT") {
		return nil, fmt.Errorf("a %s is not an ID token", typ)
	}
	c := t.Claims
	for _, k := range []string{"client_id", "scp", "scope", "events"} {
		if _, ok := c[k]; ok {
			return nil, fmt.Errorf("claim %s belongs to access or logout tokens, not ID tokens", k)
		}
	}
	if iss, _ := c["iss"].(string); iss != b.issuer() {
		return nil, errors.New("issued by another provider")
	}
	if sub, _ := c["sub"].(string); sub == "" || len(audiences(c["aud"])) == 0 {
		return nil, errors.New("an ID token has sub and aud")
	}
	return c, nil
}
