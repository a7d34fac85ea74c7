package storage_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/internal/testwait"

	"github.com/google/uuid"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/openid"

	"github.com/esia-broker/esia-broker/storage"
)

// runConformance runs every storage behaviour against stores made by newStore.
func runConformance(t *testing.T, newStore func(t testing.TB) *storage.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s *storage.Store)
	}{
		{"Migrations", testMigrations},
		{"Clients", testClients},
		{"AuthorizeCodes", testAuthorizeCodes},
		{"AuthorizeCodeConcurrentInvalidate", testAuthorizeCodeConcurrentInvalidate},
		{"AccessTokens", testAccessTokens},
		{"RefreshRotationGrace", testRefreshRotationGrace},
		{"RefreshConcurrentRotation", testRefreshConcurrentRotation},
		{"PKCEAndOIDC", testPKCEAndOIDC},
		{"TransactionRollback", testTransactionRollback},
		{"SigningKeys", testSigningKeys},
		{"Accounts", testAccounts},
		{"AccountsConcurrentUpsert", testAccountsConcurrentUpsert},
		{"BrowserSessions", testBrowserSessions},
		{"LoginRequests", testLoginRequests},
		{"UpstreamFlowsSingleUse", testUpstreamFlows},
		{"Audit", testAudit},
		{"DeleteExpired", testDeleteExpired},
		{"SearchText", testSearchText},
		{"RunExclusive", testRunExclusive},
		{"RateBuckets", testRateBuckets},
		{"ClientCache", testClientCache},
		{"AttemptLimits", testAttemptLimits},
		{"RosterAndLinks", testRosterAndLinks},
		{"Invites", testInvites},
		{"ChildrenAndKeys", testChildrenAndKeys},
		{"ConsentsIntentsAndRequests", testConsentsIntentsAndRequests},
		{"RevokedFamilyInGrace", testRevokedFamilyInGrace},
		{"Edges", testEdges},
		{"RosterChangeEndsSNILSLinks", testRosterChangeEndsSNILSLinks},
		{"DeactivateAndRegroupInOneUpsert", testDeactivateAndRegroupInOneUpsert},
		{"FailedTokenRequestRollsBack", testAbortRequestTx},
		{"EndOrphanedChildAccess", testEndOrphanedChildAccess},
		{"SecretFingerprints", testSecretFingerprints},
		{"BackchannelQueue", testBackchannelQueue},
		{"PARSessions", testPARSessions},
		{"Settings", testSettings},
		{"RegionImports", testRegionImports},
		{"LinkFollowsSNILS", testLinkFollowsSNILS},
		{"ImportedChildren", testImportedChildren},
		{"InviteByIDAndRevoke", testInviteByIDAndRevoke},
		{"EventsAndPrune", testEventsAndPrune},
		{"RowLocks", testRowLocks},
		{"TracingAndStats", testTracingAndStats},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func withClock(s *storage.Store) *clock {
	c := &clock{t: time.Now().UTC()}
	s.SetClock(c.now)
	return c
}

func mustClient(t *testing.T, s *storage.Store, id string) *storage.Client {
	t.Helper()
	c := &storage.Client{
		ID: id, Name: "Дневник " + id, SecretHash: "sha256$00",
		RedirectURIs:           []string{"https://diary.example/cb"},
		PostLogoutRedirectURIs: []string{"https://diary.example/bye"},
		GrantTypes:             []string{"authorization_code", "refresh_token"},
		ResponseTypes:          []string{"code"},
		Scopes:                 []string{"openid", "profile", "offline_access"},
	}
	if err := s.CreateClient(context.Background(), c); err != nil {
		t.Fatalf("create client: %v", err)
	}
	return c
}

func newRequest(c fosite.Client, subject string) *fosite.Request {
	sess := openid.NewDefaultSession()
	sess.Subject = subject
	sess.Claims.Subject = subject
	sess.SetExpiresAt(fosite.AccessToken, time.Now().Add(time.Hour).UTC().Round(time.Second))
	sess.SetExpiresAt(fosite.RefreshToken, time.Now().Add(24*time.Hour).UTC().Round(time.Second))
	r := fosite.NewRequest()
	r.ID = uuid.NewString()
	r.Client = c
	r.RequestedScope = fosite.Arguments{"openid", "offline_access"}
	r.GrantedScope = fosite.Arguments{"openid", "offline_access"}
	r.Form.Set("redirect_uri", "https://diary.example/cb")
	r.Form.Set("client_secret", "must-not-be-stored")
	r.Session = sess
	return r
}

func testMigrations(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	applied, err := s.Migrate(ctx)
	if err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	if len(applied) != 0 {
		t.Errorf("second migrate applied %v, want nothing", applied)
	}
	ok, err := s.MigrationsCurrent(ctx)
	if err != nil || !ok {
		t.Fatalf("MigrationsCurrent = %v, %v; want true", ok, err)
	}
	st, err := s.MigrationStatus(ctx)
	if err != nil || len(st) == 0 {
		t.Fatalf("MigrationStatus = %v, %v", st, err)
	}
}

func testClients(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	c := mustClient(t, s, "kiasuo")
	if err := s.CreateClient(ctx, &storage.Client{ID: "kiasuo"}); !errors.Is(err, storage.ErrConflict) {
		t.Errorf("duplicate create: err = %v, want ErrConflict", err)
	}
	got, err := s.GetClient(ctx, "kiasuo")
	if err != nil {
		t.Fatalf("GetClient: %v", err)
	}
	if got.GetRedirectURIs()[0] != c.RedirectURIs[0] || got.(*storage.Client).Name != c.Name || !got.GetGrantTypes().Has("refresh_token") {
		t.Errorf("GetClient = %+v, want %+v", got, c)
	}
	if !got.GetAudience().Has("kiasuo") {
		t.Errorf("audience %v lacks the client's own id", got.GetAudience())
	}
	if _, err := s.GetClient(ctx, "nobody"); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("GetClient(unknown) err = %v, want fosite.ErrNotFound", err)
	}
	if got.(*storage.Client).HomeURL != "" {
		t.Errorf("home URL of a client registered without one: %q", got.(*storage.Client).HomeURL)
	}
	c.RedirectURIs = []string{"https://diary.example/cb2"}
	c.Public = true
	c.HomeURL = "https://diary.example/"
	if err := s.UpdateClient(ctx, c); err != nil {
		t.Fatalf("UpdateClient: %v", err)
	}
	got2, _ := s.Client(ctx, "kiasuo")
	if !got2.Public || got2.RedirectURIs[0] != "https://diary.example/cb2" || got2.HomeURL != "https://diary.example/" {
		t.Errorf("after update: %+v", got2)
	}
	if err := s.UpdateClient(ctx, &storage.Client{ID: "nobody"}); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("update unknown: %v", err)
	}
	mustClient(t, s, "asiou")
	all, err := s.Clients(ctx)
	if err != nil || len(all) != 2 || all[0].ID != "asiou" {
		t.Fatalf("Clients = %v, %v", all, err)
	}
	// Deleting a client removes its tokens.
	if err := s.CreateAccessTokenSession(ctx, "sig-del", newRequest(c, "u1")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteClient(ctx, "kiasuo"); err != nil {
		t.Fatalf("DeleteClient: %v", err)
	}
	if counts, _ := s.TokenCounts(ctx); counts["oauth2_access"] != 0 {
		t.Errorf("tokens of a deleted client remain: %v", counts)
	}
	if err := s.DeleteClient(ctx, "kiasuo"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
}

func testAuthorizeCodes(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	c := mustClient(t, s, "rp")
	r := newRequest(c, "user-1")
	if err := s.CreateAuthorizeCodeSession(ctx, "code-sig", r); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetAuthorizeCodeSession(ctx, "code-sig", openid.NewDefaultSession())
	if err != nil {
		t.Fatalf("get: %v", err)
	}
	if got.GetID() != r.ID || got.GetSession().GetSubject() != "user-1" || !got.GetGrantedScopes().Has("offline_access") {
		t.Errorf("round trip lost data: %+v", got)
	}
	if got.GetRequestForm().Get("client_secret") != "" {
		t.Error("client_secret reached the database")
	}
	if got.GetRequestForm().Get("redirect_uri") == "" {
		t.Error("redirect_uri lost")
	}
	if err := s.InvalidateAuthorizeCodeSession(ctx, "code-sig"); err != nil {
		t.Fatal(err)
	}
	got, err = s.GetAuthorizeCodeSession(ctx, "code-sig", openid.NewDefaultSession())
	if !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) || got == nil || got.GetID() != r.ID {
		t.Errorf("after invalidate: %v, %v; want request and ErrInvalidatedAuthorizeCode", got, err)
	}
	if err := s.InvalidateAuthorizeCodeSession(ctx, "code-sig"); !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
		t.Errorf("second invalidate: %v", err)
	}
	// The same in a request transaction, where reads of token rows are remembered: a write
	// to the table must make the next read see it.
	if err := s.CreateAuthorizeCodeSession(ctx, "code-sig-2", r); err != nil {
		t.Fatal(err)
	}
	rctx, err := s.BeginRequestTx(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if got, err := s.GetAuthorizeCodeSession(rctx, "code-sig-2", openid.NewDefaultSession()); err != nil || got.GetSession().GetSubject() != "user-1" {
			t.Fatalf("read %d in a request transaction: %v, %v", i, got, err)
		}
	}
	if err := s.InvalidateAuthorizeCodeSession(rctx, "code-sig-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAuthorizeCodeSession(rctx, "code-sig-2", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode) {
		t.Errorf("read after invalidating in the same request transaction: %v, want ErrInvalidatedAuthorizeCode", err)
	}
	if err := s.CreatePKCERequestSession(rctx, "code-sig-2", r); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetPKCERequestSession(rctx, "code-sig-2", openid.NewDefaultSession()); err != nil {
		t.Fatal(err)
	}
	if err := s.DeletePKCERequestSession(rctx, "code-sig-2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetPKCERequestSession(rctx, "code-sig-2", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("read after deleting in the same request transaction: %v, want not found", err)
	}
	if _, err := s.EndRequestTx(rctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAuthorizeCodeSession(ctx, "nope", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("unknown code: %v", err)
	}
}

func testAuthorizeCodeConcurrentInvalidate(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	c := mustClient(t, s, "rp")
	if err := s.CreateAuthorizeCodeSession(ctx, "race", newRequest(c, "u")); err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.InTx(ctx, func(ctx context.Context) error { return s.InvalidateAuthorizeCodeSession(ctx, "race") })
			switch {
			case err == nil:
				wins.Add(1)
			case !errors.Is(err, fosite.ErrInvalidatedAuthorizeCode):
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("unexpected error: %v", err)
	}
	if wins.Load() != 1 {
		t.Errorf("%d concurrent invalidations succeeded, want exactly 1", wins.Load())
	}
}

func testAccessTokens(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	c := mustClient(t, s, "rp")
	r := newRequest(c, "u")
	for _, sig := range []string{"at1", "at2"} {
		if err := s.CreateAccessTokenSession(ctx, sig, r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.GetAccessTokenSession(ctx, "at1", openid.NewDefaultSession())
	if err != nil || got.GetSession().GetSubject() != "u" {
		t.Fatalf("get: %v %v", got, err)
	}
	wantExp := r.Session.GetExpiresAt(fosite.AccessToken)
	if e := got.GetSession().GetExpiresAt(fosite.AccessToken); !e.Equal(wantExp) {
		t.Errorf("expiry %v, want %v", e, wantExp)
	}
	if err := s.DeleteAccessTokenSession(ctx, "at1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccessTokenSession(ctx, "at1", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
	if err := s.RevokeAccessToken(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccessTokenSession(ctx, "at2", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("after revoke by request id: %v", err)
	}
}

func testRefreshRotationGrace(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	clk := withClock(s)
	s.RefreshGrace = 5 * time.Second
	c := mustClient(t, s, "rp")
	r := newRequest(c, "u")
	if err := s.CreateAccessTokenSession(ctx, "at-old", r); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRefreshTokenSession(ctx, "rt-old", "at-old", r); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetRefreshTokenSession(ctx, "rt-old", openid.NewDefaultSession()); err != nil {
		t.Fatalf("fresh token: %v", err)
	}
	if err := s.RotateRefreshToken(ctx, r.ID, "rt-old"); err != nil {
		t.Fatalf("rotate: %v", err)
	}
	if _, err := s.GetAccessTokenSession(ctx, "at-old", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("the access token issued with a rotated refresh token survives: %v", err)
	}
	if err := s.RotateRefreshToken(ctx, "other-family", "rt-old"); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("rotate with a foreign request id: %v", err)
	}
	clk.add(4 * time.Second)
	if _, err := s.GetRefreshTokenSession(ctx, "rt-old", openid.NewDefaultSession()); err != nil {
		t.Errorf("inside the grace window: %v, want usable", err)
	}
	// A second rotation inside the window does not restart it.
	if err := s.RotateRefreshToken(ctx, r.ID, "rt-old"); err != nil {
		t.Fatalf("rotate again: %v", err)
	}
	clk.add(2 * time.Second)
	got, err := s.GetRefreshTokenSession(ctx, "rt-old", openid.NewDefaultSession())
	if !errors.Is(err, fosite.ErrInactiveToken) || got == nil {
		t.Errorf("after the grace window: %v, %v; want request and ErrInactiveToken", got, err)
	}
	// Family revocation: a new member of the family dies with it, without grace.
	if err := s.CreateRefreshTokenSession(ctx, "rt-new", "", r); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeRefreshToken(ctx, r.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetRefreshTokenSession(ctx, "rt-new", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrInactiveToken) {
		t.Errorf("after family revocation: %v", err)
	}
	if err := s.DeleteRefreshTokenSession(ctx, "rt-new"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetRefreshTokenSession(ctx, "rt-new", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("after delete: %v", err)
	}
}

// testRefreshConcurrentRotation does what fosite's refresh handler does, 20 times at once on one
// token: rotate and issue new tokens in one transaction. All must succeed inside the grace window.
func testRefreshConcurrentRotation(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	s.RefreshGrace = 30 * time.Second
	c := mustClient(t, s, "rp")
	r := newRequest(c, "u")
	if err := s.CreateRefreshTokenSession(ctx, "rt", "", r); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.GetRefreshTokenSession(ctx, "rt", openid.NewDefaultSession()); err != nil {
				errs <- fmt.Errorf("get: %w", err)
				return
			}
			errs <- s.InTx(ctx, func(ctx context.Context) error {
				if err := s.RotateRefreshToken(ctx, r.ID, "rt"); err != nil {
					return err
				}
				if err := s.CreateAccessTokenSession(ctx, fmt.Sprintf("at-%d", i), r); err != nil {
					return err
				}
				return s.CreateRefreshTokenSession(ctx, fmt.Sprintf("rt-%d", i), fmt.Sprintf("at-%d", i), r)
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent rotation: %v", err)
		}
	}
	counts, err := s.TokenCounts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts["oauth2_refresh"] != n+1 || counts["oauth2_access"] != n {
		t.Errorf("counts = %v, want %d refresh and %d access", counts, n+1, n)
	}
}

func testPKCEAndOIDC(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	c := mustClient(t, s, "rp")
	r := newRequest(c, "u")
	r.Form.Set("code_challenge", "abc")
	r.Form.Set("nonce", "n-1")
	if err := s.CreatePKCERequestSession(ctx, "p", r); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetPKCERequestSession(ctx, "p", openid.NewDefaultSession())
	if err != nil || got.GetRequestForm().Get("code_challenge") != "abc" {
		t.Fatalf("pkce get: %v %v", got, err)
	}
	if err := s.DeletePKCERequestSession(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetPKCERequestSession(ctx, "p", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("pkce after delete: %v", err)
	}
	if err := s.CreateOpenIDConnectSession(ctx, "o", r); err != nil {
		t.Fatal(err)
	}
	probe := fosite.NewRequest()
	probe.Session = openid.NewDefaultSession()
	got, err = s.GetOpenIDConnectSession(ctx, "o", probe)
	if err != nil || got.GetRequestForm().Get("nonce") != "n-1" {
		t.Fatalf("oidc get: %v %v", got, err)
	}
	if err := s.DeleteOpenIDConnectSession(ctx, "o"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetOpenIDConnectSession(ctx, "o", probe); !errors.Is(err, openid.ErrNoSessionFound) {
		t.Errorf("oidc after delete: %v", err)
	}
}

func testTransactionRollback(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	c := mustClient(t, s, "rp")
	boom := errors.New("boom")
	err := s.InTx(ctx, func(ctx context.Context) error {
		if err := s.CreateAccessTokenSession(ctx, "tx-at", newRequest(c, "u")); err != nil {
			return err
		}
		if err := s.CreateRefreshTokenSession(ctx, "tx-rt", "tx-at", newRequest(c, "u")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("InTx = %v, want boom", err)
	}
	counts, _ := s.TokenCounts(ctx)
	if counts["oauth2_access"] != 0 || counts["oauth2_refresh"] != 0 {
		t.Errorf("rolled back transaction left rows: %v", counts)
	}
	// fosite's Transactional interface.
	tctx, err := s.BeginTX(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateAccessTokenSession(tctx, "tx2", newRequest(c, "u")); err != nil {
		t.Fatal(err)
	}
	if err := s.Rollback(tctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccessTokenSession(ctx, "tx2", openid.NewDefaultSession()); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("after Rollback: %v", err)
	}
	tctx, _ = s.BeginTX(ctx)
	if err := s.CreateAccessTokenSession(tctx, "tx3", newRequest(c, "u")); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(tctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccessTokenSession(ctx, "tx3", openid.NewDefaultSession()); err != nil {
		t.Errorf("after Commit: %v", err)
	}

	// A request transaction: fosite's BeginTX/Commit inside it join it; nothing is visible
	// outside until it ends; a joined Rollback (or abort) drops everything.
	seen := func(sig string) bool {
		_, err := s.GetAccessTokenSession(ctx, sig, openid.NewDefaultSession())
		return err == nil
	}
	for _, tc := range []struct {
		name          string
		innerRollback bool
		inTxErr       bool
		want          bool
	}{{"committed", false, false, true}, {"joined rollback", true, false, false}, {"joined InTx failed", false, true, false}} {
		sig := "req-" + strings.ReplaceAll(tc.name, " ", "-")
		rctx, err := s.BeginRequestTx(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.BeginRequestTx(rctx); err == nil {
			t.Errorf("%s: a second request transaction was opened inside the first", tc.name)
		}
		if err := s.CreateRefreshTokenSession(rctx, sig+"-r", "", newRequest(c, "u")); err != nil {
			t.Fatal(err)
		}
		ictx, err := s.BeginTX(rctx)
		if err != nil {
			t.Fatalf("%s: BeginTX under a request transaction: %v", tc.name, err)
		}
		if err := s.CreateAccessTokenSession(ictx, sig, newRequest(c, "u")); err != nil {
			t.Fatal(err)
		}
		if tc.innerRollback {
			err = s.Rollback(ictx)
		} else {
			err = s.Commit(ictx)
		}
		if err != nil {
			t.Fatal(err)
		}
		if tc.inTxErr {
			boom := errors.New("boom")
			if err := s.InTx(rctx, func(context.Context) error { return boom }); !errors.Is(err, boom) {
				t.Fatalf("%s: InTx = %v, want boom", tc.name, err)
			}
		}
		if seen(sig) {
			t.Errorf("%s: a joined commit was visible before the request transaction ended", tc.name)
		}
		committed, err := s.EndRequestTx(rctx)
		if err != nil {
			t.Fatal(err)
		}
		if committed != tc.want || seen(sig) != tc.want {
			t.Errorf("%s: committed=%v, row visible=%v, want %v", tc.name, committed, seen(sig), tc.want)
		}
	}
}

func testSigningKeys(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	clk := withClock(s)
	now := clk.now()
	for i, k := range []storage.SigningKey{
		{KID: "k1", Alg: "RS256", PrivateEnc: []byte{1, 2, 3}, PublicJWK: `{"kid":"k1"}`, CreatedAt: now, NotBefore: now},
		{KID: "k2", Alg: "RS256", PrivateEnc: []byte{4}, PublicJWK: `{"kid":"k2"}`, CreatedAt: now, NotBefore: now.Add(time.Minute)},
		{KID: "e1", Alg: "ES256", PrivateEnc: []byte{5}, PublicJWK: `{"kid":"e1"}`, CreatedAt: now, NotBefore: now},
	} {
		k := k
		if err := s.AddSigningKey(ctx, &k); err != nil {
			t.Fatalf("add key %d: %v", i, err)
		}
	}
	if err := s.RetireSigningKeys(ctx, "RS256", "k2", now.Add(time.Minute), now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	ks, err := s.SigningKeys(ctx)
	if err != nil || len(ks) != 3 {
		t.Fatalf("keys = %v, %v", ks, err)
	}
	byID := map[string]storage.SigningKey{}
	for _, k := range ks {
		byID[k.KID] = k
	}
	if byID["k1"].RetiredAt == nil || byID["k2"].RetiredAt != nil || byID["e1"].RetiredAt != nil {
		t.Errorf("retirement touched the wrong keys: %+v", byID)
	}
	if string(byID["k1"].PrivateEnc) != "\x01\x02\x03" {
		t.Errorf("private bytes changed: %v", byID["k1"].PrivateEnc)
	}
	clk.add(2 * time.Hour)
	ks, _ = s.SigningKeys(ctx)
	if len(ks) != 2 {
		t.Errorf("an expired key is still listed: %v", ks)
	}
}

func testAccounts(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	sub := "1000299654"
	a, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: &sub, FamilyName: "Иванова", GivenName: "Мария"})
	if err != nil {
		t.Fatal(err)
	}
	sub2 := sub
	b, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: &sub2, FamilyName: "Петрова", GivenName: "Мария"})
	if err != nil {
		t.Fatal(err)
	}
	if a.ID != b.ID || b.FamilyName != "Петрова" {
		t.Errorf("second login made %+v, want the same account updated", b)
	}
	got, err := s.Account(ctx, a.ID)
	if err != nil || got.FamilyName != "Петрова" {
		t.Errorf("Account = %+v, %v", got, err)
	}
	// A login with nothing changed writes nothing: updated_at stays.
	clk := withClock(s)
	clk.add(time.Hour)
	sub3 := sub
	if _, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: &sub3, FamilyName: "Петрова", GivenName: "Мария"}); err != nil {
		t.Fatal(err)
	}
	if again, err := s.Account(ctx, a.ID); err != nil || !again.UpdatedAt.Equal(got.UpdatedAt) {
		t.Errorf("unchanged login rewrote the account: updated_at %v → %v (%v)", got.UpdatedAt, again.UpdatedAt, err)
	}
	if _, err := s.Account(ctx, "missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("missing account: %v", err)
	}
	if _, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia"}); err == nil {
		t.Error("an account without subject was accepted")
	}
}

func testAccountsConcurrentUpsert(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	var wg sync.WaitGroup
	ids := make(chan string, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sub := "42"
			for attempt := 0; attempt < 3; attempt++ {
				a, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: &sub})
				if errors.Is(err, storage.ErrConflict) {
					continue // lost the race to create: the next try updates.
				}
				if err != nil {
					t.Errorf("upsert: %v", err)
					return
				}
				ids <- a.ID
				return
			}
			t.Error("upsert kept conflicting")
		}()
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		seen[id] = true
	}
	if n, _ := s.CountAccounts(ctx); n != 1 || len(seen) != 1 {
		t.Errorf("%d accounts, %d distinct ids; want 1 and 1", n, len(seen))
	}
}

func testBrowserSessions(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	clk := withClock(s)
	sub := "s1"
	a, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: &sub})
	if err != nil {
		t.Fatal(err)
	}
	b := &storage.BrowserSession{IDHash: "h1", AccountID: a.ID, AuthTime: clk.now(), ACR: "esia", ExpiresAt: clk.now().Add(time.Hour)}
	if err := s.CreateBrowserSession(ctx, b, []string{"esia"}); err != nil {
		t.Fatal(err)
	}
	got, err := s.BrowserSession(ctx, "h1")
	if err != nil || got.AccountID != a.ID || got.AMR()[0] != "esia" {
		t.Fatalf("get: %+v %v", got, err)
	}
	js, ja, err := s.SessionWithAccount(ctx, "h1")
	if err != nil || js.AccountID != a.ID || ja.ID != a.ID || js.AMR()[0] != "esia" || js.CreatedAt.IsZero() || ja.CreatedAt.IsZero() || !js.ExpiresAt.Equal(got.ExpiresAt) {
		t.Fatalf("joined get: %+v %+v %v", js, ja, err)
	}
	// The public session id: made at creation, read back both ways, and a logout by it ends
	// only that session of that account.
	if len(b.SID) < 16 || got.SID != b.SID || js.SID != b.SID {
		t.Errorf("sid %q, read %q and %q", b.SID, got.SID, js.SID)
	}
	other := &storage.BrowserSession{IDHash: "h2", AccountID: a.ID, AuthTime: clk.now(), ExpiresAt: clk.now().Add(time.Hour)}
	if err := s.CreateBrowserSession(ctx, other, nil); err != nil || other.SID == b.SID {
		t.Fatalf("second session: %v, sid %q", err, other.SID)
	}
	for _, tc := range []struct {
		sid, account string
		want         int
	}{{b.SID, "another-account", 0}, {"", a.ID, 0}, {"nope", a.ID, 0}, {other.SID, a.ID, 1}, {other.SID, a.ID, 0}} {
		if n, err := s.DeleteBrowserSessionsBySID(ctx, tc.sid, tc.account); err != nil || n != tc.want {
			t.Errorf("delete by sid %q of %q: %d %v, want %d", tc.sid, tc.account, n, err, tc.want)
		}
	}
	if _, err := s.BrowserSession(ctx, "h1"); err != nil {
		t.Errorf("the first session went with the second: %v", err)
	}
	clk.add(2 * time.Hour)
	if _, err := s.BrowserSession(ctx, "h1"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("expired session still served: %v", err)
	}
	if _, _, err := s.SessionWithAccount(ctx, "h1"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("expired session still served joined: %v", err)
	}
	if err := s.DeleteBrowserSession(ctx, "h1"); err != nil {
		t.Fatal(err)
	}
}

func testLoginRequests(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	clk := withClock(s)
	// A login request and its upstream flow, written together or not at all.
	lrA := &storage.LoginRequest{ID: "lr-with-flow", AuthorizeQuery: "client_id=x", BrowserHash: "b", ExpiresAt: clk.now().Add(time.Minute)}
	fA := &storage.UpstreamFlow{State: "state-a", Connector: "esia", LoginRequestID: lrA.ID, BrowserHash: "b", Data: "{}", ExpiresAt: clk.now().Add(time.Minute)}
	if err := s.CreateLoginWithFlow(ctx, lrA, fA); err != nil {
		t.Fatal(err)
	}
	if got, err := s.LoginRequest(ctx, lrA.ID); err != nil || got.AuthorizeQuery != "client_id=x" {
		t.Errorf("login request written with its flow: %+v %v", got, err)
	}
	if got, err := s.ConsumeUpstreamFlow(ctx, "state-a"); err != nil || got.LoginRequestID != lrA.ID || got.Connector != "esia" {
		t.Errorf("flow written with its login request: %+v %v", got, err)
	}
	if err := s.CreateLoginWithFlow(ctx, &storage.LoginRequest{ID: "lr-dup", AuthorizeQuery: "q", BrowserHash: "b", ExpiresAt: clk.now().Add(time.Minute)},
		&storage.UpstreamFlow{State: "state-b", Connector: "esia", LoginRequestID: "lr-dup", BrowserHash: "b", ExpiresAt: clk.now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	err := s.CreateLoginWithFlow(ctx, &storage.LoginRequest{ID: "lr-half", AuthorizeQuery: "q", BrowserHash: "b", ExpiresAt: clk.now().Add(time.Minute)},
		&storage.UpstreamFlow{State: "state-b", Connector: "esia", LoginRequestID: "lr-half", BrowserHash: "b", ExpiresAt: clk.now().Add(time.Minute)})
	if err == nil {
		t.Error("a flow with a state already in use was written")
	}
	if _, err := s.LoginRequest(ctx, "lr-half"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("the login request of a failed flow stayed: %v", err)
	}
	r := &storage.LoginRequest{ID: "lr", AuthorizeQuery: "client_id=x", BrowserHash: "b", ExpiresAt: clk.now().Add(time.Minute)}
	if err := s.CreateLoginRequest(ctx, r); err != nil {
		t.Fatal(err)
	}
	if done, err := s.CompleteLoginRequest(ctx, "lr", "sess", "b2"); err != nil || done.SessionHash != "sess" || done.BrowserHash != "b2" || done.AuthorizeQuery != "client_id=x" {
		t.Fatalf("complete: %+v %v", done, err)
	}
	got, err := s.ConsumeLoginRequest(ctx, "lr")
	if err != nil || got.SessionHash != "sess" || got.AuthorizeQuery != "client_id=x" {
		t.Fatalf("consume: %+v %v", got, err)
	}
	if _, err := s.ConsumeLoginRequest(ctx, "lr"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("second consume: %v", err)
	}
	r2 := &storage.LoginRequest{ID: "lr2", AuthorizeQuery: "q", BrowserHash: "b", ExpiresAt: clk.now().Add(time.Minute)}
	if err := s.CreateLoginRequest(ctx, r2); err != nil {
		t.Fatal(err)
	}
	clk.add(2 * time.Minute)
	if _, err := s.LoginRequest(ctx, "lr2"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("expired login request served: %v", err)
	}
	if _, err := s.CompleteLoginRequest(ctx, "lr2", "x", "b"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("completing an expired request: %v", err)
	}
	if _, err := s.ConsumeLoginRequest(ctx, "lr2"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("consuming an expired request: %v", err)
	}
}

func testUpstreamFlows(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	clk := withClock(s)
	f := &storage.UpstreamFlow{State: uuid.NewString(), Connector: "esia", LoginRequestID: "lr", BrowserHash: "b", ExpiresAt: clk.now().Add(10 * time.Minute)}
	if err := s.CreateUpstreamFlow(ctx, f); err != nil {
		t.Fatal(err)
	}
	var wins atomic.Int32
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := s.ConsumeUpstreamFlow(ctx, f.State)
			if err == nil && got.LoginRequestID == "lr" {
				wins.Add(1)
			} else if !errors.Is(err, storage.ErrNotFound) {
				t.Errorf("consume: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Errorf("%d concurrent consumptions of one flow, want 1", wins.Load())
	}
	old := &storage.UpstreamFlow{State: uuid.NewString(), Connector: "esia", LoginRequestID: "lr", BrowserHash: "b", ExpiresAt: clk.now().Add(time.Minute)}
	if err := s.CreateUpstreamFlow(ctx, old); err != nil {
		t.Fatal(err)
	}
	clk.add(2 * time.Minute)
	if _, err := s.ConsumeUpstreamFlow(ctx, old.State); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("expired flow consumed: %v", err)
	}
}

func testAudit(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	if err := s.Audit(ctx, "cli:admin", "client.create", "kiasuo", map[string]any{"public": false}); err != nil {
		t.Fatal(err)
	}
	if err := s.Audit(ctx, "cli:admin", "keys.rotate", "RS256", nil); err != nil {
		t.Fatal(err)
	}
	ev, err := s.AuditEvents(ctx, 10)
	if err != nil || len(ev) != 2 || ev[0].Action != "keys.rotate" || ev[1].Details != `{"public":false}` {
		t.Fatalf("audit = %+v, %v", ev, err)
	}
}

func testDeleteExpired(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	clk := withClock(s)
	c := mustClient(t, s, "rp")
	r := newRequest(c, "u")
	r.Session.SetExpiresAt(fosite.AccessToken, clk.now().Add(time.Minute))
	if err := s.CreateAccessTokenSession(ctx, "short", r); err != nil {
		t.Fatal(err)
	}
	r2 := newRequest(c, "u")
	r2.Session.SetExpiresAt(fosite.AccessToken, clk.now().Add(time.Hour))
	if err := s.CreateAccessTokenSession(ctx, "long", r2); err != nil {
		t.Fatal(err)
	}
	clk.add(10 * time.Minute)
	n, err := s.DeleteExpired(ctx)
	if err != nil || n != 1 {
		t.Fatalf("DeleteExpired = %d, %v; want 1", n, err)
	}
	if _, err := s.GetAccessTokenSession(ctx, "long", openid.NewDefaultSession()); err != nil {
		t.Errorf("unexpired token removed: %v", err)
	}
}

// testSearchText proves that the search other tests use to show a value is absent can find it.
func testSearchText(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	sub := "search-me"
	if _, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: &sub, FamilyName: "Найдименя-11223344595"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Audit(ctx, "cli:x", "probe", "", map[string]any{"note": "ZXCV-7788"}); err != nil {
		t.Fatal(err)
	}
	for needle, want := range map[string]string{"11223344595": "accounts.family_name", "ZXCV-7788": "audit_log.details"} {
		found, err := s.SearchText(ctx, needle)
		if err != nil {
			t.Fatal(err)
		}
		if len(found) != 1 || found[0] != want {
			t.Errorf("SearchText(%q) = %v, want [%s]", needle, found, want)
		}
	}
	if found, _ := s.SearchText(ctx, "absent-value-0000"); len(found) != 0 {
		t.Errorf("found an absent value in %v", found)
	}
}

// testRunExclusive: on PostgreSQL a second process cannot run a job while the first holds it; on
// SQLite the job always runs.
func testRunExclusive(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	inside := make(chan struct{})
	release := make(chan struct{})
	done := make(chan bool, 1)
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	defer free() // a failed assertion below must not leave the first job waiting for ever
	go func() {
		ran, err := s.RunExclusive(ctx, 4242, func(context.Context) error {
			close(inside)
			<-release
			return nil
		})
		if err != nil {
			t.Error(err)
			close(inside)
		}
		done <- ran
	}()
	testwait.Recv(t, inside, 10*time.Second, "the first RunExclusive to start its job")
	ran, err := s.RunExclusive(ctx, 4242, func(context.Context) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	wantSecond := s.Dialect() == storage.SQLite
	if ran != wantSecond {
		t.Errorf("second RunExclusive while the first holds the job: ran=%v, want %v (%s)", ran, wantSecond, s.Dialect())
	}
	free()
	if !testwait.Recv(t, done, 10*time.Second, "the first RunExclusive to finish") {
		t.Error("the first RunExclusive did not run")
	}
	if ran, _ := s.RunExclusive(ctx, 4242, func(context.Context) error { return nil }); !ran {
		t.Error("the job did not run after the lock was released")
	}
}

func testRateBuckets(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	clk := withClock(s)
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := s.Hit(ctx, "k", time.Minute); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	n, reset, err := s.Hit(ctx, "k", time.Minute)
	if err != nil || n != 11 || reset.Before(clk.now()) {
		t.Fatalf("after 11 concurrent hits: %d %v %v", n, reset, err)
	}
	if n, _, _ := s.Hit(ctx, "other", time.Minute); n != 1 {
		t.Errorf("another key: %d", n)
	}
	clk.add(61 * time.Second)
	if n, _, _ := s.Hit(ctx, "k", time.Minute); n != 1 {
		t.Errorf("a new window starts at 1, got %d", n)
	}
}

func testClientCache(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	clk := withClock(s)
	s.ClientCacheTTL = 5 * time.Second
	c := mustClient(t, s, "cached")
	if _, err := s.GetClient(ctx, "cached"); err != nil {
		t.Fatal(err)
	}
	// Through this store a change is seen at once.
	c.RedirectURIs = []string{"https://diary.example/new"}
	if err := s.UpdateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	got, _ := s.GetClient(ctx, "cached")
	if got.GetRedirectURIs()[0] != "https://diary.example/new" {
		t.Errorf("update not seen: %v", got.GetRedirectURIs())
	}
	// A change made elsewhere (another replica) is seen after the TTL.
	if _, err := s.Client(ctx, "cached"); err != nil {
		t.Fatal(err)
	}
	other := *c
	other.RedirectURIs = []string{"https://diary.example/elsewhere"}
	if err := s.UpdateClientUncached(ctx, &other); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetClient(ctx, "cached")
	if got.GetRedirectURIs()[0] != "https://diary.example/new" {
		t.Errorf("the cache was not used: %v", got.GetRedirectURIs())
	}
	clk.add(6 * time.Second)
	got, _ = s.GetClient(ctx, "cached")
	if got.GetRedirectURIs()[0] != "https://diary.example/elsewhere" {
		t.Errorf("after the TTL: %v", got.GetRedirectURIs())
	}
	if err := s.DeleteClient(ctx, "cached"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetClient(ctx, "cached"); err == nil {
		t.Error("a deleted client is still served from the cache")
	}
	s.ClientCacheTTL = 0
}
