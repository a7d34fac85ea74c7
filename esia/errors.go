package esia

import (
	"errors"
	"fmt"
	"regexp"
)

// Error is an error ESIA reported, with its code (ESIA-0070xx) when it gave one.
type Error struct {
	// Code is like "ESIA-007014"; empty when ESIA gave none.
	Code string
	// OAuthError is the OAuth error field (invalid_request, access_denied, …).
	OAuthError  string
	Description string
	HTTPStatus  int
}

func (e *Error) Error() string {
	s := "esia"
	if e.HTTPStatus != 0 {
		s += fmt.Sprintf(" (HTTP %d)", e.HTTPStatus)
	}
	if e.OAuthError != "" {
		s += ": " + e.OAuthError
	}
	if e.Description != "" {
		s += ": " + e.Description
	}
	return s
}

// The codes that ESIA returns most (DESIGN §4).
const (
	CodeCertificateMismatch = "ESIA-007002" // certificate and client id differ
	CodeUnknownClient       = "ESIA-007005"
	CodeBadScope            = "ESIA-007006"
	CodeCodeInvalid         = "ESIA-007011" // authorization code invalid or expired
	CodeMissingParameter    = "ESIA-007014"
	CodeRequestTime         = "ESIA-007015" // timestamp outside ESIA's window
	CodeRedirectURI         = "ESIA-007023"
	CodeClientSecret        = "ESIA-007053"
	CodeUnconfirmedAccount  = "ESIA-007055"
)

var codePattern = regexp.MustCompile(`ESIA-\d{6}`)

// NewError builds an Error, taking the ESIA code from the description when it carries one.
func NewError(oauthError, description string, status int) *Error {
	return &Error{Code: codePattern.FindString(description), OAuthError: oauthError, Description: description, HTTPStatus: status}
}

// ErrorCode returns the ESIA code of err, or "".
func ErrorCode(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// ErrStateMismatch is returned when the token endpoint's echoed state differs from the one sent.
var ErrStateMismatch = errors.New("esia: the token response's state does not match the request")

// ErrUnavailable wraps network failures, timeouts and 5xx answers: ESIA could not be reached.
var ErrUnavailable = errors.New("esia: service unavailable")

// ErrBadResponse wraps answers that are not what ESIA's protocol says: garbage, wrong JSON.
var ErrBadResponse = errors.New("esia: malformed response")
