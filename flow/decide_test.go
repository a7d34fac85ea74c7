package flow

import (
	"errors"
	"testing"

	"github.com/ory/fosite"
)

func TestDecide(t *testing.T) {
	current := func(ok bool) func() (bool, error) { return func() (bool, error) { return ok, nil } }
	never := func() (bool, error) { return false, errors.New("consent was read when it did not matter") }
	students := fosite.Arguments{"openid", "students"}
	tests := []struct {
		name    string
		s       situation
		want    stepKind
		wantErr string // the OAuth error of stepAuthError, or the error of stepPageError
	}{
		{"nothing linked: role and code", situation{scopes: students, consentCurrent: never}, stepRole, ""},
		{"nothing linked, prompt=none", situation{scopes: students, prompt: []string{"none"}, consentCurrent: never}, stepAuthError, "interaction_required"},
		{"nothing linked, students not asked", situation{scopes: fosite.Arguments{"openid"}, consentCurrent: current(true)}, stepFinish, ""},
		{"a child's sub-account links nothing and consents to nothing", situation{child: true, scopes: students, consentCurrent: never}, stepFinish, ""},
		{"first login: consent", situation{scopes: students, linked: 1, consentCurrent: current(false)}, stepConsent, ""},
		{"first login, prompt=none", situation{scopes: students, linked: 1, prompt: []string{"none"}, consentCurrent: current(false)}, stepAuthError, "consent_required"},
		{"consent current", situation{scopes: students, linked: 1, consentCurrent: current(true)}, stepFinish, ""},
		{"consent current, prompt=consent asks again", situation{scopes: students, linked: 1, prompt: []string{"consent"}, consentCurrent: current(true)}, stepConsent, ""},
		{"consented in this login", situation{scopes: students, linked: 1, consented: true, consentCurrent: never}, stepFinish, ""},
		{"consent cannot be read", situation{scopes: students, linked: 1, consentCurrent: func() (bool, error) { return false, errors.New("db down") }}, stepPageError, "db down"},
		{"two children, select_account: picker", situation{scopes: students, linked: 2, prompt: []string{"select_account"}, consentCurrent: current(true)}, stepPicker, ""},
		{"two children, client always picks", situation{scopes: students, linked: 2, alwaysPick: true, consentCurrent: current(true)}, stepPicker, ""},
		{"two children, no picker asked", situation{scopes: students, linked: 2, consentCurrent: current(true)}, stepFinish, ""},
		{"two children, picked already", situation{scopes: students, linked: 2, alwaysPick: true, picked: true, consentCurrent: current(true)}, stepFinish, ""},
		{"one child: no picker", situation{scopes: students, linked: 1, alwaysPick: true, consentCurrent: current(true)}, stepFinish, ""},
		{"picker without students scope", situation{scopes: fosite.Arguments{"openid"}, linked: 2, alwaysPick: true, consentCurrent: current(true)}, stepFinish, ""},
		{"picker, prompt=none", situation{scopes: students, linked: 2, alwaysPick: true, prompt: []string{"none"}, consentCurrent: current(true)}, stepAuthError, "account_selection_required"},
		{"consent before picker", situation{scopes: students, linked: 2, alwaysPick: true, consentCurrent: current(false)}, stepConsent, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decide(tc.s)
			if got != tc.want {
				t.Fatalf("step %d, want %d (err %v)", got, tc.want, err)
			}
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("no error, want %s", tc.wantErr)
			case tc.want == stepAuthError && fosite.ErrorToRFC6749Error(err).ErrorField != tc.wantErr:
				t.Fatalf("OAuth error %s, want %s", fosite.ErrorToRFC6749Error(err).ErrorField, tc.wantErr)
			case tc.want == stepPageError && err.Error() != tc.wantErr:
				t.Fatalf("error %v, want %s", err, tc.wantErr)
			}
		})
	}
}

func TestClientSet(t *testing.T) {
	for _, tc := range []struct {
		list string
		want []string
	}{
		{"", nil},
		{"kiasuo", []string{"kiasuo"}},
		{" kiasuo , asiou,,", []string{"kiasuo", "asiou"}},
	} {
		got := clientSet(tc.list)
		if len(got) != len(tc.want) {
			t.Errorf("%q: %v", tc.list, got)
		}
		for _, c := range tc.want {
			if !got[c] {
				t.Errorf("%q: %s missing from %v", tc.list, c, got)
			}
		}
		if got[""] {
			t.Errorf("%q: the empty id is in the set", tc.list)
		}
	}
}
