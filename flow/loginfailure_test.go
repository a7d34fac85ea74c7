package flow

import (
	"errors"
	"fmt"
	"testing"

	"github.com/esia-broker/esia-broker/esia"
	"github.com/esia-broker/esia-broker/upstream"
)

// TestLoginFailure: the metric's result of a failed upstream login, by the connector's kind of
// failure (any connector), or by ESIA's code when the kind does not say.
func TestLoginFailure(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"a person cancels at a generic OpenID provider", &upstream.Error{Kind: upstream.Cancelled, Err: errors.New("access_denied")}, "cancelled"},
		{"unconfirmed", &upstream.Error{Kind: upstream.Unconfirmed}, "unconfirmed"},
		{"expired", &upstream.Error{Kind: upstream.Expired}, "expired"},
		{"misconfigured", &upstream.Error{Kind: upstream.Misconfigured, Code: "ESIA-007053"}, "upstream_refused"},
		{"unavailable", fmt.Errorf("callback: %w", &upstream.Error{Kind: upstream.Unavailable}), "upstream_unavailable"},
		{"a configuration refusal no probe confirmed keeps ESIA's class",
			&upstream.Error{Kind: upstream.RefusedUnverified, Code: "ESIA-007053", Err: esia.NewError("access_denied", "ESIA-007053: wrong secret", 0)}, "upstream_refused"},
		{"a bad response", &upstream.Error{Kind: upstream.BadResponse, Err: errors.New("bad signature")}, "upstream_error"},
		{"not an upstream error", errors.New("boom"), "upstream_error"},
	}
	for _, tc := range tests {
		if got := loginFailure(tc.err); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
