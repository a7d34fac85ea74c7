package linking

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
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/esia-broker/esia-broker/storage"
)

// Card is a student card as the diary sends it, with plain SNILS; it is validated and turned
// into digests before anything is stored.
type Card struct {
	StudentID  string          `json:"student_id"`
	SchoolID   string          `json:"school_id"`
	Class      string          `json:"class"`
	FamilyName string          `json:"family_name"`
	GivenName  string          `json:"given_name"`
	MiddleName string          `json:"middle_name"`
	Birthdate  string          `json:"birthdate"`
	SNILS      string          `json:"snils"`
	Guardians  []GuardianEntry `json:"guardians"`
	Active     *bool           `json:"active"`
}

// GuardianEntry is a parent on a card.
type GuardianEntry struct {
	SNILS string `json:"snils"`
	Name  string `json:"name"`
}

// RowError is one problem of one row of a roster file.
type RowError struct {
	Line   int
	Field  string
	Reason string
}

func (e RowError) String() string {
	if e.Field == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
	}
	return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Reason)
}

var idPattern = regexp.MustCompile(`^[A-Za-z0-9._:-]{1,64}$`)

func cleanName(s string) (string, bool) { return CleanName(s) }

// nameMarks are the combining marks a Russian name may carry (й, ё written as a letter and a
// mark); others — a stack of marks, a Khmer vowel that renders nothing — make a name that reads
// as another or as nothing.
var nameMarks = &unicode.RangeTable{R16: []unicode.Range16{{Lo: 0x0300, Hi: 0x036f, Stride: 1}}}

// blankLetters are letters that render as nothing (Hangul fillers).
var blankLetters = map[rune]bool{0x115f: true, 0x1160: true, 0x3164: true, 0xffa0: true}

// CleanName checks a name shown to people — a student's or guardian's, a class, a school, a
// diary's — and returns it trimmed: at most 100 characters; letters, digits, spaces and the
// punctuation names use (- ' ’ . , ( ) № « » "); a combining mark only after a letter and at
// most one; at least one letter or digit (or nothing at all). Everything else (control, bidi and zero-width
// characters, blank-looking letters, private-use and unassigned code points, < >) is refused.
func CleanName(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if len([]rune(s)) > 100 {
		return "", false
	}
	visible, marks := false, 0
	prevLetter := false
	for _, r := range s {
		switch {
		case blankLetters[r]:
			return "", false
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			visible, marks, prevLetter = true, 0, unicode.IsLetter(r)
		case unicode.Is(nameMarks, r):
			marks++
			if !prevLetter || marks > 1 {
				return "", false
			}
		case r == ' ' || strings.ContainsRune("-'’.,()№«»\"", r):
			marks, prevLetter = 0, false
		default:
			return "", false
		}
	}
	return s, visible || s == "" // empty is for the caller to judge (a middle name may be)
}

// ParseBirthdate accepts YYYY-MM-DD or DD.MM.YYYY and returns YYYY-MM-DD.
func ParseBirthdate(s string, today time.Time) (string, error) {
	s = strings.TrimSpace(s)
	var t time.Time
	var err error
	if strings.Contains(s, ".") {
		t, err = time.Parse("02.01.2006", s)
	} else {
		t, err = time.Parse("2006-01-02", s)
	}
	if err != nil {
		return "", errors.New("must be YYYY-MM-DD or DD.MM.YYYY")
	}
	if t.After(today) || t.Year() < 1950 {
		return "", errors.New("is not a plausible birth date")
	}
	return t.Format("2006-01-02"), nil
}

// Validate checks a card and turns it into what is stored; every problem is reported.
func (s *Service) Validate(c Card, line int, schools map[string]bool) (*storage.Student, []storage.Guardian, []RowError) {
	var errs []RowError
	bad := func(field, reason string) { errs = append(errs, RowError{Line: line, Field: field, Reason: reason}) }
	if !idPattern.MatchString(c.StudentID) {
		bad("student_id", "must be 1-64 letters, digits or . _ : -")
	}
	if !schools[c.SchoolID] {
		bad("school_id", "unknown school (add it with `esia-broker roster schools add`)")
	}
	st := &storage.Student{ID: c.StudentID, SchoolID: c.SchoolID, Active: c.Active == nil || *c.Active}
	var ok bool
	for _, f := range []struct {
		name string
		in   string
		out  *string
	}{{"class", c.Class, &st.Class}, {"family_name", c.FamilyName, &st.FamilyName}, {"given_name", c.GivenName, &st.GivenName}, {"middle_name", c.MiddleName, &st.MiddleName}} {
		if *f.out, ok = cleanName(f.in); !ok {
			bad(f.name, "too long or has control, bidi or zero-width characters or < >")
		}
	}
	if st.FamilyName == "" || st.GivenName == "" {
		bad("name", "family_name and given_name are required")
	}
	bd, err := ParseBirthdate(c.Birthdate, s.now())
	if err != nil {
		bad("birthdate", err.Error())
	}
	st.Birthdate = bd
	if strings.TrimSpace(c.SNILS) != "" {
		if st.SNILSDigest, err = s.digester.SNILS(c.SNILS); err != nil {
			bad("snils", err.Error())
		}
	}
	var gs []storage.Guardian
	for i, g := range c.Guardians {
		if strings.TrimSpace(g.SNILS) == "" && strings.TrimSpace(g.Name) == "" {
			continue
		}
		field := fmt.Sprintf("guardian%d_snils", i+1)
		d, err := s.digester.SNILS(g.SNILS)
		if err != nil {
			bad(field, err.Error())
			continue
		}
		name, ok := cleanName(g.Name)
		if !ok {
			bad(fmt.Sprintf("guardian%d_name", i+1), "too long or has control, bidi or zero-width characters or < >")
		}
		gs = append(gs, storage.Guardian{SNILSDigest: d, Name: name})
	}
	return st, gs, errs
}

// ImportOptions control a roster import.
type ImportOptions struct {
	// Format is csv or jsonl; empty guesses from the first character.
	Format      string
	DryRun      bool
	SkipInvalid bool
	Operator    string
	Progress    func(done, total int)
}

// ImportReport says what an import did.
type ImportReport struct {
	Rows      int
	Created   int
	Updated   int
	Unchanged int
	Skipped   int
	Errors    []RowError
	Applied   bool
}

// ErrInvalidRows is returned when rows are bad and SkipInvalid is off: nothing was imported.
var ErrInvalidRows = errors.New("the file has invalid rows; nothing was imported")

type parsedRow struct {
	line int
	card Card
}

// CSVHeader documents the CSV columns: student_id, school_id, family_name, given_name and
// birthdate are required, the others may be empty; any number of guardian
// pairs may follow (guardian1_snils, guardian1_name, guardian2_snils, …).
const CSVHeader = "student_id,school_id,class,family_name,given_name,middle_name,birthdate,snils,active,guardian1_snils,guardian1_name,guardian2_snils,guardian2_name"

func parseCSV(r io.Reader) ([]parsedRow, []RowError) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = false
	header, err := cr.Read()
	if err != nil {
		return nil, []RowError{{Line: 1, Reason: "cannot read the header: " + err.Error()}}
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.TrimSpace(strings.TrimPrefix(strings.ToLower(h), "\ufeff"))] = i
	}
	var errs []RowError
	for _, req := range []string{"student_id", "school_id", "class", "family_name", "given_name", "birthdate"} {
		if _, ok := col[req]; !ok {
			errs = append(errs, RowError{Line: 1, Field: req, Reason: "column missing from the header (" + CSVHeader + ")"})
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	var rows []parsedRow
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			// FieldPos may not be called after a failed Read: take the line from the error.
			line := 0
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				line = pe.Line
			}
			errs = append(errs, RowError{Line: line, Reason: "not valid CSV: " + err.Error()})
			if pe == nil {
				break // not a parse error: the reader cannot go on
			}
			continue
		}
		line, _ := cr.FieldPos(0)
		get := func(name string) string {
			if i, ok := col[name]; ok && i < len(rec) {
				return rec[i]
			}
			return ""
		}
		c := Card{StudentID: strings.TrimSpace(get("student_id")), SchoolID: strings.TrimSpace(get("school_id")), Class: get("class"),
			FamilyName: get("family_name"), GivenName: get("given_name"), MiddleName: get("middle_name"), Birthdate: get("birthdate"), SNILS: get("snils")}
		if a := strings.TrimSpace(strings.ToLower(get("active"))); a != "" {
			v, ok := map[string]bool{"1": true, "true": true, "да": true, "yes": true, "0": false, "false": false, "нет": false, "no": false}[a]
			if !ok {
				errs = append(errs, RowError{Line: line, Field: "active", Reason: "must be 1/0, true/false or да/нет"})
			}
			c.Active = &v
		}
		for n := 1; ; n++ {
			_, ok1 := col["guardian"+strconv.Itoa(n)+"_snils"]
			_, ok2 := col["guardian"+strconv.Itoa(n)+"_name"]
			if !ok1 && !ok2 {
				break
			}
			c.Guardians = append(c.Guardians, GuardianEntry{SNILS: get("guardian" + strconv.Itoa(n) + "_snils"), Name: get("guardian" + strconv.Itoa(n) + "_name")})
		}
		rows = append(rows, parsedRow{line: line, card: c})
	}
	return rows, errs
}

func parseJSONL(r io.Reader) ([]parsedRow, []RowError) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var rows []parsedRow
	var errs []RowError
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		var c Card
		dec := json.NewDecoder(strings.NewReader(text))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			errs = append(errs, RowError{Line: line, Reason: "not a valid JSON card: " + err.Error()})
			continue
		}
		rows = append(rows, parsedRow{line: line, card: c})
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, RowError{Line: line + 1, Reason: "cannot read: " + err.Error()})
	}
	return rows, errs
}

var errDryRun = errors.New("dry run")

// validCard is a card that passed validation, ready to store.
type validCard struct {
	st *storage.Student
	gs []storage.Guardian
}

// upsertAll writes cards in the caller's transaction and counts what changed.
func (s *Service) upsertAll(ctx context.Context, cards []validCard, rep *ImportReport, progress func(done, total int)) error {
	// Cards are written (and so locked) in the order of their ids, as issuing codes locks them:
	// two writers of the same cards never wait on each other in a circle.
	cards = slices.Clone(cards)
	slices.SortStableFunc(cards, func(a, b validCard) int { return strings.Compare(a.st.ID, b.st.ID) })
	for i, c := range cards {
		_, existed := s.existing(ctx, c.st.ID)
		changed, err := s.store.UpsertStudent(ctx, c.st, c.gs)
		if err != nil {
			return err
		}
		switch {
		case !changed:
			rep.Unchanged++
		case existed:
			rep.Updated++
		default:
			rep.Created++
		}
		if progress != nil && (i%500 == 499 || i == len(cards)-1) {
			progress(i+1, len(cards))
		}
	}
	return nil
}

// Import reads a roster file and upserts its cards: the whole file or nothing, unless
// SkipInvalid imports the good rows. Importing the same file twice changes nothing.
func (s *Service) Import(ctx context.Context, r io.Reader, o ImportOptions) (*ImportReport, error) {
	br := bufio.NewReader(r)
	format := o.Format
	if format == "" {
		first, _ := br.Peek(1)
		format = "csv"
		if len(first) == 1 && first[0] == '{' {
			format = "jsonl"
		}
	}
	var rows []parsedRow
	var errs []RowError
	switch format {
	case "csv":
		rows, errs = parseCSV(br)
	case "jsonl", "json":
		rows, errs = parseJSONL(br)
	default:
		return nil, fmt.Errorf("unknown roster format %q (csv or jsonl)", format)
	}
	schools, err := s.schoolSet(ctx)
	if err != nil {
		return nil, err
	}
	var goods []validCard
	seen := map[string]int{}
	rep := &ImportReport{Rows: len(rows)}
	for _, row := range rows {
		st, gs, rowErrs := s.Validate(row.card, row.line, schools)
		if prev, dup := seen[row.card.StudentID]; dup && row.card.StudentID != "" {
			rowErrs = append(rowErrs, RowError{Line: row.line, Field: "student_id", Reason: fmt.Sprintf("repeats line %d", prev)})
		}
		seen[row.card.StudentID] = row.line
		if len(rowErrs) > 0 {
			errs = append(errs, rowErrs...)
			rep.Skipped++
			continue
		}
		goods = append(goods, validCard{st, gs})
	}
	rep.Errors = errs
	if len(errs) > 0 && !o.SkipInvalid {
		rep.Skipped = rep.Rows
		return rep, ErrInvalidRows
	}
	err = s.store.InTx(ctx, func(ctx context.Context) error {
		if err := s.upsertAll(ctx, goods, rep, o.Progress); err != nil {
			return err
		}
		if o.DryRun {
			return errDryRun
		}
		return s.store.Audit(ctx, o.Operator, "roster.import", "", map[string]any{"rows": rep.Rows, "created": rep.Created, "updated": rep.Updated, "unchanged": rep.Unchanged, "skipped": rep.Skipped})
	})
	if errors.Is(err, errDryRun) {
		return rep, nil
	}
	if err != nil {
		return rep, err
	}
	rep.Applied = true
	// After a large import the planner's statistics describe the tables before it; refresh
	// them now rather than when autovacuum gets round to it, or the first logins after a new
	// school year plan their SNILS lookups on stale numbers.
	if a, ok := s.store.(rosterAnalyzer); ok && rep.Created+rep.Updated >= analyzeAfterRows {
		if err := a.AnalyzeRoster(ctx); err != nil {
			return rep, fmt.Errorf("roster imported; refreshing planner statistics failed: %w", err)
		}
	}
	return rep, nil
}

// analyzeAfterRows is the import size from which the roster tables are analyzed at once.
const analyzeAfterRows = 500

// rosterAnalyzer is a store that can refresh the planner statistics of the roster tables.
type rosterAnalyzer interface {
	AnalyzeRoster(ctx context.Context) error
}

func (s *Service) existing(ctx context.Context, id string) (*storage.Student, bool) {
	st, err := s.store.Student(ctx, id)
	return st, err == nil
}

func (s *Service) schoolSet(ctx context.Context) (map[string]bool, error) {
	sc, err := s.store.Schools(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(sc))
	for _, x := range sc {
		out[x.ID] = true
	}
	return out, nil
}

// PutCard validates and writes one card (the roster API); it returns the problems, if any.
func (s *Service) PutCard(ctx context.Context, c Card, actor string) (changed bool, problems []RowError, err error) {
	schools, err := s.schoolSet(ctx)
	if err != nil {
		return false, nil, err
	}
	st, gs, problems := s.Validate(c, 1, schools)
	if len(problems) > 0 {
		return false, problems, nil
	}
	err = s.store.InTx(ctx, func(ctx context.Context) error {
		changed, err = s.store.UpsertStudent(ctx, st, gs)
		if err != nil || !changed {
			return err
		}
		return s.store.Audit(ctx, actor, "roster.put", st.ID, nil)
	})
	return changed, nil, err
}

// Deactivate marks a student who left as inactive; links stay but stop appearing in tokens.
func (s *Service) Deactivate(ctx context.Context, id, actor string) (bool, error) {
	var changed bool
	err := s.store.InTx(ctx, func(ctx context.Context) error {
		var err error
		changed, err = s.store.SetStudentActive(ctx, id, false)
		if err != nil || !changed {
			return err
		}
		return s.store.Audit(ctx, actor, "roster.deactivate", id, nil)
	})
	return changed, err
}

// PutCards validates and writes many cards (the batch API): all or nothing. Line numbers in the
// report are 1-based positions in the list.
func (s *Service) PutCards(ctx context.Context, cards []Card, actor string) (*ImportReport, error) {
	schools, err := s.schoolSet(ctx)
	if err != nil {
		return nil, err
	}
	rep := &ImportReport{Rows: len(cards)}
	var goods []validCard
	seen := map[string]bool{}
	for i, c := range cards {
		st, gs, errs := s.Validate(c, i+1, schools)
		if seen[c.StudentID] {
			errs = append(errs, RowError{Line: i + 1, Field: "student_id", Reason: "repeated in the batch"})
		}
		seen[c.StudentID] = true
		rep.Errors = append(rep.Errors, errs...)
		goods = append(goods, validCard{st, gs})
	}
	if len(rep.Errors) > 0 {
		return rep, ErrInvalidRows
	}
	err = s.store.InTx(ctx, func(ctx context.Context) error {
		if err := s.upsertAll(ctx, goods, rep, nil); err != nil {
			return err
		}
		return s.store.Audit(ctx, actor, "roster.batch", "", map[string]any{"rows": rep.Rows, "created": rep.Created, "updated": rep.Updated})
	})
	if err == nil {
		rep.Applied = true
	}
	return rep, err
}
