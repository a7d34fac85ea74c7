package flow

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/invites"
	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/pages"
	"github.com/esia-broker/esia-broker/storage"
)

func TestRedeemRefusals(t *testing.T) {
	tests := []struct {
		err     error
		result  string
		status  int
		message string
	}{
		{storage.ErrInviteUsed, "used", http.StatusBadRequest, pages.CodeUsed},
		{storage.ErrInviteExpired, "expired", http.StatusBadRequest, pages.CodeExpired},
		{storage.ErrInviteRevoked, "revoked", http.StatusBadRequest, pages.CodeRevoked},
		{storage.ErrInviteWrongUse, "wrong_role", http.StatusBadRequest, pages.CodeOtherRole},
		{invites.ErrInvalidCode, "wrong_code", http.StatusBadRequest, pages.CodeWrong},
		{linking.ErrAlreadyLinked, "already_linked", http.StatusBadRequest, pages.CodeAlreadyLinked},
		{linking.ErrStudentLeft, "student_left", http.StatusBadRequest, pages.CodeStudentLeft},
		{linking.ErrChildAccount, "not_allowed", http.StatusForbidden, pages.CodeChildAccount},
		{linking.ErrNotAdult, "not_allowed", http.StatusForbidden, pages.CodeNotAdult},
		{linking.ErrNoBirthdate, "not_allowed", http.StatusForbidden, pages.CodeNoBirthdate},
		{linking.ErrNotThisStudent, "not_allowed", http.StatusForbidden, pages.CodeNotThisStudent},
	}
	for _, tc := range tests {
		wrapped := fmt.Errorf("redeem: %w", tc.err)
		rf, ok := redeemRefusalOf(wrapped)
		if !ok || rf.status != tc.status || rf.message != tc.message {
			t.Errorf("%v: %+v %v", tc.err, rf, ok)
		}
		if got := redeemResult(wrapped); got != tc.result {
			t.Errorf("%v: result %s, want %s", tc.err, got, tc.result)
		}
	}
	if _, ok := redeemRefusalOf(errors.New("database down")); ok {
		t.Error("a failure was taken for a refusal of the code")
	}
	for err, want := range map[error]string{nil: "ok", &invites.LockedError{Until: time.Now()}: "locked", errors.New("database down"): "error"} {
		if got := redeemResult(err); got != want {
			t.Errorf("%v: %s, want %s", err, got, want)
		}
	}
}
