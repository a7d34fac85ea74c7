package broker

import (
	"time"

	"github.com/mohae/deepcopy"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"

	"github.com/esia-broker/esia-broker/storage"
)

// Session is what fosite stores with every code and token: the ID token claims (through the
// embedded openid.DefaultSession) and the claims of JWT access tokens (RFC 9068).
type Session struct {
	openid.DefaultSession
	AccessClaims *jwt.JWTClaims `json:"access_claims"`
	AccessHeader *jwt.Headers   `json:"access_header"`
	ClientID     string         `json:"client_id"`
	// PickedStudent is the student chosen on the picker, kept for refreshes.
	PickedStudent string `json:"picked_student,omitempty"`
}

var (
	_ openid.Session = (*Session)(nil)
	_ interface {
		GetJWTClaims() jwt.JWTClaimsContainer
		GetJWTHeader() *jwt.Headers
	} = (*Session)(nil)
)

func newEmptySession() *Session {
	return &Session{
		DefaultSession: openid.DefaultSession{Claims: &jwt.IDTokenClaims{}, Headers: &jwt.Headers{}},
		AccessClaims:   &jwt.JWTClaims{Extra: map[string]any{}},
		AccessHeader:   &jwt.Headers{Extra: map[string]any{}},
	}
}

// Clone implements fosite.Session.
func (s *Session) Clone() fosite.Session {
	if s == nil {
		return nil
	}
	return deepcopy.Copy(s).(*Session)
}

// GetJWTClaims implements oauth2.JWTSessionContainer. It returns a copy with the time claims
// cleared, so that every access token, a refreshed one included, gets its own iat.
func (s *Session) GetJWTClaims() jwt.JWTClaimsContainer {
	if s.AccessClaims == nil {
		s.AccessClaims = &jwt.JWTClaims{}
	}
	c := *s.AccessClaims
	c.IssuedAt, c.NotBefore, c.ExpiresAt, c.JTI = time.Time{}, time.Time{}, time.Time{}, ""
	c.Extra = make(map[string]any, len(s.AccessClaims.Extra))
	for k, v := range s.AccessClaims.Extra {
		c.Extra[k] = v
	}
	return &c
}

// GetJWTHeader implements oauth2.JWTSessionContainer.
func (s *Session) GetJWTHeader() *jwt.Headers {
	if s.AccessHeader == nil {
		s.AccessHeader = &jwt.Headers{}
	}
	return s.AccessHeader
}

// IDTokenHeaders implements openid.Session.
func (s *Session) IDTokenHeaders() *jwt.Headers {
	if s.Headers == nil {
		s.Headers = &jwt.Headers{}
	}
	return s.Headers
}

// userSession builds the session of an authorization by account a in browser session bs.
// sub is the subject the client sees (subjectFor); the session's own subject is the account id.
func userSession(a *storage.Account, sub string, bs *storage.BrowserSession, client *storage.Client, scopes fosite.Arguments, requestedAt time.Time, idAlg, picked string) *Session {
	s := newEmptySession()
	s.Subject = a.ID
	s.Username = ""
	s.ClientID = client.ID
	amr := bs.AMR()
	s.Claims = &jwt.IDTokenClaims{
		Subject:                             sub,
		RequestedAt:                         requestedAt.UTC(),
		AuthTime:                            bs.AuthTime.UTC(),
		AuthenticationMethodsReferences:     amr,
		AuthenticationContextClassReference: bs.ACR,
		Extra:                               profileClaims(a, scopes),
	}
	if bs.SID != "" {
		// OpenID Connect's sid: a diary's logout request (or back-channel logout) names the
		// browser session with it.
		s.Claims.Extra["sid"] = bs.SID
	}
	if client.IDTokenAlg != "" {
		idAlg = client.IDTokenAlg
	}
	s.Headers = &jwt.Headers{Extra: map[string]any{algHint: idAlg}}
	s.AccessClaims = &jwt.JWTClaims{
		Subject: sub,
		Extra: map[string]any{
			"client_id": client.ID,
			"amr":       amr,
			"auth_time": bs.AuthTime.Unix(),
		},
	}
	s.AccessHeader = &jwt.Headers{Extra: map[string]any{"typ": "at+jwt"}}
	s.PickedStudent = picked
	return s
}

// clientSession builds the session of a client-credentials grant: the client is the subject.
func clientSession(clientID string) *Session {
	s := newEmptySession()
	s.Subject = clientID
	s.ClientID = clientID
	s.Claims.Subject = clientID
	s.AccessClaims = &jwt.JWTClaims{Subject: clientID, Extra: map[string]any{"client_id": clientID}}
	s.AccessHeader = &jwt.Headers{Extra: map[string]any{"typ": "at+jwt"}}
	return s
}

// profileClaims are the claims about the person that scope profile releases.
func profileClaims(a *storage.Account, scopes fosite.Arguments) map[string]any {
	c := map[string]any{}
	if !scopes.Has("profile") {
		return c
	}
	name := storage.FullName(a.FamilyName, a.GivenName, a.MiddleName)
	set := func(k, v string) {
		if v != "" {
			c[k] = v
		}
	}
	set("name", name)
	set("family_name", a.FamilyName)
	set("given_name", a.GivenName)
	set("middle_name", a.MiddleName)
	set("birthdate", a.Birthdate)
	return c
}
