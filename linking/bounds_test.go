package linking

import (
	"strings"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/storage"
)

// Table tests at the edges of each rule, so that a rule moved by one (a boundary, a negation) is
// caught.

func TestCheckPasswordBounds(t *testing.T) {
	s := &Service{common: commonPasswords()}
	for _, tc := range []struct {
		pw   string
		want error
	}{
		{strings.Repeat("ж", 7), ErrPasswordShort},
		{strings.Repeat("ж", 8), nil},
		{strings.Repeat("ж", 128), nil},
		{strings.Repeat("ж", 129), ErrPasswordLong},
		{" Masha.Petrova ", ErrPasswordIsLogin},
		{"password", ErrPasswordCommon},
		{"Podsolnuh\t2015", ErrPasswordControl},
		{"Podsolnuh\x002015", ErrPasswordControl},
	} {
		if err := s.CheckPassword("masha.petrova", tc.pw); err != tc.want {
			t.Errorf("%d runes %q: %v, want %v", len([]rune(tc.pw)), tc.pw[:min(len(tc.pw), 12)], err, tc.want)
		}
	}
}

func TestNameAndBirthdateBounds(t *testing.T) {
	if _, ok := cleanName(strings.Repeat("Я", 100)); !ok {
		t.Error("a name of 100 letters refused")
	}
	if _, ok := cleanName(strings.Repeat("Я", 101)); ok {
		t.Error("a name of 101 letters accepted")
	}
	today := time.Date(2026, 11, 22, 15, 0, 0, 0, time.UTC)
	for in, ok := range map[string]bool{"2026-11-22": true, "2026-11-23": false, "1950-01-01": true, "1949-12-31": false, "22.11.2026": true} {
		if _, err := ParseBirthdate(in, today); (err == nil) != ok {
			t.Errorf("birth date %s: %v, want ok=%v", in, err, ok)
		}
	}
}

func TestParentAgeBoundary(t *testing.T) {
	today := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	for born, ok := range map[string]bool{"2008-11-22": true, "2008-11-23": false, "2008-11-21": true} {
		a := &storage.Account{Kind: "esia", Status: "active", Birthdate: born}
		if err := MayLink(a, nil, "parent", today); (err == nil) != ok {
			t.Errorf("born %s, parent on %s: %v, want ok=%v", born, today.Format(time.DateOnly), err, ok)
		}
	}
	st := &storage.Student{Birthdate: "2012-01-01"}
	for _, tc := range []struct {
		a    storage.Account
		want error
	}{
		{storage.Account{Kind: "esia", Status: "active", Birthdate: "2012-01-01"}, nil},
		{storage.Account{Kind: "esia", Status: "active", Birthdate: "2012-01-02"}, ErrNotThisStudent},
		{storage.Account{Kind: "esia", Status: "active"}, ErrNoBirthdate},
		{storage.Account{Kind: "child", Status: "active", Birthdate: "2012-01-01"}, ErrChildAccount},
		{storage.Account{Kind: "esia", Status: "disabled", Birthdate: "2012-01-01"}, ErrAccountOff},
	} {
		if err := MayLink(&tc.a, st, "self", today); err != tc.want {
			t.Errorf("self link of %+v: %v, want %v", tc.a, err, tc.want)
		}
	}
	if err := MayLink(&storage.Account{Kind: "esia", Status: "active", Birthdate: "1980-01-01"}, st, "uncle", today); err == nil {
		t.Error("an unknown relation accepted")
	}
}

func TestRosterParsingEdges(t *testing.T) {
	csvText := "student_id,school_id,class,family_name,given_name,birthdate,active,guardian1_snils,guardian1_name,guardian2_snils,guardian2_name\n" +
		"a-1,sch-1,1А,Иванов,Иван,2019-01-01,да,,,112-233-445 95,Бабушка\n" +
		"a-2,sch-1,1А,Петров,Пётр,2019-01-01,нет\n" + // a short row: the missing columns are empty
		"a-3,sch-1,1А,Сидоров,Сидор,2019-01-01,может быть,,,,\n"
	rows, errs := parseCSV(strings.NewReader(csvText))
	if len(rows) != 3 {
		t.Fatalf("rows %+v errs %+v", rows, errs)
	}
	if g := rows[0].card.Guardians; len(g) != 2 || g[1].SNILS != "112-233-445 95" || g[1].Name != "Бабушка" {
		t.Errorf("the second guardian pair: %+v", g)
	}
	if a := rows[0].card.Active; a == nil || !*a {
		t.Errorf("active да: %v", a)
	}
	if a := rows[1].card.Active; a == nil || *a || rows[1].card.Guardians[1].Name != "" {
		t.Errorf("a short row: %+v", rows[1].card)
	}
	if len(errs) != 1 || errs[0].Line != 4 || errs[0].Field != "active" {
		t.Errorf("errors %+v, want one for line 4, field active", errs)
	}
	if rows[2].line != 4 {
		t.Errorf("line of the third row: %d", rows[2].line)
	}
	jsonl := `{"student_id":"j-1","school_id":"sch-1","class":"1А","family_name":"А","given_name":"Б","birthdate":"2019-01-01"}` + "\n\n{not json}\n" + strings.Repeat("x", 1<<20+10) + "\n"
	jrows, jerrs := parseJSONL(strings.NewReader(jsonl))
	if len(jrows) != 1 || jrows[0].line != 1 {
		t.Errorf("JSON rows %+v", jrows)
	}
	if len(jerrs) != 2 || jerrs[0].Line != 3 || !strings.Contains(jerrs[0].Reason, "not a valid JSON card") || jerrs[1].Line != 4 || !strings.Contains(jerrs[1].Reason, "cannot read") {
		t.Errorf("JSON errors %+v: want line 3 (bad JSON) and line 4 (too long)", jerrs)
	}
	if _, errs := parseCSV(strings.NewReader("student_id,school_id\n")); len(errs) == 0 || errs[0].Line != 1 {
		t.Errorf("a header without required columns: %+v", errs)
	}
	if _, errs := parseCSV(strings.NewReader(CSVHeader + "\n\"unterminated,x\n")); len(errs) != 1 || !strings.Contains(errs[0].Reason, "not valid CSV") {
		t.Errorf("bad CSV: %+v", errs)
	}
	// A bad line is reported and the reading goes on with the next one.
	rows, errs = parseCSV(strings.NewReader("student_id,school_id,class,family_name,given_name,birthdate\nb\"ad,x,y,z,w,v\na-9,sch-1,1А,Иванов,Иван,2019-01-01\n"))
	if len(errs) != 1 || errs[0].Line != 2 || len(rows) != 1 || rows[0].card.StudentID != "a-9" {
		t.Errorf("after a bad line: rows %+v errors %+v", rows, errs)
	}
	bad := Card{StudentID: "g-1", SchoolID: "sch-1", Class: "1А", FamilyName: "А", GivenName: "Б", Birthdate: "2019-01-01", Guardians: []GuardianEntry{{SNILS: "112-233-445 95", Name: "<script>"}}}
	s := &Service{digester: NewDigester([]byte("test-pepper-test-pepper-test-pep")), now: func() time.Time { return time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC) }}
	if _, _, probs := s.Validate(bad, 1, map[string]bool{"sch-1": true}); len(probs) == 0 || probs[0].Field != "guardian1_name" {
		t.Errorf("a guardian name with < >: %+v", probs)
	}
}
