package provider

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/web"
	"github.com/ory/fosite"
	"github.com/ory/fosite/token/jwt"
)

// ErrNoRight is why an account may no longer use what it was given.
var ErrNoRight = errors.New("the account may no longer log in")

// AccountMayUse tells whether account a may still use its sessions and tokens: active; for an
// account admitted unconfirmed, still a child's under 14 matching an active card; and — for a
// child's sub-account — its card active, under 14 and with a parent still linked. Every
// refresh, authorization, userinfo call and activation key asks, so that a right that ended
// ends access even where no event revoked it (the 14th birthday).
func (p *Provider) AccountMayUse(ctx context.Context, a *storage.Account) error {
	if a.Status != "active" {
		return ErrNoRight
	}
	if a.Unconfirmed {
		reason, err := p.UnconfirmedRefusal(ctx, a.Birthdate, a.SNILSDigest)
		if err != nil {
			return err
		}
		if reason != "" {
			return fmt.Errorf("%w: unconfirmed account: %s", ErrNoRight, reason)
		}
	}
	if a.Kind != "child" {
		return nil
	}
	c, err := p.store.ChildByAccount(ctx, a.ID)
	if errors.Is(err, storage.ErrNotFound) {
		return ErrNoRight
	}
	if err != nil {
		return fmt.Errorf("read sub-account: %w", err)
	}
	if err := p.linker.ChildMayLogIn(ctx, c.StudentID); err != nil {
		if web.IsUnavailable(err) {
			return err
		}
		return fmt.Errorf("%w: %w", ErrNoRight, err)
	}
	return nil
}

// BearerToken is the access token of the Authorization header: RFC 6750 §2.1, the one way
// the broker accepts a bearer credential (never the query string or a form field, which end up
// in logs and histories).
func BearerToken(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// AccessToken introspects a bearer token and accepts it only as an access token: a refresh
// token, an authorization code or an ID token is not a bearer credential.
func (p *Provider) AccessToken(ctx context.Context, token string) (fosite.AccessRequester, error) {
	use, ar, err := p.IntrospectToken(ctx, token, fosite.AccessToken, NewEmptySession())
	if err != nil {
		return nil, err
	}
	if use != fosite.AccessToken {
		return nil, fosite.ErrInactiveToken.WithHint("Only an access token is a bearer credential.")
	}
	return ar, nil
}

// DecodeIDToken returns the claims of an ID token this broker signed, expired or not; an access
// token (typ at+jwt, or with the access token's own claims) or anything else is refused.
func (p *Provider) DecodeIDToken(ctx context.Context, token string) (jwt.MapClaims, error) {
	t, err := p.idSigner.Decode(ctx, token)
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
	if iss, _ := c["iss"].(string); iss != p.Issuer() {
		return nil, errors.New("issued by another provider")
	}
	if sub, _ := c["sub"].(string); sub == "" || len(Audiences(c["aud"])) == 0 {
		return nil, errors.New("an ID token has sub and aud")
	}
	return c, nil
}

// UnconfirmedRefusal says why an unconfirmed account born on birthdate with SNILS digest
// snilsDigest may not use the broker today, or "" when it may: the rule of admitUnconfirmed,
// which accountMayUse applies again at every refresh and authorization (the 14th birthday, a
// card gone inactive or the rule switched off end its access as they would refuse its login).
func (p *Provider) UnconfirmedRefusal(ctx context.Context, birthdate, snilsDigest string) (string, error) {
	switch age, err := linking.Age(birthdate, p.calendar()); {
	case !p.cfg.Children.UnconfirmedESIAChildren:
		return "unconfirmed_esia_children is off", nil
	case err != nil:
		return "no birth date", nil
	case age >= linking.AdultAge:
		return "not a child under 14", nil
	case snilsDigest == "":
		return "no SNILS", nil
	}
	_, own, err := p.store.StudentsForSNILS(ctx, snilsDigest)
	if err != nil {
		return "", err
	}
	for _, st := range own {
		if st.Active && st.Birthdate == birthdate {
			return "", nil
		}
	}
	return "no active student card with this SNILS and birth date", nil
}

func isExpiredOnly(err error) bool {
	var ve *jwt.ValidationError
	return errors.As(err, &ve) && ve.Errors == jwt.ValidationErrorExpired
}

// Audiences reads a JWT's aud claim: a string or a list.
func Audiences(v any) []string {
	switch a := v.(type) {
	case string:
		return []string{a}
	case []any:
		out := make([]string, 0, len(a))
		for _, x := range a {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case []string:
		return a
	}
	return nil
}
