package linking

import (
	"strings"
	"testing"
	"time"
)

// TestNamesRefuseInvisibleCharacters: bidi overrides and isolates and zero-width characters
// make a name read as another on a page or a printed slip; the roster and the API refuse them.
func TestNamesRefuseInvisibleCharacters(t *testing.T) {
	s := &Service{digester: NewDigester([]byte("test-pepper-test-pepper-test-pep")), now: func() time.Time { return time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC) }}
	schools := map[string]bool{"sch-1": true}
	for _, tc := range []struct {
		name, family string
		ok           bool
	}{
		{"plain", "Иванов", true},
		{"hyphenated", "Римская-Корсакова", true},
		{"right-to-left override", "Иван\u202Eвон", false},
		{"left-to-right isolate", "Иванов\u2066", false},
		{"zero-width space", "Ива\u200Bнов", false},
		{"zero-width joiner", "Ива\u200Dнов", false},
		{"word joiner", "Ива\u2060нов", false},
		{"byte order mark", "\uFEFFИванов", false},
		{"control character", "Ива\x07нов", false},
		{"line separator", "Ива\u2028нов", false},
		{"Hangul filler only", "\u3164\u3164", false},
		{"braille blank", "\u2800", false},
		{"private use", "Ива\ue000нов", false},
		{"noncharacter", "Ива\ufffeнов", false},
		{"Khmer inherent vowel", "Ива\u17b4нов", false},
		{"stacked marks", "Иван" + strings.Repeat("\u0301", 20), false},
		{"one combining mark", "Ива\u0301нов", true},
		{"apostrophe and dot", "Д'Артаньян Ж.", true},
		{"only punctuation", "- . -", false},
	} {
		_, _, probs := s.Validate(Card{StudentID: "s-1", SchoolID: "sch-1", Class: "1А", FamilyName: tc.family, GivenName: "Пётр", Birthdate: "2015-01-01"}, 1, schools)
		if got := len(probs) == 0; got != tc.ok {
			t.Errorf("%s: accepted=%v, want %v (%v)", tc.name, got, tc.ok, probs)
		}
	}
}
