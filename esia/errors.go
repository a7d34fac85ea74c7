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

// ESIA's error codes the broker acts on (docs/DESIGN.md §4, docs/ESIA.md lists them all).
const (
	CodeCertificateMismatch = "ESIA-007002" // certificate and мнемоника differ, or no certificate
	CodeBadParameter        = "ESIA-007003"
	CodeRefused             = "ESIA-007004" // the person refused at ESIA
	CodeUnauthorizedClient  = "ESIA-007005" // the system may not use this method
	CodeBadScope            = "ESIA-007006"
	CodeServerError         = "ESIA-007007"
	CodeOverloaded          = "ESIA-007008"
	CodeCodeInvalid         = "ESIA-007011" // authorization code invalid or expired
	CodeMissingParameter    = "ESIA-007014"
	CodeRequestTime         = "ESIA-007015" // timestamp outside ESIA's window
	CodeRedirectURI         = "ESIA-007023"
	CodeClientSecret        = "ESIA-007053" // client_secret does not verify (answered as access_denied)
	CodeUnconfirmedAccount  = "ESIA-007055"
	CodeClientAuth          = "ESIA-008010"
)

// Class says what an ESIA error means for the person at the keyboard and for the operator.
type Class int

// The classes of ESIA errors.
const (
	// ClassUnknown is an answer the broker has no rule for: shown with its code.
	ClassUnknown Class = iota
	// ClassCancelled: the person refused at ESIA's page; they may simply try again.
	ClassCancelled
	// ClassUnconfirmed: the ESIA account is not confirmed.
	ClassUnconfirmed
	// ClassExpired: the code or refresh token is spent or expired; a new login helps.
	ClassExpired
	// ClassConfiguration: ESIA refuses the broker itself (key, certificate, мнемоника, scopes,
	// redirect URI, clock). No parent can fix it; the operator must, and every login fails
	// until then.
	ClassConfiguration
	// ClassUnavailable: ESIA is down, overloaded or could not be reached.
	ClassUnavailable
)

// CodeInfo describes one ESIA error code.
type CodeInfo struct {
	Code string
	// OAuthError is the OAuth error ESIA sends with the code: published for 007004, 007005,
	// 007014 and 007053 (access_denied, also for a wrong certificate hash), assumed for the
	// others. The class never depends on it when the code is known.
	OAuthError string
	Class      Class
	// Meaning is the code's text in ESIA's guide (Russian).
	Meaning string
	// Operator says, in English, what to check; empty when there is nothing to fix.
	Operator string
}

// Codes lists the ESIA error codes the broker knows, in order. The table is the one source of
// the broker's behaviour and of the table in docs/ESIA.md (a test keeps them equal).
func Codes() []CodeInfo {
	const check = "; run `esia-broker esia check`"
	return []CodeInfo{
		{CodeCertificateMismatch, "invalid_client", ClassConfiguration, "Несоответствие сертификата и мнемоники информационной системы или отсутствие сертификата для данной системы в ЕСИА",
			"the certificate registered at ESIA for this мнемоника is not upstream.esia.cert_file, or none is registered" + check},
		{CodeBadParameter, "invalid_request", ClassConfiguration, "В запросе отсутствует обязательный параметр, запрос включает в себя неверное значение параметра или включает параметр несколько раз",
			"ESIA rejected a parameter of the broker's request"},
		{CodeRefused, "access_denied", ClassCancelled, "Владелец ресурса или сервис авторизации отклонил запрос", ""},
		{CodeUnauthorizedClient, "unauthorized_client", ClassConfiguration, "Система-клиент не имеет права запрашивать получение маркера доступа таким методом",
			"the system is not authorised at ESIA for this method or these scopes: ask for them on ESIA's technology portal"},
		{CodeBadScope, "invalid_scope", ClassConfiguration, "Запрошенная область доступа (scope) указана неверно, неизвестна или сформирована некорректно",
			"a scope in upstream.esia.scopes is unknown or not approved for this system"},
		{CodeServerError, "server_error", ClassUnavailable, "Возникла неожиданная ошибка в работе сервиса авторизации, которая привела к невозможности выполнить запрос", ""},
		{CodeOverloaded, "temporarily_unavailable", ClassUnavailable, "Сервис авторизации в настоящее время не может выполнить запрос из-за большой нагрузки или технических работ на сервере", ""},
		{"ESIA-007009", "unsupported_response_type", ClassConfiguration, "Сервис авторизации не поддерживает получение маркера доступа этим методом",
			"ESIA does not support the method the broker used"},
		{CodeCodeInvalid, "invalid_grant", ClassExpired, "Авторизационный код или маркер обновления недействителен, просрочен, отозван или не соответствует адресу ресурса, указанному в запросе на авторизацию, или был выдан другой системе-клиенту", ""},
		{"ESIA-007012", "unsupported_grant_type", ClassConfiguration, "Тип авторизационного кода не поддерживается сервисом авторизации",
			"ESIA does not support the grant type the broker used"},
		{"ESIA-007013", "invalid_scope", ClassConfiguration, "Запрос не содержит указания на область доступа (scope)",
			"upstream.esia.scopes is empty"},
		{CodeMissingParameter, "invalid_request", ClassConfiguration, "Запрос не содержит обязательного параметра",
			"the broker's request lacked a parameter ESIA requires"},
		{CodeRequestTime, "invalid_request", ClassConfiguration, "Неверное время запроса",
			"the request's timestamp is outside ESIA's window: check the server's clock (NTP)"},
		{"ESIA-007019", "access_denied", ClassConfiguration, "Отсутствует разрешение на доступ",
			"the system has no permission for the requested access at ESIA"},
		{CodeRedirectURI, "invalid_request", ClassConfiguration, "Указанный в запросе redirect_uri отсутствует среди разрешённых для ИС",
			"upstream.esia.redirect_uri (default: issuer + /esia/callback) is not registered for this system at ESIA"},
		{"ESIA-007038", "invalid_request", ClassConfiguration, "Ошибка получения параметров из запроса",
			"ESIA could not read the broker's request"},
		{"ESIA-007046", "access_denied", ClassConfiguration, "Запрос otp невозможен, а в области доступа указано обязательное прохождение пользователем двухфакторной авторизации",
			"a scope demands two-factor login that the account cannot do: remove it from upstream.esia.scopes"},
		{CodeClientSecret, "access_denied", ClassConfiguration, "client_secret сформирован некорректно. client_secret не соответствует строке-сертификату, информационной системе или используемый сертификат не активен",
			"the client secret does not verify at ESIA: wrong key or certificate, wrong byte order (upstream.esia.signer_reverse), or the certificate is not active at ESIA" + check},
		{CodeUnconfirmedAccount, "access_denied", ClassUnconfirmed, "Вход в систему осуществляется с неподтверждённой учётной записью", ""},
		{"ESIA-007060", "invalid_request", ClassConfiguration, "Значение параметра roles в запросе указано неверно", "ESIA rejected the roles parameter"},
		{"ESIA-007061", "invalid_request", ClassConfiguration, "Значение параметра obj_type в запросе указано неверно", "ESIA rejected the obj_type parameter"},
		{"ESIA-007062", "invalid_request", ClassConfiguration, "Тип или роль пользователя в запросе указана неверно", "ESIA rejected the user type or role"},
		{"ESIA-007194", "access_denied", ClassConfiguration, "Запрос области доступа для организации, сотрудником которой пользователь не является",
			"an organisation scope was requested (scope_org, which the broker does not send: check a proxy or gateway in front of ESIA)"},
		{CodeClientAuth, "invalid_client", ClassConfiguration, "Не удалось произвести аутентификацию системы-клиента",
			"ESIA could not authenticate the system at the token endpoint: key, certificate or мнемоника" + check},
	}
}

// LookupCode returns what the broker knows of an ESIA code.
func LookupCode(code string) (CodeInfo, bool) {
	for _, c := range Codes() {
		if c.Code == code {
			return c, true
		}
	}
	return CodeInfo{}, false
}

// Classify says what err means. ESIA's code decides first: ESIA answers a wrong client secret
// with access_denied (ESIA-007053), the same OAuth error as a person's refusal (ESIA-007004).
// Without a code the OAuth error decides.
func Classify(err error) Class {
	if errors.Is(err, ErrUnavailable) {
		return ClassUnavailable
	}
	var e *Error
	if !errors.As(err, &e) {
		return ClassUnknown
	}
	if e.Code != "" {
		if c, ok := LookupCode(e.Code); ok {
			return c.Class
		}
		return ClassUnknown
	}
	switch e.OAuthError {
	case "access_denied":
		return ClassCancelled
	case "invalid_grant":
		return ClassExpired
	case "server_error", "temporarily_unavailable":
		return ClassUnavailable
	case "invalid_client", "unauthorized_client", "invalid_scope", "invalid_request", "unsupported_response_type", "unsupported_grant_type":
		return ClassConfiguration
	}
	return ClassUnknown
}

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

// The kinds of ErrUnavailable (wrapped beside it), for operators' metrics.
var (
	ErrTimeout    = errors.New("esia: timed out")
	ErrConnection = errors.New("esia: connection failed")
	ErrServer     = errors.New("esia: server error")
)

// Result names what a call to ESIA came to, from a small fixed set (a metric label): ok,
// timeout, connection, http_5xx, unavailable, bad_response, esia_error (ESIA answered an error;
// its code is ErrorCode), or other.
func Result(err error) string {
	var e *Error
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrTimeout):
		return "timeout"
	case errors.Is(err, ErrConnection):
		return "connection"
	case errors.Is(err, ErrServer):
		return "http_5xx"
	case errors.Is(err, ErrUnavailable):
		return "unavailable"
	case errors.Is(err, ErrBadResponse), errors.Is(err, ErrStateMismatch):
		return "bad_response"
	case errors.As(err, &e):
		return "esia_error"
	}
	return "other"
}

// ErrBadResponse wraps answers that are not what ESIA's protocol says: garbage, wrong JSON.
var ErrBadResponse = errors.New("esia: malformed response")
