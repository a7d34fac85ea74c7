package provider

import (
	"context"
	"slices"
	"time"

	"github.com/esia-broker/esia-broker/signing"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/mohae/deepcopy"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/jwt"
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

// NewEmptySession is the session fosite fills when it reads a stored request.
func NewEmptySession() *Session {
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
	s := NewEmptySession()
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
	s.Headers = &jwt.Headers{Extra: map[string]any{signing.AlgHint: idAlg}}
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
	s := NewEmptySession()
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

// StudentClaim is one element of the students claim (docs/DESIGN.md §6).
type StudentClaim struct {
	ID       string `json:"id"`
	SchoolID string `json:"school_id"`
	Class    string `json:"class"`
	Relation string `json:"relation"`
	Name     string `json:"name"`
}

// LinkClaims are the claims of scopes students and esia, read fresh from the database. picked
// is the student chosen on the picker ("" when none); it is kept only while still linked.
func (p *Provider) LinkClaims(ctx context.Context, a *storage.Account, scopes fosite.Arguments, picked string) (map[string]any, error) {
	return p.LinkClaimsFrom(ctx, a, scopes, picked, nil)
}

// LinkClaimsFrom is linkClaims with the account's links already read (nil reads them).
func (p *Provider) LinkClaimsFrom(ctx context.Context, a *storage.Account, scopes fosite.Arguments, picked string, linked []storage.LinkedStudent) (map[string]any, error) {
	out := map[string]any{}
	if scopes.Has("esia") && a.Upstream == "esia" && a.UpstreamSub != nil {
		out["esia_oid"] = *a.UpstreamSub
	}
	if !scopes.Has("students") {
		return out, nil
	}
	if linked == nil {
		var err error
		if linked, err = p.store.LinkedStudents(ctx, a.ID); err != nil {
			return nil, err
		}
	}
	if a.Kind == "child" {
		// A child's sub-account sees its own card only.
		linked = nil
		if c, err := p.store.ChildByAccount(ctx, a.ID); err == nil {
			if st, err := p.store.Student(ctx, c.StudentID); err == nil && st.Active {
				linked = []storage.LinkedStudent{{Relation: "self", StudentID: st.ID, SchoolID: st.SchoolID, Class: st.Class, Family: st.FamilyName, Given: st.GivenName, Middle: st.MiddleName}}
			}
		}
	}
	students := make([]StudentClaim, 0, len(linked))
	roles := []string{}
	for _, l := range linked {
		students = append(students, StudentClaim{ID: l.StudentID, SchoolID: l.SchoolID, Class: l.Class, Relation: l.Relation, Name: storage.FullName(l.Family, l.Given, l.Middle)})
		role := "parent"
		if l.Relation == "self" {
			role = "student"
		}
		if !slices.Contains(roles, role) {
			roles = append(roles, role)
		}
	}
	slices.Sort(roles)
	out["students"] = students
	out["roles"] = roles
	switch {
	case picked != "" && slices.ContainsFunc(students, func(s StudentClaim) bool { return s.ID == picked }):
		out["student_id"] = picked
	case len(students) == 1:
		out["student_id"] = students[0].ID
	}
	return out, nil
}

// applyClaims puts the profile and link claims into the ID token and the access token.
func applyClaims(s *Session, profile, links map[string]any) {
	if s.Claims.Extra == nil {
		s.Claims.Extra = map[string]any{}
	}
	if s.AccessClaims.Extra == nil {
		s.AccessClaims.Extra = map[string]any{}
	}
	for _, k := range []string{"name", "family_name", "given_name", "middle_name", "birthdate", "students", "roles", "student_id", "esia_oid"} {
		delete(s.Claims.Extra, k)
		delete(s.AccessClaims.Extra, k)
	}
	for k, v := range profile {
		s.Claims.Extra[k] = v
	}
	for k, v := range links {
		s.Claims.Extra[k] = v
		s.AccessClaims.Extra[k] = v
	}
}
