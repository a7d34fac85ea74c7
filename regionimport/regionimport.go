// Package regionimport brings over what a region's earlier system holds when the region moves
// onto the broker (docs/MIGRATION.md): the links parents made by code over the years, keyed by
// ESIA oid (what the diaries know), and the logins parents made for children under 14, with
// their password hashes. Both are imported before the switch, so that nobody has to find a new
// code or a new password. The links of an account that has not logged in yet are settled at its
// first login by linking.Service.SettleImported.
package regionimport

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/passwords"
	"github.com/esia-broker/esia-broker/storage"
)

// Store is what the imports need of the store.
type Store interface {
	linking.Store
	linking.MigrationStore
}

// Importer imports a region's files through the linking rules.
type Importer struct {
	store Store
	link  *linking.Service
}

// New makes an importer over store, with the rules and child options of link.
func New(store Store, link *linking.Service) *Importer { return &Importer{store: store, link: link} }

// ImportFileOptions control `links import` and `children import`.
type ImportFileOptions struct {
	Format      string // csv or jsonl; empty guesses from the first character
	DryRun      bool
	SkipInvalid bool
	AcceptWeak  bool // children: weak hashes
	// Upstream is the connector the ESIA oids are of: "esia" (the default) or the id of a
	// gateway to ESIA (upstream.oidc).
	Upstream string
	Operator string
	// Progress is told how far each pass has gone: "checking", then "importing".
	Progress func(pass string, done, total int)
}

// FileImportReport says what an import of links or children did.
type FileImportReport struct {
	Rows      int
	Created   int
	Unchanged int
	Skipped   int
	Accounts  int            // links: accounts made awaiting their first login
	Weak      int            // children: weak hashes accepted
	Formats   map[string]int // children: hash formats of the rows created
	Errors    []linking.RowError
	Applied   bool
}

// Columns of the import files.
var (
	LinkColumns  = []string{"esia_oid", "student_id", "relation", "linked_at", "method"}
	ChildColumns = []string{"student_id", "login", "password_hash", "guardian_esia_oid"}
)

var (
	oidPattern     = regexp.MustCompile(`^[1-9][0-9]{0,19}$`)
	methodPattern  = regexp.MustCompile(`^[a-z_]{1,32}$`)
	latinLetter    = regexp.MustCompile(`[a-z]`)
	cyrillicLetter = regexp.MustCompile(`[а-яё]`)
)

// maxImportRows bounds one file (a region has a few hundred thousand students at most).
const maxImportRows = 1_000_000

type fileRow struct {
	line   int
	fields map[string]string
}

// upstreamOf is the connector an import's oids are of.
func upstreamOf(o ImportFileOptions) string {
	if o.Upstream == "" {
		return storage.ESIAUpstream
	}
	return o.Upstream
}

// readImportFile reads CSV (with a header naming the columns) or JSON lines (an object of
// strings per line). Unknown or missing columns fail the file; a bad row is reported by line.
func readImportFile(r io.Reader, format string, columns, required []string) ([]fileRow, []linking.RowError, error) {
	return readImportFileN(r, format, columns, required, maxImportRows)
}

// readImportFileN is readImportFile with at most limit rows, bad ones included.
func readImportFileN(r io.Reader, format string, columns, required []string, limit int) ([]fileRow, []linking.RowError, error) {
	br := bufio.NewReader(r)
	if format == "" {
		first, _ := br.Peek(1)
		format = "csv"
		if len(first) == 1 && first[0] == '{' {
			format = "jsonl"
		}
	}
	var rows []fileRow
	var errs []linking.RowError
	checkValue := func(line int, k, v string) bool {
		if !utf8.ValidString(v) || len(v) > 512 || strings.ContainsAny(v, "\x00\r\n") {
			errs = append(errs, linking.RowError{Line: line, Field: k, Reason: "not valid text (UTF-8, one line, at most 512 bytes)"})
			return false
		}
		return true
	}
	switch format {
	case "csv":
		cr := csv.NewReader(br)
		cr.ReuseRecord = false
		header, err := cr.Read()
		if err != nil {
			return nil, nil, fmt.Errorf("read the header: %w", err)
		}
		for i, h := range header {
			header[i] = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
			if !slices.Contains(columns, header[i]) {
				return nil, nil, fmt.Errorf("unknown column %q (columns: %s)", header[i], strings.Join(columns, ","))
			}
			if slices.Index(header, header[i]) < i {
				return nil, nil, fmt.Errorf("column %q appears twice", header[i])
			}
		}
		for _, c := range required {
			if !slices.Contains(header, c) {
				return nil, nil, fmt.Errorf("missing column %q (columns: %s)", c, strings.Join(columns, ","))
			}
		}
		for {
			rec, err := cr.Read()
			if err == io.EOF {
				break
			}
			line, _ := cr.FieldPos(0)
			if len(rows)+len(errs) >= limit {
				return nil, nil, fmt.Errorf("more than %d rows", limit)
			}
			if err != nil {
				var pe *csv.ParseError
				if errors.As(err, &pe) && pe.Err == csv.ErrFieldCount {
					errs = append(errs, linking.RowError{Line: pe.StartLine, Reason: fmt.Sprintf("has %d fields, the header %d (a value with a comma, such as a PBKDF2 hash, goes in double quotes)", len(rec), len(header))})
					continue
				}
				return nil, nil, fmt.Errorf("read CSV: %w", err)
			}
			row := fileRow{line: line, fields: map[string]string{}}
			ok := true
			for i, v := range rec {
				v = strings.TrimSpace(v)
				ok = checkValue(line, header[i], v) && ok
				row.fields[header[i]] = v
			}
			if ok {
				rows = append(rows, row)
			}
		}
	case "jsonl", "json":
		sc := bufio.NewScanner(br)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		line := 0
		for sc.Scan() {
			line++
			text := strings.TrimSpace(sc.Text())
			if text == "" {
				continue
			}
			if len(rows)+len(errs) >= limit {
				return nil, nil, fmt.Errorf("more than %d rows", limit)
			}
			obj, err := jsonObject(text)
			if err != nil {
				errs = append(errs, linking.RowError{Line: line, Reason: err.Error()})
				continue
			}
			row := fileRow{line: line, fields: map[string]string{}}
			ok := true
			for k, raw := range obj {
				if !slices.Contains(columns, k) {
					errs = append(errs, linking.RowError{Line: line, Field: k, Reason: "unknown field (fields: " + strings.Join(columns, ", ") + ")"})
					ok = false
					continue
				}
				var v string
				if err := json.Unmarshal(raw, &v); err != nil {
					errs = append(errs, linking.RowError{Line: line, Field: k, Reason: "must be a string"})
					ok = false
					continue
				}
				v = strings.TrimSpace(v)
				ok = checkValue(line, k, v) && ok
				row.fields[k] = v
			}
			if ok {
				rows = append(rows, row)
			}
		}
		if err := sc.Err(); err != nil {
			return nil, nil, fmt.Errorf("read JSON lines: %w", err)
		}
	default:
		return nil, nil, fmt.Errorf("unknown format %q (csv or jsonl)", format)
	}
	return rows, errs, nil
}

// jsonObject reads one JSON object whose keys appear once each (after unescaping: "\u0065" is
// "e"), with nothing after it.
func jsonObject(text string) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(strings.NewReader(text))
	notOne := errors.New("not one JSON object")
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, notOne
	}
	obj := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, notOne
		}
		key, _ := t.(string)
		if _, dup := obj[key]; dup {
			return nil, fmt.Errorf("field %q appears twice", key)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, notOne
		}
		obj[key] = v
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, notOne
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, notOne
	}
	return obj, nil
}

// parseLinkedAt reads YYYY-MM-DD, DD.MM.YYYY or RFC 3339.
func parseLinkedAt(v string, now time.Time) (time.Time, error) {
	var t time.Time
	var err error
	for _, layout := range []string{time.RFC3339, "2006-01-02", "02.01.2006"} {
		if t, err = time.Parse(layout, v); err == nil {
			break
		}
	}
	if err != nil {
		return time.Time{}, errors.New("a date YYYY-MM-DD, DD.MM.YYYY or RFC 3339 time is expected")
	}
	if t.Year() < 2000 || t.After(now.Add(24*time.Hour)) {
		return time.Time{}, errors.New("out of range (2000 to today)")
	}
	return t.UTC(), nil
}

// ImportLinks imports a region's links (LinkColumns), keyed by ESIA oid, in one transaction.
// A link of an account that has not logged in yet waits for its first login (linking.Service.SettleImported);
// one of a known account is checked now by the rules every link follows. Rows already
// imported change nothing.
func (s *Importer) ImportLinks(ctx context.Context, r io.Reader, o ImportFileOptions) (*FileImportReport, error) {
	ms := s.store
	rows, errs, err := readImportFile(r, o.Format, LinkColumns, []string{"esia_oid", "student_id", "relation", "linked_at"})
	if err != nil {
		return nil, err
	}
	rep := &FileImportReport{Rows: len(rows) + len(errs), Skipped: len(errs), Errors: errs}
	now := s.link.Now()
	type good struct {
		line                   int
		oid, student, relation string
		method                 string
		linkedAt               time.Time
	}
	var goods []good
	seen := map[string]int{}
	selfOf, ownOf := map[string]int{}, map[string]int{}
	for _, row := range rows {
		f := row.fields
		var rowErrs []linking.RowError
		bad := func(field, reason string) {
			rowErrs = append(rowErrs, linking.RowError{Line: row.line, Field: field, Reason: reason})
		}
		if !oidPattern.MatchString(f["esia_oid"]) {
			bad("esia_oid", "an ESIA oid is 1 to 20 digits, without leading zeros")
		}
		if !linking.ValidID(f["student_id"]) {
			bad("student_id", "1 to 64 of A-Z a-z 0-9 . _ : -")
		}
		if f["relation"] != "parent" && f["relation"] != "self" {
			bad("relation", "parent or self")
		}
		at, err := parseLinkedAt(f["linked_at"], now)
		if err != nil {
			bad("linked_at", err.Error())
		}
		if m := f["method"]; m != "" && !methodPattern.MatchString(m) {
			bad("method", "1 to 32 of a-z and _")
		}
		key := f["esia_oid"] + "\x00" + f["student_id"]
		if prev, dup := seen[key]; dup {
			bad("", fmt.Sprintf("the same account and student as line %d", prev))
		} else {
			seen[key] = row.line
		}
		if f["relation"] == "self" {
			if prev, dup := selfOf[f["student_id"]]; dup {
				bad("relation", fmt.Sprintf("the student's own account is already given on line %d", prev))
			} else {
				selfOf[f["student_id"]] = row.line
			}
			// One ESIA account is one person: the own account of one student only.
			if prev, dup := ownOf[f["esia_oid"]]; dup {
				bad("relation", fmt.Sprintf("this account is already the own account of another student on line %d", prev))
			} else {
				ownOf[f["esia_oid"]] = row.line
			}
		}
		if len(rowErrs) > 0 {
			rep.Errors = append(rep.Errors, rowErrs...)
			rep.Skipped++
			continue
		}
		goods = append(goods, good{row.line, f["esia_oid"], f["student_id"], f["relation"], f["method"], at})
	}
	// A row's check: the account (nil: none yet), whether its link exists, or why it is refused.
	type checked struct {
		a      *storage.Account
		exists bool
	}
	students := map[string]*storage.Student{}
	check := func(ctx context.Context, g good, lock bool) (checked, *linking.RowError, error) {
		bad := func(field, reason string) (checked, *linking.RowError, error) {
			return checked{}, &linking.RowError{Line: g.line, Field: field, Reason: reason}, nil
		}
		st := students[g.student]
		if st == nil {
			var err error
			st, err = s.store.Student(ctx, g.student)
			if errors.Is(err, storage.ErrNotFound) {
				return bad("student_id", "no such card in the roster (import the roster first)")
			}
			if err != nil {
				return checked{}, nil, err
			}
			students[g.student] = st
		}
		if !st.Active {
			return bad("student_id", "the card is inactive (the student left)")
		}
		a, err := ms.AccountByUpstream(ctx, upstreamOf(o), g.oid)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			a = nil
		case err != nil:
			return checked{}, nil, err
		case lock:
			// Locked, and read again: a first login settling this account's links meanwhile
			// would otherwise leave this one unchecked.
			if a, err = ms.AccountForUpdate(ctx, a.ID); err != nil {
				return checked{}, nil, err
			}
		}
		if a != nil && !a.AwaitingLogin {
			// Known already: the rules of every link hold now (an adult parent; the student's
			// own account only by the card's birth date, and not against the card's SNILS).
			if err := linking.MayLink(a, st, g.relation, now); err != nil {
				return bad("esia_oid", "this account may not be linked so: "+err.Error())
			}
			if g.relation == "self" && st.SNILSDigest != "" && a.SNILSDigest != "" && st.SNILSDigest != a.SNILSDigest {
				return bad("esia_oid", "this account's SNILS is not the card's: it is not the student's own")
			}
		}
		if g.relation == "self" {
			if other, err := linking.OtherSelfLink(ctx, ms, g.student, a); err != nil {
				return checked{}, nil, err
			} else if other {
				return bad("relation", "the student's own account is already linked to another ESIA account")
			}
		}
		c := checked{a: a}
		if a != nil {
			ls, err := s.store.Links(ctx, a.ID, false)
			if err != nil {
				return checked{}, nil, err
			}
			c.exists = slices.ContainsFunc(ls, func(l storage.Link) bool { return l.StudentID == g.student })
			if g.relation == "self" && slices.ContainsFunc(ls, func(l storage.Link) bool { return l.Relation == "self" && l.StudentID != g.student }) {
				return bad("relation", "this account is already the own account of another student")
			}
		}
		return c, nil, nil
	}
	newOIDs := map[string]bool{}
	err = s.runImport(ctx, len(goods), o, rep, func(ctx context.Context, i int, write bool) (*linking.RowError, error) {
		g := goods[i]
		c, rowErr, err := check(ctx, g, write)
		if rowErr != nil || err != nil {
			return rowErr, err
		}
		if !write {
			if c.a == nil && !newOIDs[g.oid] {
				newOIDs[g.oid] = true
				rep.Accounts++
			}
			if c.exists {
				rep.Unchanged++
			} else {
				rep.Created++
			}
			return nil, nil
		}
		if c.a == nil {
			if c.a, _, err = ms.AwaitingAccount(ctx, upstreamOf(o), g.oid); err != nil {
				return nil, err
			}
			rep.Accounts++
		}
		linkID, err := ms.ImportLink(ctx, c.a.ID, g.student, g.relation, g.linkedAt)
		if err != nil {
			return nil, err
		}
		if linkID == "" {
			rep.Unchanged++
			return nil, nil
		}
		rep.Created++
		return nil, s.store.AppendEvent(ctx, linking.LinkEvent(storage.EventLinkCreated, c.a.ID, g.student, linkID, g.relation, "imported"))
	}, func() { rep.Created, rep.Unchanged, rep.Accounts = 0, 0, 0; clear(students) }, func(ctx context.Context) error {
		return s.store.Audit(ctx, o.Operator, "links.import", "", map[string]any{"rows": rep.Rows, "created": rep.Created,
			"unchanged": rep.Unchanged, "accounts": rep.Accounts, "skipped": rep.Skipped})
	})
	if errors.Is(err, linking.ErrInvalidRows) {
		rep.Created, rep.Unchanged, rep.Accounts = 0, 0, 0
	}
	return rep, err
}

// ImportChildren imports the login-and-password sub-accounts of a region (ChildColumns), in
// one transaction. Each needs its guardian's ESIA account linked to the student as a parent
// (imported links count: import them first). The hash is kept as it is (ImportHash) and
// replaced by argon2id at the child's first successful login.
func (s *Importer) ImportChildren(ctx context.Context, r io.Reader, o ImportFileOptions) (*FileImportReport, error) {
	ms := s.store
	if s.link.ChildOptions().PasswordAccountsOff {
		return nil, linking.ErrPasswordAccountsOff
	}
	rows, errs, err := readImportFile(r, o.Format, ChildColumns, ChildColumns)
	if err != nil {
		return nil, err
	}
	rep := &FileImportReport{Rows: len(rows) + len(errs), Skipped: len(errs), Errors: errs, Formats: map[string]int{}}
	type good struct {
		line                         int
		student, login, hash, format string
		oid                          string
		weak                         bool
	}
	var goods []good
	loginAt, studentAt := map[string]int{}, map[string]int{}
	for _, row := range rows {
		f := row.fields
		var rowErrs []linking.RowError
		bad := func(field, reason string) {
			rowErrs = append(rowErrs, linking.RowError{Line: row.line, Field: field, Reason: reason})
		}
		if !linking.ValidID(f["student_id"]) {
			bad("student_id", "1 to 64 of A-Z a-z 0-9 . _ : -")
		} else if prev, dup := studentAt[f["student_id"]]; dup {
			bad("student_id", fmt.Sprintf("the same student as line %d", prev))
		} else {
			studentAt[f["student_id"]] = row.line
		}
		login := strings.ToLower(f["login"])
		if !linking.ImportedLogin(login) {
			bad("login", "2 to 32 Latin or Cyrillic letters, digits, '.', '_', '@' or '-', starting with a letter or digit")
		} else if latinLetter.MatchString(login) && cyrillicLetter.MatchString(login) {
			bad("login", "mixes Latin and Cyrillic letters (a look-alike of another login)")
		} else if prev, dup := loginAt[linking.LoginSkeleton(login)]; dup {
			bad("login", fmt.Sprintf("reads as the login on line %d (logins are case-insensitive, and Cyrillic а, е, о… read as Latin)", prev))
		} else {
			loginAt[linking.LoginSkeleton(login)] = row.line
		}
		stored, format, weak, err := passwords.ImportHash(f["password_hash"], o.AcceptWeak, s.link.ChildOptions().Argon2)
		if err != nil {
			bad("password_hash", err.Error())
		}
		if !oidPattern.MatchString(f["guardian_esia_oid"]) {
			bad("guardian_esia_oid", "an ESIA oid is 1 to 20 digits, without leading zeros")
		}
		if len(rowErrs) > 0 {
			rep.Errors = append(rep.Errors, rowErrs...)
			rep.Skipped++
			continue
		}
		goods = append(goods, good{row.line, f["student_id"], login, stored, format, f["guardian_esia_oid"], weak})
	}
	check := func(ctx context.Context, g good) (guardian *storage.Account, st *storage.Student, exists bool, rowErr *linking.RowError, err error) {
		bad := func(field, reason string) (*storage.Account, *storage.Student, bool, *linking.RowError, error) {
			return nil, nil, false, &linking.RowError{Line: g.line, Field: field, Reason: reason}, nil
		}
		st, err = s.store.Student(ctx, g.student)
		if errors.Is(err, storage.ErrNotFound) {
			return bad("student_id", "no such card in the roster (import the roster first)")
		}
		if err != nil {
			return nil, nil, false, nil, err
		}
		if !st.Active {
			return bad("student_id", "the card is inactive (the student left)")
		}
		if !s.link.ChildMayUse(st) {
			return bad("student_id", "the student is 14 or older: sub-accounts are for children under 14, who move to ESIA at 14")
		}
		if c, err := s.store.ChildByStudent(ctx, g.student); err == nil {
			if c.Login == g.login {
				return nil, st, true, nil, nil
			}
			return bad("student_id", "the student already has a sub-account with another login")
		} else if !errors.Is(err, storage.ErrNotFound) {
			return nil, nil, false, nil, err
		}
		if _, err := s.store.ChildByLogin(ctx, g.login); err == nil {
			return bad("login", "taken by another child's sub-account")
		} else if !errors.Is(err, storage.ErrNotFound) {
			return nil, nil, false, nil, err
		}
		if other, err := ms.LoginLookalike(ctx, g.login); err != nil {
			return nil, nil, false, nil, err
		} else if other != "" && other != g.login {
			return bad("login", "reads as another child's login (Cyrillic а, е, о… read as Latin)")
		}
		guardian, err = ms.AccountByUpstream(ctx, upstreamOf(o), g.oid)
		if errors.Is(err, storage.ErrNotFound) {
			return bad("guardian_esia_oid", "no such account: import the links first")
		}
		if err != nil {
			return nil, nil, false, nil, err
		}
		gl, err := s.store.GuardianLinks(ctx, g.student)
		if err != nil {
			return nil, nil, false, nil, err
		}
		if guardian.Status != "active" || !slices.ContainsFunc(gl, func(l storage.Link) bool { return l.AccountID == guardian.ID }) {
			return bad("guardian_esia_oid", "this account has no active parent link to the student: import the links first")
		}
		return guardian, st, false, nil, nil
	}
	count := func(g good) {
		rep.Created++
		rep.Formats[g.format]++
		if g.weak {
			rep.Weak++
		}
	}
	err = s.runImport(ctx, len(goods), o, rep, func(ctx context.Context, i int, write bool) (*linking.RowError, error) {
		g := goods[i]
		guardian, st, exists, rowErr, err := check(ctx, g)
		if rowErr != nil || err != nil {
			return rowErr, err
		}
		if exists {
			rep.Unchanged++
			return nil, nil
		}
		if !write {
			count(g)
			return nil, nil
		}
		a := &storage.Account{FamilyName: st.FamilyName, GivenName: st.GivenName, MiddleName: st.MiddleName, Birthdate: st.Birthdate}
		if err := s.store.CreateChild(ctx, a, &storage.ChildCredential{StudentID: g.student, Login: g.login, PasswordHash: g.hash, CreatedBy: "import:" + guardian.ID}); err != nil {
			if errors.Is(err, storage.ErrConflict) {
				return &linking.RowError{Line: g.line, Field: "login", Reason: "taken by another child's sub-account"}, nil
			}
			return nil, err
		}
		count(g)
		return nil, s.store.AppendEvent(ctx, storage.Event{Type: storage.EventChildCreated, AccountID: a.ID, StudentID: g.student,
			Data: map[string]any{"parent": guardian.ID, "imported": true}})
	}, func() { rep.Created, rep.Unchanged, rep.Weak = 0, 0, 0; clear(rep.Formats) }, func(ctx context.Context) error {
		return s.store.Audit(ctx, o.Operator, "children.import", "", map[string]any{"rows": rep.Rows, "created": rep.Created,
			"unchanged": rep.Unchanged, "weak": rep.Weak, "formats": rep.Formats, "skipped": rep.Skipped})
	})
	if errors.Is(err, linking.ErrInvalidRows) {
		rep.Created, rep.Unchanged, rep.Weak = 0, 0, 0
		clear(rep.Formats)
	}
	return rep, err
}

// importBatch is how many rows one transaction of an import writes: a long import never holds
// the database (SQLite's one writer, PostgreSQL's row locks) for more than a moment.
const importBatch = 500

// sqliteImportPause is the pause between two batches on SQLite (runImport).
const sqliteImportPause = 120 * time.Millisecond

// runImport runs an import's rows in two passes. The first only checks (row with write false,
// no transaction, no lock) and collects the refused rows: with any, and without
// --skip-invalid, nothing is written (linking.ErrInvalidRows); a dry run stops there. The second
// (after reset) checks each row again and writes it, importBatch rows per transaction, and
// audits. A row refused only in the second pass (the database changed meanwhile) is reported
// and skipped; a failure of the database stops the import with the batches before it
// written, and running the same file again completes it.
func (s *Importer) runImport(ctx context.Context, n int, o ImportFileOptions, rep *FileImportReport,
	row func(ctx context.Context, i int, write bool) (*linking.RowError, error), reset func(), audit func(ctx context.Context) error) error {
	progress := func(pass string, done, total int) {
		if o.Progress != nil && (done%importBatch == 0 || done == total) {
			o.Progress(pass, done, total)
		}
	}
	refused := map[int]bool{}
	var errs []linking.RowError
	for i := range n {
		rowErr, err := row(ctx, i, false)
		if err != nil {
			return err
		}
		if rowErr != nil {
			refused[i] = true
			errs = append(errs, *rowErr)
		}
		progress("checking", i+1, n)
	}
	finish := func(errs []linking.RowError) {
		rep.Errors = append(rep.Errors, errs...)
		slices.SortStableFunc(rep.Errors, func(a, b linking.RowError) int { return a.Line - b.Line })
		rep.Skipped += len(errs)
	}
	// The file's own problems (rep.Errors already) and the database's are told together.
	if (len(errs) > 0 || len(rep.Errors) > 0) && !o.SkipInvalid {
		finish(errs)
		rep.Skipped = rep.Rows
		return linking.ErrInvalidRows
	}
	if o.DryRun {
		finish(errs)
		return nil
	}
	reset()
	var todo []int
	for i := range n {
		if !refused[i] {
			todo = append(todo, i)
		}
	}
	var late []linking.RowError
	for start := 0; start < len(todo); start += importBatch {
		batch := todo[start:min(start+importBatch, len(todo))]
		var batchLate []linking.RowError
		err := s.store.InTx(ctx, func(ctx context.Context) error {
			for _, i := range batch {
				rowErr, err := row(ctx, i, true)
				if err != nil {
					return err
				}
				if rowErr != nil {
					batchLate = append(batchLate, *rowErr)
				}
			}
			return nil
		})
		if err != nil {
			finish(append(errs, late...))
			return fmt.Errorf("the import stopped after %d of %d rows, which are written (run the same file again to finish): %w", start, len(todo), err)
		}
		late = append(late, batchLate...)
		progress("importing", start+len(batch), len(todo))
		if d, ok := s.store.(interface{ Dialect() storage.Dialect }); ok && d.Dialect() == storage.SQLite && start+importBatch < len(todo) {
			// SQLite has one writer, and a writer waiting for it retries at most every 100 ms:
			// a pause longer than that lets the logins waiting meanwhile write before the next
			// batch.
			time.Sleep(sqliteImportPause)
		}
	}
	finish(append(errs, late...))
	if err := s.store.InTx(ctx, audit); err != nil {
		return err
	}
	rep.Applied = true
	return nil
}
