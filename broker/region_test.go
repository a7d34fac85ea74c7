package broker_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/esia-broker/esia-broker/regionimport"
	"github.com/esia-broker/esia-broker/storage"
)

// TestRegionMoveIn: after `links import` and `children import`, a parent whose link came from
// the region's earlier system logs in through ESIA and reaches the diary with the child, asked
// only for consent (no role, no code); the child logs in with the old password, and its hash is
// argon2id afterwards.
func TestRegionMoveIn(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		e := newLinkEnv(t, s, "ESIA_BROKER_DEV=true", "ESIA_BROKER_CHILDREN_ARGON2_MEMORY_KIB=8192")
		ctx := context.Background()
		// parent-no-match (oid 1000300002): no SNILS on any card; without the import the broker
		// would ask for a code.
		links := "esia_oid,student_id,relation,linked_at,method\n1000300002,s-4,parent,2019-09-01,invite\n1000300002,s-5,parent,2019-09-01,invite\n"
		if rep, err := regionimport.New(e.store, e.link).ImportLinks(ctx, strings.NewReader(links), regionimport.ImportFileOptions{}); err != nil || rep.Created != 2 {
			t.Fatalf("links import: %v %+v", err, rep)
		}
		const bcrypt10 = "$2a$10$6phbKEpEXwOoS0cRSPkn2.TM/c0/z/connnZ0O7BRsWgfuLArBzxO" // Sunflower-2015
		children := "student_id,login,password_hash,guardian_esia_oid\ns-4,Max.Petrov,\"" + bcrypt10 + "\",1000300002\n"
		if rep, err := regionimport.New(e.store, e.link).ImportChildren(ctx, strings.NewReader(children), regionimport.ImportFileOptions{}); err != nil || rep.Created != 1 {
			t.Fatalf("children import: %v %+v", err, rep)
		}

		br := newBrowser(t)
		res := e.esiaLogin(t, br, "parent-no-match", nil, e.acceptAll(t, br))
		if !slices.Equal(res.pages, []string{"Согласие на обработку персональных данных"}) {
			t.Errorf("pages seen by a parent with imported links: %v", res.pages)
		}
		_, c := e.tokens(t, res)
		if got := studentIDs(c); got != "s-4/sch-1/parent,s-5/sch-1/parent" {
			t.Errorf("students after the first login: %s", got)
		}
		a, err := s.AccountByUpstream(ctx, "esia", "1000300002")
		if err != nil || a.AwaitingLogin || a.FamilyName == "" {
			t.Errorf("the account after its first login: %+v %v", a, err)
		}

		child := newBrowser(t)
		resp, body, _ := e.childLoginIn(t, child, "max.petrov", "Sunflower-2015")
		if loc := resp.Header.Get("Location"); resp.StatusCode/100 != 3 || !strings.Contains(loc, "code=") {
			t.Fatalf("the child's login with the imported password: %d %s %.300s", resp.StatusCode, loc, body)
		}
		cred, err := s.ChildByStudent(ctx, "s-4")
		if err != nil || !strings.HasPrefix(cred.PasswordHash, "$argon2id$") {
			t.Errorf("hash after the child's first login: %.12q %v", cred.PasswordHash, err)
		}
		events, err := s.AuditEvents(ctx, 200)
		if err != nil {
			t.Fatal(err)
		}
		var actions []string
		for _, ev := range events {
			actions = append(actions, ev.Action)
		}
		for _, want := range []string{"link.import_settled", "child.rehash"} {
			if !slices.Contains(actions, want) {
				t.Errorf("no %s in the audit: %v", want, actions)
			}
		}
	})
}

// TestTokenSubjects: tokens.subject esia_oid gives the oid as sub, pairwise a per-sector value
// (the same for clients of one sector, another for other sectors), the same in the ID token,
// userinfo and introspection; a logout by the ID token still finds the session.
func TestTokenSubjects(t *testing.T) {
	const oid = "1000300001" // parent-two-kids
	login := func(t *testing.T, e *linkEnv) (*oauth2.Token, idClaims) {
		t.Helper()
		br := newBrowser(t)
		res := e.esiaLogin(t, br, "parent-two-kids", nil, e.acceptAll(t, br))
		return e.tokens(t, res)
	}
	shown := func(t *testing.T, e *linkEnv, tok *oauth2.Token) (userinfo, introspected string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, e.h.URL+"/oauth2/userinfo", nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var ui map[string]any
		decodeJSON(t, resp, &ui)
		_, in := postForm(t, e.h.URL+"/oauth2/introspect", url.Values{"token": {tok.AccessToken}}, "kiasuo", "secret-secret-secret")
		u, _ := ui["sub"].(string)
		i, _ := in["sub"].(string)
		return u, i
	}
	t.Run("esia_oid", func(t *testing.T) {
		e := newLinkEnv(t, openSQLite(t), "ESIA_BROKER_TOKENS_SUBJECT=esia_oid")
		tok, c := login(t, e)
		u, i := shown(t, e, tok)
		if c.Sub != oid || u != oid || i != oid {
			t.Errorf("sub: ID token %q, userinfo %q, introspection %q; want %s", c.Sub, u, i, oid)
		}
	})
	t.Run("uuid", func(t *testing.T) {
		e := newLinkEnv(t, openSQLite(t))
		tok, c := login(t, e)
		a, err := e.store.AccountByUpstream(context.Background(), "esia", oid)
		if err != nil {
			t.Fatal(err)
		}
		u, i := shown(t, e, tok)
		if c.Sub != a.ID || u != a.ID || i != a.ID {
			t.Errorf("sub: ID token %q, userinfo %q, introspection %q; want the account id %s", c.Sub, u, i, a.ID)
		}
	})
	var first string
	for _, tc := range []struct {
		name, sectors string
		same          bool
	}{
		{"pairwise, one sector per host", "", true},
		{"pairwise, kiasuo in a sector of its own", "kiasuo=vendor-a", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newLinkEnv(t, openSQLite(t), "ESIA_BROKER_TOKENS_SUBJECT=pairwise", "ESIA_BROKER_TOKENS_PAIRWISE_SECTORS="+tc.sectors)
			tok, c := login(t, e)
			u, i := shown(t, e, tok)
			if len(c.Sub) != 43 || c.Sub == oid || u != c.Sub || i != c.Sub {
				t.Fatalf("pairwise sub: ID token %q, userinfo %q, introspection %q", c.Sub, u, i)
			}
			// The harness's pepper is the same in every run: the sub is stable.
			if first == "" {
				first = c.Sub
			} else if (c.Sub == first) != tc.same {
				t.Errorf("sub %q against the host sector's %q: same %v, want %v", c.Sub, first, c.Sub == first, tc.same)
			}
			var disc map[string]any
			resp, err := http.Get(e.h.URL + "/.well-known/openid-configuration")
			if err != nil {
				t.Fatal(err)
			}
			decodeJSON(t, resp, &disc)
			if st, _ := disc["subject_types_supported"].([]any); len(st) != 1 || st[0] != "pairwise" {
				t.Errorf("subject_types_supported: %v", disc["subject_types_supported"])
			}
			// A logout by POST with the ID token ends the session its sid names.
			idt, _ := tok.Extra("id_token").(string)
			code, _ := postForm(t, e.h.URL+"/oauth2/logout", url.Values{"id_token_hint": {idt}}, "", "")
			if code >= 400 {
				t.Fatalf("logout by id_token_hint: %d", code)
			}
			found := false
			for _, ev := range mustAudit(t, e.store) {
				found = found || (ev.Action == "logout" && strings.Contains(ev.Details, `"sid"`))
			}
			if !found {
				t.Error("the logout by the ID token did not end the session")
			}
		})
	}
}

func decodeJSON(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", resp.Request.URL, err)
	}
}

func mustAudit(t *testing.T, s *storage.Store) []storage.AuditEvent {
	t.Helper()
	ev, err := s.AuditEvents(context.Background(), 500)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestTokenSubjectChanged: a region that changes tokens.subject: a refresh gives the new sub,
// and a logout with an ID token from before still finds the session.
func TestTokenSubjectChanged(t *testing.T) {
	s := openSQLite(t)
	e := newLinkEnv(t, s, "ESIA_BROKER_TOKENS_SUBJECT=pairwise")
	br := newBrowser(t)
	tok, c := e.tokens(t, e.esiaLogin(t, br, "parent-two-kids", nil, e.acceptAll(t, br)))
	if len(c.Sub) != 43 {
		t.Fatalf("pairwise sub %q", c.Sub)
	}
	conns, _ := esiaUpstream(t, "", 5*time.Second)
	h2 := newHarnessAt(t, s, e.h.URL, conns, "ESIA_BROKER_TOKENS_SUBJECT=esia_oid") // the same broker, restarted with esia_oid
	code, out := postForm(t, h2.Direct+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}}, "kiasuo", "secret-secret-secret")
	idt, _ := out["id_token"].(string)
	if code != http.StatusOK || idt == "" {
		t.Fatalf("refresh: %d %v", code, out)
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	parts := strings.Split(idt, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || json.Unmarshal(payload, &claims) != nil || claims.Sub != "1000300001" {
		t.Errorf("sub after the refresh under esia_oid: %q (%v)", claims.Sub, err)
	}
	old, _ := tok.Extra("id_token").(string)
	if code, _ := postForm(t, h2.Direct+"/oauth2/logout", url.Values{"id_token_hint": {old}}, "", ""); code >= 400 {
		t.Fatalf("logout with the pairwise ID token: %d", code)
	}
	ended := false
	for _, ev := range mustAudit(t, s) {
		ended = ended || (ev.Action == "logout" && strings.Contains(ev.Details, `"sid"`))
	}
	if !ended {
		t.Error("a logout with an ID token from before the change did not end the session")
	}
}

// TestForgottenAccountsLogoutCarriesTheDiarysSub: under pairwise subjects, forgetting an
// account tells each diary by the sub it saw (made before the oid is blanked), never by the
// account id.
func TestForgottenAccountsLogoutCarriesTheDiarysSub(t *testing.T) {
	ctx := context.Background()
	s := openSQLite(t)
	e := newLinkEnv(t, s, "ESIA_BROKER_TOKENS_SUBJECT=pairwise")
	diary := newDiaryStandIn(t)
	c, err := s.Client(ctx, "kiasuo")
	if err != nil {
		t.Fatal(err)
	}
	c.BackchannelLogoutURI = diary.URI()
	if err := s.UpdateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	br := newBrowser(t)
	_, claims := e.tokens(t, e.esiaLogin(t, br, "parent-two-kids", nil, e.acceptAll(t, br)))
	a, err := s.AccountByUpstream(ctx, "esia", "1000300001")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ForgetAccount(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if n, err := e.h.Broker.DeliverLogouts(ctx); err != nil || n != 1 {
		t.Fatalf("deliveries: %d %v", n, err)
	}
	got := diary.received()
	if len(got) != 1 {
		t.Fatalf("the diary received %d logout tokens", len(got))
	}
	lt := verifyLogoutToken(t, e.h.URL+"/oauth2/jwks", got[0], e.h.URL, "kiasuo")
	if lt.Subject != claims.Sub || lt.Subject == a.ID {
		t.Errorf("logout token sub %q, want the diary's %q (never the account id %s)", lt.Subject, claims.Sub, a.ID)
	}
}
