package linking_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/passwords"
	"github.com/esia-broker/esia-broker/regionimport"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/storage/storagetest"

	"golang.org/x/crypto/bcrypt"
)

var _ linking.MigrationStore = (*storage.Store)(nil)

// TestImportLinks: a region's links by ESIA oid; bad rows named by line, field and reason; the
// whole file or nothing unless --skip-invalid; a dry run writes nothing; a second run changes
// nothing; an account the broker knows is checked now by the rules of every link.
func TestImportLinks(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.importRoster(t, roster, linking.ImportOptions{})
		minor := mustAccountBorn(t, f.store, "2000000002", "2015-01-01") // known, a child
		_ = minor

		bad := "esia_oid,student_id,relation,linked_at,method\n" +
			"1000000001,s-1,parent,2020-09-01,invite\n" + // line 2: good
			"10000x,s-1,parent,2020-09-01,\n" + // 3: oid
			"1000000003,s-99,parent,2020-09-01,\n" + // 4: no such card
			"1000000004,s-1,mother,2020-09-01,\n" + // 5: relation
			"1000000005,s-1,parent,2099-01-01,\n" + // 6: future date
			"1000000001,s-1,parent,2021-01-01,\n" + // 7: repeats line 2
			"2000000002,s-2,parent,2020-09-01,\n" // 8: a known minor as a parent
		rep, err := regionimport.New(f.store, f.link).ImportLinks(ctx, strings.NewReader(bad), regionimport.ImportFileOptions{})
		if !errors.Is(err, linking.ErrInvalidRows) {
			t.Fatalf("bad file: %v", err)
		}
		got := map[int]string{}
		for _, e := range rep.Errors {
			got[e.Line] = e.Field
		}
		// Line 4 and 8 are checked against the database only when the file itself is clean.
		for line, field := range map[int]string{3: "esia_oid", 5: "relation", 6: "linked_at", 7: ""} {
			if g, ok := got[line]; !ok || g != field {
				t.Errorf("line %d: reported %q (%v), want field %q; all: %v", line, g, ok, field, rep.Errors)
			}
		}
		if n := countLinks(t, f.store); n != 0 {
			t.Fatalf("a refused file wrote %d links", n)
		}

		// The file's own problems gone, the database's remain: still nothing written.
		dbBad := "esia_oid,student_id,relation,linked_at\n1000000001,s-1,parent,2020-09-01\n1000000003,s-99,parent,2020-09-01\n2000000002,s-2,parent,2020-09-01\n"
		rep, err = regionimport.New(f.store, f.link).ImportLinks(ctx, strings.NewReader(dbBad), regionimport.ImportFileOptions{})
		if !errors.Is(err, linking.ErrInvalidRows) || len(rep.Errors) != 2 || rep.Errors[0].Line != 3 || rep.Errors[1].Line != 4 {
			t.Fatalf("database problems: %v %+v", err, rep)
		}
		if n := countLinks(t, f.store); n != 0 {
			t.Fatalf("a refused file wrote %d links", n)
		}
		if _, err := f.store.AccountByUpstream(ctx, "esia", "1000000001"); !errors.Is(err, storage.ErrNotFound) {
			t.Fatalf("a refused file made an account: %v", err)
		}

		// Dry run: counted, nothing written.
		good := "esia_oid,student_id,relation,linked_at,method\n1000000001,s-1,parent,2020-09-01,invite\n1000000001,s-2,parent,01.09.2021,invite\n1000000007,s-3,self,2022-09-01T10:00:00Z,\n"
		rep, err = regionimport.New(f.store, f.link).ImportLinks(ctx, strings.NewReader(good), regionimport.ImportFileOptions{DryRun: true})
		if err != nil || rep.Created != 3 || rep.Accounts != 2 || rep.Applied {
			t.Fatalf("dry run: %v %+v", err, rep)
		}
		if n := countLinks(t, f.store); n != 0 {
			t.Fatalf("a dry run wrote %d links", n)
		}
		rep, err = regionimport.New(f.store, f.link).ImportLinks(ctx, strings.NewReader(good), regionimport.ImportFileOptions{Operator: "cli:test"})
		if err != nil || rep.Created != 3 || rep.Accounts != 2 || !rep.Applied {
			t.Fatalf("import: %v %+v", err, rep)
		}
		a, err := f.store.AccountByUpstream(ctx, "esia", "1000000001")
		if err != nil || !a.AwaitingLogin || a.Status != "active" {
			t.Fatalf("the awaiting account: %+v %v", a, err)
		}
		ls, err := f.store.Links(ctx, a.ID, false)
		if err != nil || len(ls) != 2 || ls[0].Method != "imported" {
			t.Fatalf("imported links: %+v %v", ls, err)
		}
		// Again: nothing new.
		rep, err = regionimport.New(f.store, f.link).ImportLinks(ctx, strings.NewReader(good), regionimport.ImportFileOptions{})
		if err != nil || rep.Created != 0 || rep.Unchanged != 3 || rep.Accounts != 0 {
			t.Fatalf("second run: %v %+v", err, rep)
		}
		// Another account as the same student's own: refused.
		rep, err = regionimport.New(f.store, f.link).ImportLinks(ctx, strings.NewReader("esia_oid,student_id,relation,linked_at\n1000000008,s-3,self,2022-09-01\n"), regionimport.ImportFileOptions{})
		if !errors.Is(err, linking.ErrInvalidRows) || len(rep.Errors) != 1 || rep.Errors[0].Field != "relation" {
			t.Fatalf("a second own account: %v %+v", err, rep)
		}
		// --skip-invalid: the good rows go in, the bad ones are reported.
		mixed := "{\"esia_oid\":\"1000000009\",\"student_id\":\"s-4\",\"relation\":\"parent\",\"linked_at\":\"2020-09-01\"}\n{\"esia_oid\":1,\"student_id\":\"s-4\"}\n{\"esia_oid\":\"1000000010\",\"student_id\":\"s-4\",\"relation\":\"parent\",\"linked_at\":\"2020-09-01\",\"extra\":\"x\"}\n"
		rep, err = regionimport.New(f.store, f.link).ImportLinks(ctx, strings.NewReader(mixed), regionimport.ImportFileOptions{SkipInvalid: true})
		if err != nil || rep.Created != 1 || rep.Skipped != 2 || len(rep.Errors) < 2 || rep.Errors[0].Line != 2 {
			t.Fatalf("skip invalid (JSON lines): %v %+v", err, rep)
		}
	})
}

func countLinks(t *testing.T, s *storage.Store) int {
	t.Helper()
	c, _, err := s.MigrationReport(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range c.LinksByMethod {
		n += v
	}
	return n
}

// TestSettleImported: at the first login the imported links are checked with what ESIA says:
// an adult keeps the parent links, a minor loses them; the student's own account keeps its
// link only with the card's birth date; an account ESIA reports as unconfirmed (admitted only
// as a child) by the same rules.
func TestSettleImported(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.importRoster(t, roster, linking.ImportOptions{})
		s3, err := f.store.Student(ctx, "s-3")
		if err != nil {
			t.Fatal(err)
		}
		file := "esia_oid,student_id,relation,linked_at\n" +
			"3000000001,s-1,parent,2020-09-01\n3000000001,s-2,parent,2020-09-01\n" +
			"3000000002,s-4,parent,2020-09-01\n" +
			"3000000003,s-3,self,2020-09-01\n" +
			"3000000004,s-3,parent,2020-09-01\n"
		if _, err := regionimport.New(f.store, f.link).ImportLinks(ctx, strings.NewReader(file), regionimport.ImportFileOptions{}); err != nil {
			t.Fatal(err)
		}
		login := func(oid, birthdate string, unconfirmed bool) *storage.Account {
			t.Helper()
			a, err := f.store.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: &oid, FamilyName: "Иванова", GivenName: "Мария", Birthdate: birthdate, Unconfirmed: unconfirmed})
			if err != nil {
				t.Fatal(err)
			}
			return a
		}
		for _, tc := range []struct {
			oid, birthdate   string
			unconfirmed      bool
			settled, refused int
			awaiting         bool
		}{
			{"3000000001", "1985-04-12", false, 2, 0, false},
			{"3000000002", "2012-01-01", false, 0, 1, false}, // a minor as a parent
			{"3000000003", s3.Birthdate, false, 1, 0, false}, // the student, by the card's date
			{"3000000004", "2013-04-12", true, 0, 1, false},  // unconfirmed (a child) as a parent
		} {
			t.Run(tc.oid, func(t *testing.T) {
				a := login(tc.oid, tc.birthdate, tc.unconfirmed)
				settled, refused, err := f.link.SettleImported(ctx, a)
				if err != nil || settled != tc.settled || refused != tc.refused {
					t.Fatalf("settle: %d settled, %d refused, %v; want %d, %d", settled, refused, err, tc.settled, tc.refused)
				}
				again, err := f.store.AccountByUpstream(ctx, "esia", tc.oid)
				if err != nil || again.AwaitingLogin != tc.awaiting {
					t.Fatalf("awaiting after the login: %v %v", again.AwaitingLogin, err)
				}
				// The second login settles nothing again.
				if s, r, err := f.link.SettleImported(ctx, again); err != nil || s != 0 || r != 0 {
					t.Errorf("second login: %d %d %v", s, r, err)
				}
				ls, _ := f.store.Links(ctx, a.ID, false)
				if len(ls) != tc.settled+map[bool]int{true: 1, false: 0}[tc.awaiting] {
					t.Errorf("active links after the login: %d", len(ls))
				}
			})
		}
	})
}

// TestImportChildren: children's logins with bcrypt and PBKDF2 hashes; the child logs in with
// the old password and its hash is argon2id afterwards; weak hashes only with --accept-weak;
// bad rows by line; a guardian without a parent link refused.
func TestImportChildren(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.importRoster(t, roster+day("s-5,sch-1,2А,Сидоров,Петя,,2018-03-03,,1,,,,\ns-6,sch-1,2А,Сидорова,Маша,,2018-04-04,,1,,,,\n"), linking.ImportOptions{})
		links := "esia_oid,student_id,relation,linked_at\n4000000001,s-4,parent,2020-09-01\n4000000001,s-5,parent,2020-09-01\n4000000001,s-6,parent,2020-09-01\n"
		if _, err := regionimport.New(f.store, f.link).ImportLinks(ctx, strings.NewReader(links), regionimport.ImportFileOptions{}); err != nil {
			t.Fatal(err)
		}
		const bcrypt10 = "$2a$10$6phbKEpEXwOoS0cRSPkn2.TM/c0/z/connnZ0O7BRsWgfuLArBzxO"                   // Sunflower-2015
		const django = "pbkdf2_sha256$260000$Zm9vYmFyc2FsdA$DI9174Jn/0hAOvCMsIq8fKpGIHjk9sxXiotD7YZj3j4=" // Sunflower-2015
		const md5 = "36f25706170402e9628df575cc50218f"                                                    // Sunflower-2015
		file := "student_id,login,password_hash,guardian_esia_oid\n" +
			"s-4,Anna.Petrova,\"" + bcrypt10 + "\",4000000001\n" +
			"s-5,petya@school1,\"" + django + "\",4000000001\n" +
			"s-6,masha,\"" + md5 + "\",4000000001\n"
		rep, err := regionimport.New(f.store, f.link).ImportChildren(ctx, strings.NewReader(file), regionimport.ImportFileOptions{})
		if !errors.Is(err, linking.ErrInvalidRows) || len(rep.Errors) != 1 || rep.Errors[0].Line != 4 || rep.Errors[0].Field != "password_hash" {
			t.Fatalf("a weak hash without --accept-weak: %v %+v", err, rep)
		}
		rep, err = regionimport.New(f.store, f.link).ImportChildren(ctx, strings.NewReader(file), regionimport.ImportFileOptions{AcceptWeak: true})
		if err != nil || rep.Created != 3 || rep.Weak != 1 || rep.Formats["bcrypt"] != 1 || rep.Formats["pbkdf2"] != 1 {
			t.Fatalf("import: %v %+v", err, rep)
		}
		for _, tc := range []struct{ login, password string }{{"anna.petrova", "Sunflower-2015"}, {"PETYA@school1", "Sunflower-2015"}, {"masha", "Sunflower-2015"}} {
			for _, wrong := range []string{tc.password + "x", "", "\x00", tc.password + "\x00"} {
				if _, err := f.link.ChildLogin(ctx, tc.login, wrong, "10.1.0.1", false); !errors.Is(err, linking.ErrBadCredentials) {
					t.Errorf("%s with the password %q: %v", tc.login, wrong, err)
				}
			}
			id, err := f.link.ChildLogin(ctx, tc.login, tc.password, "10.1.0.2", false)
			if err != nil {
				t.Fatalf("%s logs in with the imported password: %v", tc.login, err)
			}
			c, err := f.store.ChildByAccount(ctx, id)
			if err != nil || !strings.HasPrefix(c.PasswordHash, "$argon2id$") {
				t.Fatalf("%s: hash after the first login %.12q, %v", tc.login, c.PasswordHash, err)
			}
			if _, err := f.link.ChildLogin(ctx, tc.login, tc.password, "10.1.0.3", false); err != nil {
				t.Errorf("%s after the re-hash: %v", tc.login, err)
			}
		}
		// Again: unchanged. Bad rows: a login taken, a guardian with no link, an unknown hash.
		rep, err = regionimport.New(f.store, f.link).ImportChildren(ctx, strings.NewReader(file), regionimport.ImportFileOptions{AcceptWeak: true})
		if err != nil || rep.Unchanged != 3 || rep.Created != 0 {
			t.Fatalf("second run: %v %+v", err, rep)
		}
		f.importRoster(t, roster+day("s-5,sch-1,2А,Сидоров,Петя,,2018-03-03,,1,,,,\ns-6,sch-1,2А,Сидорова,Маша,,2018-04-04,,1,,,,\ns-7,sch-1,2А,Орлов,Олег,,2018-05-05,,1,,,,\n"), linking.ImportOptions{})
		bad := "student_id,login,password_hash,guardian_esia_oid\n" +
			"s-7,MASHA,\"" + bcrypt10 + "\",4000000001\n" +
			"s-7,oleg,\"" + bcrypt10 + "\",4000000001\n" +
			"s-7,oleg2,plaintext,4000000001\n"
		rep, err = regionimport.New(f.store, f.link).ImportChildren(ctx, strings.NewReader(bad), regionimport.ImportFileOptions{})
		if !errors.Is(err, linking.ErrInvalidRows) {
			t.Fatalf("bad rows: %v", err)
		}
		lines := fmt.Sprint(rep.Errors)
		for _, want := range []string{"line 3: student_id", "line 4: student_id", "line 4: password_hash"} {
			if !strings.Contains(lines, want) {
				t.Errorf("%q not reported: %s", want, lines)
			}
		}
		for _, tc := range []struct{ row, field string }{
			{"s-7,MASHA,\"" + bcrypt10 + "\",4000000001", "login"},            // taken (case-insensitive)
			{"s-7,oleg,\"" + bcrypt10 + "\",4000000001", "guardian_esia_oid"}, // no parent link to s-7
			{"s-7,oleg,\"" + bcrypt10 + "\",4999999999", "guardian_esia_oid"}, // no such account
			{"s-3,ivan,\"" + bcrypt10 + "\",4000000001", "student_id"},        // 15: too old
		} {
			rep, err = regionimport.New(f.store, f.link).ImportChildren(ctx, strings.NewReader("student_id,login,password_hash,guardian_esia_oid\n"+tc.row+"\n"), regionimport.ImportFileOptions{})
			if !errors.Is(err, linking.ErrInvalidRows) || len(rep.Errors) != 1 || rep.Errors[0].Line != 2 || rep.Errors[0].Field != tc.field {
				t.Errorf("%s: %v %+v, want line 2 field %s", tc.row, err, rep.Errors, tc.field)
			}
		}
		if _, err := f.store.ChildByStudent(ctx, "s-7"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("a refused row made a sub-account: %v", err)
		}
	})
}

// TestImportFileForms: what the files' readers refuse, by line.
func TestImportFileForms(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.importRoster(t, roster, linking.ImportOptions{})
		for _, tc := range []struct {
			name, file, want string
		}{
			{"duplicate JSON key", `{"esia_oid":"1000000001","student_id":"s-1","relation":"parent","linked_at":"2020-09-01","esia_oid":"1000000002"}`, `line 1: field "esia_oid" appears twice`},
			{"escaped duplicate JSON key", `{"esia_oid":"1000000001","student_id":"s-1","relation":"parent","linked_at":"2020-09-01","\u0065sia_oid":"1000000002"}`, `line 1: field "esia_oid" appears twice`},
			{"two objects on a line", `{"esia_oid":"1000000001"} {}`, "line 1: not one JSON object"},
			{"leading zero", "esia_oid,student_id,relation,linked_at\n0123,s-1,parent,2020-09-01\n", "line 2: esia_oid"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				rep, err := regionimport.New(f.store, f.link).ImportLinks(ctx, strings.NewReader(tc.file), regionimport.ImportFileOptions{})
				if !errors.Is(err, linking.ErrInvalidRows) || !strings.Contains(fmt.Sprint(rep.Errors), tc.want) {
					t.Errorf("%v %v, want %q", err, rep.Errors, tc.want)
				}
			})
		}
		rep, err := regionimport.New(f.store, f.link).ImportChildren(ctx, strings.NewReader("student_id,login,password_hash,guardian_esia_oid\ns-4,mаria,x,1\ns-4,"+strings.Repeat("д", 33)+",x,1\n"), regionimport.ImportFileOptions{})
		if !errors.Is(err, linking.ErrInvalidRows) || !strings.Contains(fmt.Sprint(rep.Errors), "line 2: login: mixes Latin and Cyrillic") || !strings.Contains(fmt.Sprint(rep.Errors), "line 3: login: 2 to 32") {
			t.Errorf("look-alike and long logins: %v %v", err, rep.Errors)
		}
		rep, err = regionimport.New(f.store, f.link).ImportChildren(ctx, strings.NewReader("student_id,login,password_hash,guardian_esia_oid\ns-4,acex,x,1\ns-5,асех,x,1\ns-6,ёлка,x,1\ns-7,елка,x,1\n"), regionimport.ImportFileOptions{})
		if !errors.Is(err, linking.ErrInvalidRows) || !strings.Contains(fmt.Sprint(rep.Errors), "line 3: login: reads as the login on line 2") || !strings.Contains(fmt.Sprint(rep.Errors), "line 5: login: reads as the login on line 4") {
			t.Errorf("logins that read alike in two scripts: %v %v", err, rep.Errors)
		}
	})
}

// TestImportedSelfLinks: a card has one own account. An imported own link is refused at the
// first login when ESIA's SNILS is not the card's, and gives way when the account with the
// card's SNILS logs in (the stronger proof).
func TestImportedSelfLinks(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.importRoster(t, roster, linking.ImportOptions{})
		s2, err := f.store.Student(ctx, "s-2")
		if err != nil {
			t.Fatal(err)
		}
		file := "esia_oid,student_id,relation,linked_at\n5000000001,s-2,self,2024-09-01\n"
		if _, err := regionimport.New(f.store, f.link).ImportLinks(ctx, strings.NewReader(file), regionimport.ImportFileOptions{}); err != nil {
			t.Fatal(err)
		}
		other, err := f.link.Digester().SNILS("112-233-445 95")
		if err != nil {
			t.Fatal(err)
		}
		oid := "5000000001"
		// Same birth date, another SNILS: refused.
		a, err := f.store.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: &oid, Birthdate: s2.Birthdate, SNILSDigest: other})
		if err != nil {
			t.Fatal(err)
		}
		if settled, refused, err := f.link.SettleImported(ctx, a); err != nil || settled != 0 || refused != 1 {
			t.Fatalf("another SNILS: %d settled, %d refused, %v", settled, refused, err)
		}

		// Imported again for a twin with no SNILS from ESIA: settled by the birth date; then the
		// child whose SNILS is the card's logs in, and the imported link gives way.
		file = "esia_oid,student_id,relation,linked_at\n5000000002,s-2,self,2024-09-01\n"
		if _, err := regionimport.New(f.store, f.link).ImportLinks(ctx, strings.NewReader(file), regionimport.ImportFileOptions{}); err != nil {
			t.Fatal(err)
		}
		twinOID := "5000000002"
		twin, err := f.store.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: &twinOID, Birthdate: s2.Birthdate})
		if err != nil {
			t.Fatal(err)
		}
		if settled, _, err := f.link.SettleImported(ctx, twin); err != nil || settled != 1 {
			t.Fatalf("twin without SNILS: %d settled, %v", settled, err)
		}
		twinSession := &storage.BrowserSession{IDHash: "twin-session", AccountID: twin.ID, SID: "twin-sid", AuthTime: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
		if err := f.store.CreateBrowserSession(ctx, twinSession, []string{"esia"}); err != nil {
			t.Fatal(err)
		}
		child := mustAccountBorn(t, f.store, "5000000003", s2.Birthdate)
		if _, err := f.link.Resolve(ctx, child, "234-567-890 99"); err != nil {
			t.Fatal(err)
		}
		if _, err := f.store.BrowserSession(ctx, "twin-session"); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("the twin's session outlived the end of its own link: %v", err)
		}
		ls, err := f.store.SelfLinks(ctx, "s-2")
		if err != nil || len(ls) != 1 || ls[0].AccountID != child || ls[0].Method != "snils" {
			t.Errorf("own links of s-2 after the child's login: %+v %v", ls, err)
		}
	})
}

// TestImportLeavesRoomForLogins: a long import writes in batches, so on SQLite (one writer) a
// login's write goes through while the import is still running instead of waiting for its end.
func TestImportLeavesRoomForLogins(t *testing.T) {
	s := storagetest.Open(t, storagetest.NewSQLiteDSN(t))
	f := newFixture(t, s)
	ctx := context.Background()
	const n = 4000
	var cards, links strings.Builder
	cards.WriteString("student_id,school_id,class,family_name,given_name,middle_name,birthdate,snils,active\n")
	links.WriteString("esia_oid,student_id,relation,linked_at\n")
	for i := range n {
		fmt.Fprintf(&cards, "b-%05d,sch-1,1А,Фамилия,Имя,,2016-03-03,,1\n", i)
		fmt.Fprintf(&links, "%d,b-%05d,parent,2020-09-01\n", 8000000000+i, i)
	}
	f.importRoster(t, cards.String(), linking.ImportOptions{})
	writing := make(chan struct{})
	var once sync.Once
	var importDone atomic.Bool
	done := make(chan error, 1)
	go func() {
		_, err := regionimport.New(f.store, f.link).ImportLinks(ctx, strings.NewReader(links.String()), regionimport.ImportFileOptions{Progress: func(pass string, d, total int) {
			if pass == "importing" { // the writing pass has begun
				once.Do(func() { close(writing) })
			}
		}})
		importDone.Store(true)
		done <- err
	}()
	<-writing
	if err := s.Audit(ctx, "test", "login", "", nil); err != nil {
		t.Fatal(err)
	}
	if importDone.Load() {
		t.Error("a write made while the import was writing waited for the whole import")
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if c := countLinks(t, s); c != n {
		t.Errorf("%d links imported, want %d", c, n)
	}
}

// TestImportedEmptyPassword: a hash of the empty password from a region's export lets nobody
// in — not with "", nor with the NUL bytes bcrypt and PBKDF2 read as "".
func TestImportedEmptyPassword(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.importRoster(t, roster, linking.ImportOptions{})
		if _, err := regionimport.New(f.store, f.link).ImportLinks(ctx, strings.NewReader("esia_oid,student_id,relation,linked_at\n6000000001,s-4,parent,2020-09-01\n"), regionimport.ImportFileOptions{}); err != nil {
			t.Fatal(err)
		}
		empty, err := bcrypt.GenerateFromPassword(nil, 8)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := regionimport.New(f.store, f.link).ImportChildren(ctx, strings.NewReader("student_id,login,password_hash,guardian_esia_oid\ns-4,empty.one,"+string(empty)+",6000000001\n"), regionimport.ImportFileOptions{}); err != nil {
			t.Fatal(err)
		}
		for i, pw := range []string{"", "\x00", "\x00\x00", "\x00\x00\x00\x00"} {
			if _, err := f.link.ChildLogin(ctx, "empty.one", pw, fmt.Sprintf("10.9.0.%d", i+1), false); !errors.Is(err, linking.ErrBadCredentials) {
				t.Errorf("password %q: %v", pw, err)
			}
		}
	})
}

// TestImportedTwin: a twin's oid imported as the other twin's own account is settled by the
// birth date; when that account's SNILS then names its own card, the imported link gives way:
// one account is the own account of one card.
func TestImportedTwin(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.importRoster(t, roster+day("tw-b,sch-1,3Б,Иванова,Дарина,Игоревна,2017-05-21,,1,,,,\n"), linking.ImportOptions{})
		s2, err := f.store.Student(ctx, "s-2")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := regionimport.New(f.store, f.link).ImportLinks(ctx, strings.NewReader("esia_oid,student_id,relation,linked_at\n7000000001,tw-b,self,2024-09-01\n"), regionimport.ImportFileOptions{}); err != nil {
			t.Fatal(err)
		}
		oid := "7000000001"
		a, err := f.store.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: &oid, Birthdate: s2.Birthdate})
		if err != nil {
			t.Fatal(err)
		}
		if settled, _, err := f.link.SettleImported(ctx, a); err != nil || settled != 1 {
			t.Fatalf("settle: %d %v", settled, err)
		}
		if _, err := f.link.ResolveAccount(ctx, a, "234-567-890 99"); err != nil { // s-2's SNILS
			t.Fatal(err)
		}
		ls, err := f.store.Links(ctx, a.ID, false)
		if err != nil || len(ls) != 1 || ls[0].StudentID != "s-2" || ls[0].Method != "snils" {
			t.Errorf("the account's links: %+v %v; want only its own card s-2 by SNILS", ls, err)
		}
	})
}

// TestNewLoginThatReadsAsAnImportedOne: a parent may not make a login that reads as an imported
// Cyrillic one (coba against сова).
func TestNewLoginThatReadsAsAnImportedOne(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.importRoster(t, roster, linking.ImportOptions{})
		parent := mustAccount(t, f.store, "8000000001")
		im := regionimport.New(f.store, f.link)
		if _, err := im.ImportLinks(ctx, strings.NewReader("esia_oid,student_id,relation,linked_at\n8000000001,s-4,parent,2020-09-01\n8000000001,s-1,parent,2020-09-01\n"), regionimport.ImportFileOptions{}); err != nil {
			t.Fatal(err)
		}
		const bcrypt10 = "$2a$10$6phbKEpEXwOoS0cRSPkn2.TM/c0/z/connnZ0O7BRsWgfuLArBzxO"
		if _, err := im.ImportChildren(ctx, strings.NewReader("student_id,login,password_hash,guardian_esia_oid\ns-4,сова,"+bcrypt10+",8000000001\n"), regionimport.ImportFileOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := f.link.CreateChildLogin(ctx, parent, "s-1", "coba", "Podsolnuh-2015-ok"); !errors.Is(err, linking.ErrLoginTaken) {
			t.Errorf("a new login that reads as сова: %v, want ErrLoginTaken", err)
		}
		if _, err := f.link.CreateChildLogin(ctx, parent, "s-1", "sova", "Podsolnuh-2015-ok"); err != nil {
			t.Errorf("a login that does not read as another: %v", err)
		}
	})
}

// TestImportedFirstLoginsAtOnce: 50 first logins of one awaiting account at once settle its
// imported links once; 50 logins of one child at once with its imported password all succeed,
// every secret checked is the child's, and the hash is replaced once.
func TestImportedFirstLoginsAtOnce(t *testing.T) {
	forEachStore(t, func(t *testing.T, f *fixture) {
		ctx := context.Background()
		f.importRoster(t, roster, linking.ImportOptions{})
		im := regionimport.New(f.store, f.link)
		if _, err := im.ImportLinks(ctx, strings.NewReader("esia_oid,student_id,relation,linked_at\n9000000001,s-4,parent,2020-09-01\n9000000001,s-1,parent,2020-09-01\n"), regionimport.ImportFileOptions{}); err != nil {
			t.Fatal(err)
		}
		oid := "9000000001"
		a, err := f.store.UpsertUpstreamAccount(ctx, &storage.Account{Kind: "esia", Upstream: "esia", UpstreamSub: &oid, Birthdate: "1985-04-12"})
		if err != nil {
			t.Fatal(err)
		}
		const n = 50
		var settled atomic.Int32
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				mine := *a
				s, _, err := f.link.SettleImported(ctx, &mine)
				if err != nil {
					t.Error(err)
				}
				settled.Add(int32(s))
			}()
		}
		wg.Wait()
		if got := settled.Load(); got != 2 {
			t.Errorf("%d imported links settled by %d first logins at once, want 2 (once each)", got, n)
		}

		const bcrypt10 = "$2a$10$6phbKEpEXwOoS0cRSPkn2.TM/c0/z/connnZ0O7BRsWgfuLArBzxO" // Sunflower-2015
		if _, err := im.ImportChildren(ctx, strings.NewReader("student_id,login,password_hash,guardian_esia_oid\ns-4,max.petrov,"+bcrypt10+",9000000001\n"), regionimport.ImportFileOptions{}); err != nil {
			t.Fatal(err)
		}
		o := linking.DefaultChildOptions()
		o.Argon2 = linking.Argon2Params{Time: 1, MemoryKiB: 8 * 1024, Threads: 1}
		o.HashQueue, o.HashWait = 2*n, time.Minute
		o.PerLogin.Max, o.PerIP.Max, o.PerLoginAll.Max = 2*n, 2*n, 2*n
		f.link.SetChildOptions(o)
		var checks, bcryptChecks atomic.Int32
		f.link.SetVerifier(func(encoded, pw string) (bool, error) {
			checks.Add(1)
			if strings.HasPrefix(encoded, "$2a$") {
				bcryptChecks.Add(1)
			}
			return passwords.VerifyStoredPassword(encoded, pw)
		})
		var ok atomic.Int32
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := f.link.ChildLogin(ctx, "max.petrov", "Sunflower-2015", fmt.Sprintf("10.50.%d.1", i), false); err != nil {
					t.Errorf("login %d: %v", i, err)
					return
				}
				ok.Add(1)
			}()
		}
		wg.Wait()
		if ok.Load() != n || checks.Load() != n {
			t.Errorf("%d of %d logins succeeded with %d secrets checked, want %d and %d", ok.Load(), n, checks.Load(), n, n)
		}
		c, err := f.store.ChildByStudent(ctx, "s-4")
		if err != nil || !strings.HasPrefix(c.PasswordHash, "$argon2id$") {
			t.Fatalf("the hash after %d logins: %.12q %v", n, c.PasswordHash, err)
		}
		rehashes := 0
		events, err := f.store.AuditEvents(ctx, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			if e.Action == "child.rehash" {
				rehashes++
			}
		}
		if rehashes != 1 {
			t.Errorf("%d re-hashes audited for %d logins at once (%d checked against bcrypt), want 1", rehashes, n, bcryptChecks.Load())
		}
	})
}
