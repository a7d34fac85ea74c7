package storage_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ory/fosite"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/storage/storagetest"
)

// testBackchannelQueue: a session that gave a code to a diary with a back-channel logout URI
// queues one delivery when it ends, with the sub the diary saw; a delivery is claimed by one
// worker, retried after a failure, and gone once delivered.
func testBackchannelQueue(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	clk := withClock(s)
	c := mustClient(t, s, "rp-bc")
	c.BackchannelLogoutURI, c.FrontchannelLogoutURI = "https://diary.example/bc", "https://diary.example/fc"
	must(t, s.UpdateClient(ctx, c))
	mustClient(t, s, "rp-quiet") // no logout URIs: never queued
	a, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: sptr("oid-bc")})
	must(t, err)
	bs := &storage.BrowserSession{IDHash: "sess-bc", AccountID: a.ID, AuthTime: clk.now(), ExpiresAt: clk.now().Add(time.Hour)}
	must(t, s.CreateBrowserSession(ctx, bs, []string{"esia"}))
	if got, err := s.AccountBySID(ctx, bs.SID); err != nil || got != a.ID {
		t.Fatalf("account by sid: %q %v", got, err)
	}
	if _, err := s.AccountBySID(ctx, "no-such-sid"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("unknown sid: %v", err)
	}
	must(t, s.RecordSessionClient(ctx, a.ID, bs.SID, "rp-bc", clk.now().Add(time.Hour)))
	must(t, s.RecordSessionClient(ctx, a.ID, bs.SID, "rp-bc", clk.now().Add(2*time.Hour))) // again: one row
	must(t, s.RecordSessionClient(ctx, a.ID, bs.SID, "rp-quiet", clk.now().Add(time.Hour)))
	if uris, err := s.FrontchannelLogoutURIs(ctx, a.ID, bs.SID); err != nil || len(uris) != 1 || uris[0] != "https://diary.example/fc" {
		t.Errorf("front-channel URIs %v %v", uris, err)
	}
	if uris, err := s.FrontchannelLogoutURIs(ctx, a.ID, "other-sid"); err != nil || len(uris) != 0 {
		t.Errorf("front-channel URIs of a session that gave no code: %v %v", uris, err)
	}
	s.SetShownSubject(func(acc *storage.Account, cl *storage.Client) string {
		return "shown:" + cl.ID + ":" + *acc.UpstreamSub
	})
	defer s.SetShownSubject(nil)
	must(t, s.DeleteBrowserSession(ctx, "sess-bc"))
	if n, err := s.PendingLogouts(ctx); err != nil || n != 1 {
		t.Fatalf("pending %d %v, want 1 (only the diary with a back-channel URI)", n, err)
	}
	due, err := s.DueLogouts(ctx, 10)
	if err != nil || len(due) != 1 {
		t.Fatalf("due %+v %v", due, err)
	}
	d := due[0]
	if d.ClientID != "rp-bc" || d.URI != "https://diary.example/bc" || d.Subject != a.ID || d.SID != bs.SID || d.ShownSubject != "shown:rp-bc:oid-bc" || d.Attempts != 0 {
		t.Errorf("delivery %+v", d)
	}
	if ok, err := s.ClaimLogout(ctx, d, time.Minute); err != nil || !ok {
		t.Fatalf("first claim %v %v", ok, err)
	}
	if ok, err := s.ClaimLogout(ctx, d, time.Minute); err != nil || ok {
		t.Errorf("a second worker claimed the same delivery: %v %v", ok, err)
	}
	if due, _ := s.DueLogouts(ctx, 10); len(due) != 0 {
		t.Errorf("a claimed delivery is due again at once: %+v", due)
	}
	clk.add(2 * time.Minute) // the lease has run out: the worker died
	due, _ = s.DueLogouts(ctx, 10)
	if len(due) != 1 {
		t.Fatalf("after the lease, due %+v", due)
	}
	must(t, s.LogoutFailed(ctx, d.ID, 5*time.Minute, strings.Repeat("x", 300)))
	if due, _ := s.DueLogouts(ctx, 10); len(due) != 0 {
		t.Errorf("a failed delivery is due before its pause: %+v", due)
	}
	clk.add(6 * time.Minute)
	due, _ = s.DueLogouts(ctx, 10)
	if len(due) != 1 || due[0].Attempts != 1 || len(due[0].LastError) != 200 {
		t.Fatalf("after the pause: %+v", due)
	}
	must(t, s.LogoutDelivered(ctx, d.ID))
	if n, err := s.PendingLogouts(ctx); err != nil || n != 0 {
		t.Errorf("pending after delivery %d %v", n, err)
	}
}

// testPARSessions: a pushed request is kept without its client secret, read back, used once,
// and gone when expired.
func testPARSessions(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	clk := withClock(s)
	c := mustClient(t, s, "rp-par")
	ar := fosite.NewAuthorizeRequest()
	ar.Request = *newRequest(c, "")
	ar.Form.Set("state", "st-1")
	ar.Session.SetExpiresAt(fosite.PushedAuthorizeRequestContext, clk.now().Add(90*time.Second))
	must(t, s.CreatePARSession(ctx, "urn:ietf:params:oauth:request_uri:one", ar))
	got, err := s.GetPARSession(ctx, "urn:ietf:params:oauth:request_uri:one")
	if err != nil {
		t.Fatal(err)
	}
	if got.GetClient().GetID() != "rp-par" || got.GetRequestForm().Get("state") != "st-1" || got.GetRequestForm().Get("client_secret") != "" {
		t.Errorf("read back: client %s form %v", got.GetClient().GetID(), got.GetRequestForm())
	}
	if _, err := s.GetPARSession(ctx, "urn:ietf:params:oauth:request_uri:other"); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("unknown request_uri: %v", err)
	}
	must(t, s.DeletePARSession(ctx, "urn:ietf:params:oauth:request_uri:one"))
	if _, err := s.GetPARSession(ctx, "urn:ietf:params:oauth:request_uri:one"); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("a used request_uri is still there: %v", err)
	}
	must(t, s.CreatePARSession(ctx, "urn:ietf:params:oauth:request_uri:two", ar))
	clk.add(2 * time.Minute)
	if _, err := s.GetPARSession(ctx, "urn:ietf:params:oauth:request_uri:two"); !errors.Is(err, fosite.ErrNotFound) {
		t.Errorf("an expired request_uri is still served: %v", err)
	}
}

// testSettings: a recorded setting reads back; recording again replaces it.
func testSettings(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	if _, ok, err := s.Setting(ctx, "tokens.subject"); err != nil || ok {
		t.Fatalf("unrecorded setting: %v %v", ok, err)
	}
	must(t, s.RecordSetting(ctx, "tokens.subject", "pairwise"))
	must(t, s.RecordSetting(ctx, "tokens.subject", "esia_oid"))
	if v, ok, err := s.Setting(ctx, "tokens.subject"); err != nil || !ok || v != "esia_oid" {
		t.Errorf("setting %q %v %v", v, ok, err)
	}
}

// testRegionImports: awaiting accounts, imported links and the migration report.
func testRegionImports(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	seedRoster(t, s)
	// A card with no guardian SNILS: its family needs a code unless a link exists.
	if _, err := s.UpsertStudent(ctx, &storage.Student{ID: "s-4", SchoolID: "sch-1", Class: "2А", FamilyName: "Сидоров", GivenName: "Иван", Birthdate: "2018-02-02", Active: true}, nil); err != nil {
		t.Fatal(err)
	}
	a, created, err := s.AwaitingAccount(ctx, storage.ESIAUpstream, "0100")
	if err != nil || !created || !a.AwaitingLogin {
		t.Fatalf("awaiting account %+v %v %v", a, created, err)
	}
	again, created, err := s.AwaitingAccount(ctx, storage.ESIAUpstream, "0100")
	if err != nil || created || again.ID != a.ID {
		t.Errorf("second import of one oid made %+v %v %v", again, created, err)
	}
	linkedAt := time.Date(2024, 9, 1, 8, 0, 0, 0, time.UTC)
	id, err := s.ImportLink(ctx, a.ID, "s-4", "parent", linkedAt)
	if err != nil || id == "" {
		t.Fatalf("import link %q %v", id, err)
	}
	if id2, err := s.ImportLink(ctx, a.ID, "s-4", "parent", linkedAt); err != nil || id2 != "" {
		t.Errorf("a second import of one link made %q %v", id2, err)
	}
	l, err := s.LinkByID(ctx, id)
	if err != nil || l.Method != "imported" || l.Relation != "parent" || !l.CreatedAt.Equal(linkedAt) || l.RevokedAt != nil {
		t.Errorf("imported link %+v %v", l, err)
	}
	if _, err := s.LinkByID(ctx, "no-such-link"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("unknown link: %v", err)
	}
	if ls, err := s.StudentLinks(ctx, "s-4"); err != nil || len(ls) != 1 || ls[0].ID != id {
		t.Errorf("student links %+v %v", ls, err)
	}
	kid, _, err := s.AwaitingAccount(ctx, storage.ESIAUpstream, "0200")
	must(t, err)
	if ls, err := s.SelfLinks(ctx, "s-4"); err != nil || len(ls) != 0 {
		t.Errorf("self links before: %+v %v", ls, err)
	}
	selfID, err := s.ImportLink(ctx, kid.ID, "s-4", "self", linkedAt)
	must(t, err)
	if ls, err := s.SelfLinks(ctx, "s-4"); err != nil || len(ls) != 1 || ls[0].ID != selfID {
		t.Errorf("self links %+v %v", ls, err)
	}
	counts, families, err := s.MigrationReport(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if counts.AwaitingAccounts != 2 || counts.LinksByMethod["imported"] != 2 {
		t.Errorf("counts %+v", counts)
	}
	if len(families) != 1 || families[0].StudentID != "s-4" || !families[0].Pending {
		t.Errorf("families %+v: s-4's only parent link waits for a first login", families)
	}
	if ok, err := s.ClearAwaiting(ctx, a.ID); err != nil || !ok {
		t.Errorf("clear awaiting %v %v", ok, err)
	}
	if ok, err := s.ClearAwaiting(ctx, a.ID); err != nil || ok {
		t.Errorf("cleared twice: %v %v", ok, err)
	}
	if counts, families, _ := s.MigrationReport(ctx); counts.AwaitingAccounts != 1 || len(families) != 0 {
		t.Errorf("after the first login: %+v %+v", counts, families)
	}
	if ok, err := s.RevokeLink(ctx, id); err != nil || !ok {
		t.Fatalf("revoke link %v %v", ok, err)
	}
	if _, families, _ := s.MigrationReport(ctx); len(families) != 1 || families[0].Pending {
		t.Errorf("a card whose only parent link ended: %+v", families)
	}
}

// testLinkFollowsSNILS: a link follows the SNILS when the card names the account's digest for
// its relation.
func testLinkFollowsSNILS(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	seedRoster(t, s)
	mom, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: sptr("oid-mom"), SNILSDigest: "mom"})
	must(t, err)
	own, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: sptr("oid-own"), SNILSDigest: "own-1"})
	must(t, err)
	other, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: sptr("oid-other")})
	must(t, err)
	for _, tc := range []struct {
		account, student, relation string
		want                       bool
	}{
		{mom.ID, "s-1", "parent", true},
		{mom.ID, "s-1", "self", false},
		{own.ID, "s-1", "self", true},
		{own.ID, "s-2", "self", false},
		{own.ID, "s-1", "parent", false},
		{other.ID, "s-1", "parent", false},
	} {
		if got, err := s.LinkFollowsSNILS(ctx, tc.account, tc.student, tc.relation); err != nil || got != tc.want {
			t.Errorf("%s %s %s: %v %v, want %v", tc.account, tc.student, tc.relation, got, err, tc.want)
		}
	}
}

// testImportedChildren: an imported hash is replaced once, unless the password changed; logins
// that read alike are found.
func testImportedChildren(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	seedRoster(t, s)
	a := &storage.Account{}
	must(t, s.CreateChild(ctx, a, &storage.ChildCredential{StudentID: "s-1", Login: "petya", PasswordHash: "$2b$10$old", CreatedBy: "import:tester"}))
	if counts, _, err := s.MigrationReport(ctx); err != nil || counts.ImportedChildren != 1 || counts.NotRehashed != 1 {
		t.Fatalf("counts %+v %v", counts, err)
	}
	if ok, err := s.RehashChildPassword(ctx, a.ID, "$2b$10$other", "$argon2id$new"); err != nil || ok {
		t.Errorf("rehash over a hash that changed: %v %v", ok, err)
	}
	if ok, err := s.RehashChildPassword(ctx, a.ID, "$2b$10$old", "$argon2id$new"); err != nil || !ok {
		t.Errorf("rehash %v %v", ok, err)
	}
	if ok, _ := s.RehashChildPassword(ctx, a.ID, "$2b$10$old", "$argon2id$newer"); ok {
		t.Error("rehashed twice")
	}
	c, err := s.ChildByAccount(ctx, a.ID)
	if err != nil || c.PasswordHash != "$argon2id$new" || c.UpdatedBy != "system:rehash" {
		t.Errorf("after rehash %+v %v", c, err)
	}
	if counts, _, _ := s.MigrationReport(ctx); counts.NotRehashed != 0 {
		t.Errorf("not rehashed %d", counts.NotRehashed)
	}
	// "реtуа" with Cyrillic р, е, у, а reads as "petya".
	if got, err := s.LoginLookalike(ctx, "\u0440\u0435t\u0443\u0430"); err != nil || got != "petya" {
		t.Errorf("lookalike %q %v", got, err)
	}
	if got, err := s.LoginLookalike(ctx, "vasya"); err != nil || got != "" {
		t.Errorf("lookalike of a free login %q %v", got, err)
	}
}

// testInviteByIDAndRevoke: one invite read by id, revoked once; a used one is not revoked.
func testInviteByIDAndRevoke(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	seedRoster(t, s)
	now := time.Now().UTC()
	must(t, s.CreateInvites(ctx, []storage.Invite{
		{ID: "iv-1", CodeDigest: "dg-1", StudentID: "s-1", Role: "parent", CreatedBy: "t", CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		{ID: "iv-2", CodeDigest: "dg-2", StudentID: "s-1", Role: "parent", CreatedBy: "t", CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
	}))
	in, err := s.InviteByID(ctx, "iv-1")
	if err != nil || in.StudentID != "s-1" || in.CodeDigest != "dg-1" || in.RevokedAt != nil {
		t.Fatalf("invite %+v %v", in, err)
	}
	if _, err := s.InviteByID(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("unknown invite: %v", err)
	}
	if ok, err := s.RevokeInvite(ctx, "iv-1"); err != nil || !ok {
		t.Errorf("revoke %v %v", ok, err)
	}
	if ok, err := s.RevokeInvite(ctx, "iv-1"); err != nil || ok {
		t.Errorf("revoked twice: %v %v", ok, err)
	}
	if in, _ := s.InviteByID(ctx, "iv-1"); in.RevokedAt == nil {
		t.Error("revoked invite has no revoked_at")
	}
	if _, err := s.RedeemInvite(ctx, "dg-2", "parent", "acct"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeInvite(ctx, "iv-2"); !errors.Is(err, storage.ErrInviteUsed) {
		t.Errorf("revoke a used invite: %v", err)
	}
	if _, err := s.RevokeInvite(ctx, "nope"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("revoke unknown: %v", err)
	}
}

// testEventsAndPrune: an event appended outside a transaction is in the feed; retention removes
// old events and a cursor below them is told so; a cursor from the future is refused.
func testEventsAndPrune(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	clk := withClock(s)
	must(t, s.AppendEvent(ctx, storage.Event{Type: "link.added", StudentID: "s-1", AccountID: "a-1", Data: map[string]any{"method": "invite"}}))
	evs, floor, err := s.Events(ctx, -1, 10)
	if err != nil || len(evs) != 1 || evs[0].Type != "link.added" || evs[0].Data["method"] != "invite" || floor != 0 {
		t.Fatalf("events %+v %d %v", evs, floor, err)
	}
	first := evs[0].ID
	clk.add(2 * time.Hour)
	must(t, s.AppendEvent(ctx, storage.Event{Type: "link.revoked", StudentID: "s-1", AccountID: "a-1"}))
	if n, err := s.PruneEvents(ctx, time.Hour); err != nil || n != 1 {
		t.Fatalf("pruned %d %v", n, err)
	}
	if _, _, err := s.Events(ctx, 0, 10); !errors.Is(err, storage.ErrEventsPruned) {
		t.Errorf("cursor below retention: %v", err)
	}
	evs, floor, err = s.Events(ctx, first, 10)
	if err != nil || len(evs) != 1 || evs[0].Type != "link.revoked" || floor != first {
		t.Errorf("after the pruned event: %+v floor %d %v", evs, floor, err)
	}
	if _, _, err := s.Events(ctx, evs[0].ID+100, 10); !errors.Is(err, storage.ErrCursorAhead) {
		t.Errorf("cursor ahead: %v", err)
	}
}

// testRowLocks: AccountForUpdate and LockStudents hold their rows until the transaction ends:
// a second transaction taking the same lock waits for the first.
func testRowLocks(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	seedRoster(t, s)
	a, err := s.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: sptr("oid-lock"), FamilyName: "Замкова"})
	must(t, err)
	for name, lock := range map[string]func(ctx context.Context) error{
		"account": func(ctx context.Context) error {
			got, err := s.AccountForUpdate(ctx, a.ID)
			if err == nil && got.FamilyName != "Замкова" {
				err = errors.New("wrong account")
			}
			return err
		},
		"students": func(ctx context.Context) error { return s.LockStudents(ctx, []string{"s-2", "s-1"}) },
	} {
		t.Run(name, func(t *testing.T) {
			held, release, second := make(chan struct{}), make(chan struct{}), make(chan error, 1)
			first := make(chan error, 1)
			go func() {
				first <- s.InTx(ctx, func(ctx context.Context) error {
					if err := lock(ctx); err != nil {
						return err
					}
					close(held)
					<-release
					return nil
				})
			}()
			<-held
			go func() { second <- s.InTx(ctx, lock) }()
			select {
			case err := <-second:
				t.Fatalf("the second transaction took the lock while the first held it (%v)", err)
			case <-time.After(300 * time.Millisecond):
			}
			close(release)
			for _, ch := range []chan error{first, second} {
				select {
				case err := <-ch:
					if err != nil {
						t.Fatal(err)
					}
				case <-time.After(30 * time.Second):
					t.Fatal("a transaction did not end")
				}
			}
		})
	}
	if _, err := s.AccountForUpdate(ctx, "no-such-account"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("unknown account: %v", err)
	}
}

// testTracingAndStats: a store with a tracer traces its statements; the pool's statistics are
// read.
func testTracingAndStats(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	rec := tracetest.NewSpanRecorder()
	s.SetTracer(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)))
	if _, err := s.Schools(ctx); err != nil {
		t.Fatal(err)
	}
	if len(rec.Ended()) == 0 {
		t.Error("a traced store recorded no span for a query")
	}
	if st := s.Stats(); st.OpenConnections < 1 {
		t.Errorf("stats %+v after a query", st)
	}
}

// TestDevMarks: the dev server takes an empty database and one it marked; one with data it did
// not make is refused and left unchanged; the recorded secrets are compared without writing.
func TestDevMarks(t *testing.T) {
	ctx := context.Background()
	for name, open := range storagetest.Dialects() {
		t.Run(name, func(t *testing.T) {
			s := open(t)
			if ok, err := s.DevCandidate(ctx); err != nil || !ok {
				t.Fatalf("an empty database: %v %v", ok, err)
			}
			must(t, s.ClaimForDev(ctx))
			must(t, s.ClaimForDev(ctx)) // again: its own
			mustClient(t, s, "some-diary")
			if ok, err := s.DevCandidate(ctx); err != nil || !ok {
				t.Errorf("a database the dev server marked: %v %v", ok, err)
			}

			used := open(t)
			mustClient(t, used, "real-diary")
			if ok, err := used.DevCandidate(ctx); err != nil || ok {
				t.Errorf("a database in use: %v %v", ok, err)
			}
			if err := used.ClaimForDev(ctx); !errors.Is(err, storage.ErrNotDevDatabase) {
				t.Errorf("claim a database in use: %v", err)
			}
			if ok, _ := used.DevCandidate(ctx); ok {
				t.Error("a refused claim marked the database")
			}

			fps := map[string]string{"secrets.master_key": "fp-1"}
			if err := used.CheckRecordedSecrets(ctx, fps); err != nil {
				t.Errorf("nothing recorded yet: %v", err)
			}
			must(t, used.VerifySecrets(ctx, fps, storage.RecordMissing))
			if err := used.CheckRecordedSecrets(ctx, fps); err != nil {
				t.Errorf("the same secrets: %v", err)
			}
			var differ *storage.SecretsDifferError
			if err := used.CheckRecordedSecrets(ctx, map[string]string{"secrets.master_key": "fp-2"}); !errors.As(err, &differ) {
				t.Errorf("another master key: %v", err)
			}
		})
	}
}
