package linking

import (
	"strings"
	"testing"
	"time"
)

func FuzzNormalizeSNILS(f *testing.F) {
	for _, s := range []string{"112-233-445 95", "11223344595", "001-001-998 00", "", "abc", "112-233-445 9\u00a05"} {
		f.Add(s)
	}
	d := NewDigester([]byte("fuzz-pepper-fuzz-pepper-fuzz-pep"))
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeSNILS(s)
		if err != nil {
			if err != ErrSNILSFormat && err != ErrSNILSControl {
				t.Fatalf("unexpected error (it may repeat the input): %v", err)
			}
			return
		}
		if len(n) != 11 || strings.Trim(n, "0123456789") != "" {
			t.Fatalf("normalised %q to %q", s, n)
		}
		again, err := NormalizeSNILS(n)
		if err != nil || again != n {
			t.Fatalf("not idempotent: %q → %q → %q, %v", s, n, again, err)
		}
		a, _ := d.SNILS(s)
		b, _ := d.SNILS(n)
		if a != b || len(a) != 64 {
			t.Fatalf("digest differs between spellings")
		}
	})
}

func FuzzRosterCSV(f *testing.F) {
	f.Add("student_id,school_id,class,family_name,given_name,middle_name,birthdate,snils,active,guardian1_snils,guardian1_name\ns-1,sch-1,7А,Иванов,Алексей,,12.09.2013,123-456-789 64,1,112-233-445 95,Мама\n")
	f.Add("student_id,school_id,class,family_name,given_name,birthdate\n\"s-1\",\"sch\"\"1\",7,<b>x</b>,y,2013-01-01\n")
	f.Add("")
	s := &Service{digester: NewDigester([]byte("fuzz-pepper-fuzz-pepper-fuzz-pep")), now: func() time.Time { return time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC) }}
	schools := map[string]bool{"sch-1": true}
	f.Fuzz(func(t *testing.T, body string) {
		rows, errs := parseCSV(strings.NewReader(body))
		for _, e := range errs {
			if e.Line < 0 {
				t.Fatalf("negative line %d", e.Line)
			}
		}
		for _, r := range rows {
			st, gs, problems := s.Validate(r.card, r.line, schools)
			if len(problems) > 0 {
				continue
			}
			if !idPattern.MatchString(st.ID) || !schools[st.SchoolID] || len(st.Birthdate) != 10 {
				t.Fatalf("a bad card passed: %+v", st)
			}
			for _, v := range []string{st.FamilyName, st.GivenName, st.MiddleName, st.Class} {
				if strings.ContainsAny(v, "<>\x00") {
					t.Fatalf("markup or NUL in a stored name: %q", v)
				}
			}
			for _, g := range gs {
				if len(g.SNILSDigest) != 64 {
					t.Fatalf("guardian without a digest")
				}
			}
		}
	})
}
