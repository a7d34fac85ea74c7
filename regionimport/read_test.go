package regionimport

import (
	"strings"
	"testing"
	"time"
)

// TestReadImportFile: what the file reader takes and refuses, file-wide (an error) or by line.
func TestReadImportFile(t *testing.T) {
	cols := []string{"a", "b", "c"}
	req := []string{"a", "b"}
	for _, tc := range []struct {
		name, body string
		rows       int
		fileErr    string // the file refused
		rowErrs    string // problems by line, as printed
	}{
		{"csv", "a,b,c\n1,2,3\n4,5,\n", 2, "", ""},
		{"csv with a BOM and spaces in the header", "\ufeff A ,b\n1,2\n", 1, "", ""},
		{"a quoted comma", "a,b\n\"1,5\",2\n", 1, "", ""},
		{"unknown column", "a,b,x\n1,2,3\n", 0, `unknown column "x"`, ""},
		{"a column twice", "a,b,a\n1,2,3\n", 0, `column "a" appears twice`, ""},
		{"a required column missing", "a,c\n1,2\n", 0, `missing column "b"`, ""},
		{"too many fields", "a,b\n1,2,3\n4,5\n", 1, "", "line 2: has 3 fields, the header 2"},
		{"a NUL in a value", "a,b\n1,\"x\x00y\"\n", 0, "", "line 2: b: not valid text"},
		{"json lines", "{\"a\":\"1\",\"b\":\"2\"}\n\n{\"a\":\"3\",\"b\":\"4\",\"c\":\"5\"}\n", 2, "", ""},
		{"json: a number", "{\"a\":1,\"b\":\"2\"}\n", 0, "", "line 1: a: must be a string"},
		{"json: an unknown field", "{\"a\":\"1\",\"z\":\"2\"}\n", 0, "", "line 1: z: unknown field"},
		{"json: a key twice", "{\"a\":\"1\",\"a\":\"2\"}\n", 0, "", `line 1: field "a" appears twice`},
		{"a JSON array is no JSON lines (read as CSV)", "[1,2]\n", 0, `unknown column "[1"`, ""},
		{"json: an array on a line", "{\"a\":\"1\",\"b\":\"2\"}\n[1,2]\n", 1, "", "line 2: not one JSON object"},
		{"json: two objects", "{\"a\":\"1\"}{\"a\":\"2\"}\n", 0, "", "line 1: not one JSON object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rows, errs, err := readImportFile(strings.NewReader(tc.body), "", cols, req)
			if tc.fileErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.fileErr) {
					t.Fatalf("file error %v, want %q", err, tc.fileErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) != tc.rows {
				t.Errorf("%d rows, want %d", len(rows), tc.rows)
			}
			var got []string
			for _, e := range errs {
				got = append(got, e.String())
			}
			if all := strings.Join(got, "; "); (tc.rowErrs == "") != (all == "") || !strings.Contains(all, tc.rowErrs) {
				t.Errorf("problems %q, want %q", all, tc.rowErrs)
			}
		})
	}
	// The cap counts bad rows too.
	var b strings.Builder
	b.WriteString("a,b\n")
	for range 10 {
		b.WriteString("1,2,3\n")
	}
	if _, _, err := readImportFileN(strings.NewReader(b.String()), "", cols, req, 5); err == nil || !strings.Contains(err.Error(), "more than 5 rows") {
		t.Errorf("a file of more bad rows than the cap: %v", err)
	}
}

func TestParseLinkedAt(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"2020-09-01", true},
		{"01.09.2020", true},
		{"2020-09-01T10:00:00+03:00", true},
		{"2026-12-03", true},  // a day ahead: time zones
		{"2026-12-04", false}, // the future
		{"1999-12-31", false},
		{"2000-01-01", true},
		{"2020-02-30", false},
		{"1.9.2020", false},
		{"", false},
	} {
		if _, err := parseLinkedAt(tc.in, now); (err == nil) != tc.ok {
			t.Errorf("%q: %v, want ok=%v", tc.in, err, tc.ok)
		}
	}
}
