package broker

import (
	"context"
	"slices"

	"github.com/ory/fosite"

	"github.com/esia-broker/esia-broker/storage"
)

// StudentClaim is one element of the students claim (docs/DESIGN.md §6).
type StudentClaim struct {
	ID       string `json:"id"`
	SchoolID string `json:"school_id"`
	Class    string `json:"class"`
	Relation string `json:"relation"`
	Name     string `json:"name"`
}

// linkClaims are the claims of scopes students and esia, read fresh from the database. picked
// is the student chosen on the picker ("" when none); it is kept only while still linked.
func (b *Broker) linkClaims(ctx context.Context, a *storage.Account, scopes fosite.Arguments, picked string) (map[string]any, error) {
	return b.linkClaimsFrom(ctx, a, scopes, picked, nil)
}

// linkClaimsFrom is linkClaims with the account's links already read (nil reads them).
func (b *Broker) linkClaimsFrom(ctx context.Context, a *storage.Account, scopes fosite.Arguments, picked string, linked []storage.LinkedStudent) (map[string]any, error) {
	out := map[string]any{}
	if scopes.Has("esia") && a.Upstream == "esia" && a.UpstreamSub != nil {
		out["esia_oid"] = *a.UpstreamSub
	}
	if !scopes.Has("students") {
		return out, nil
	}
	if linked == nil {
		var err error
		if linked, err = b.store.LinkedStudents(ctx, a.ID); err != nil {
			return nil, err
		}
	}
	if a.Kind == "child" {
		// A child's sub-account sees its own card only.
		linked = nil
		if c, err := b.store.ChildByAccount(ctx, a.ID); err == nil {
			if st, err := b.store.Student(ctx, c.StudentID); err == nil && st.Active {
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
