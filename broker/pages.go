package broker

import (
	"bytes"
	"errors"
	"fmt"
	"html/template"
	"net/http"

	"github.com/esia-broker/esia-broker/esia"
)

var errInternal = &UserError{Status: http.StatusInternalServerError, Title: "Что-то пошло не так", Message: "На сервере произошла ошибка. Попробуйте ещё раз через несколько минут; если ошибка повторится, сообщите в службу поддержки код обращения."}

func parsePages() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range []string{"home", "start", "error", "logout", "logged_out", "role", "code", "code_done", "consent", "picker", "account", "child_login", "key", "intent"} {
		t, err := template.ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("parse page %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

type connectorLink struct{ ID, Name string }

// brand is the region's presentation on every page.
type brand struct {
	Name, SupportPhone, SupportEmail, SupportURL string
	Logo                                         bool
}

type pageData struct {
	Title      string
	Brand      brand
	Message    string
	Retry      string
	Calm       bool
	HelpURL    string
	HelpText   string
	RequestID  string
	LoginID    string
	CSRF       string
	Hidden     map[string]string
	Connectors []connectorLink
	// Linking pages.
	Role       string
	RoleValue  string
	ForStudent bool
	Code       string
	FieldError string
	Students   []studentView
	ClientName string
	Items      []string
	Version    string
	ReturnURI  string
	// Frames are the diaries' front-channel logout URIs the «Вы вышли» page loads.
	Frames []string
	// Refresh is where the page goes on its own after a moment (meta refresh).
	Refresh    string
	Notice     string
	Children   []childView
	Devices    []deviceView
	ChildLogin bool
	// SubAccount: the account page of a child's login-and-password sub-account (it links
	// nothing: no code to enter).
	SubAccount bool
	// Adult: the account may link a child as a parent (the parent-code offers show).
	Adult bool
	// Diaries are the region's diaries on the start page.
	Diaries []diaryLink
}

// diaryLink is a diary on the start page: its name and home page.
type diaryLink struct{ Name, URL string }

// childView is a child under 14 on the parent's account page: how the child logs in.
type childView struct {
	ID, Name, Login string
	// OwnESIA: the child logs in with an own ESIA account (an active self link).
	OwnESIA bool
	// Disabled: the sub-account exists but is disabled (moved to ESIA, or by an admin).
	Disabled bool
	// Passwords: the region allows login-and-password sub-accounts.
	Passwords bool
	// Error is a refusal of this child's form (ErrorAction), at ErrorField ("login",
	// "password" or "" for the form); TypedLogin is what was typed, kept.
	Error, ErrorField, ErrorAction, TypedLogin string
}

// hasForm tells whether the child's section shows the form for action (as account.html does).
func (c childView) hasForm(action string) bool {
	active := c.Login != "" && !c.Disabled
	switch action {
	case "create":
		return c.Login == "" && c.Passwords && !c.OwnESIA
	case "reset":
		return active && c.Passwords
	case "move":
		return active && c.OwnESIA
	}
	return false
}

// Invalid tells whether the field of the form for action is the one refused.
func (c childView) Invalid(action, field string) bool {
	return c.Error != "" && c.ErrorAction == action && c.ErrorField == field
}

// FormError tells whether the form for action was refused as a whole.
func (c childView) FormError(action string) bool {
	return c.Error != "" && c.ErrorAction == action && c.ErrorField == ""
}

type deviceView struct{ ID, Client, Connected, LastUsed string }

type studentView struct {
	ID, Name, Class string
	// Self: the account is this student's own (a student of 14 or over, or a child with an
	// own ESIA account); otherwise the account is a parent's.
	Self bool
}

// Own are the linked students the account is itself: a student is spoken to as a student.
func (d pageData) Own() []studentView { return d.students(true) }

// Kids are the linked students the account is a parent of.
func (d pageData) Kids() []studentView { return d.students(false) }

func (d pageData) students(self bool) []studentView {
	var out []studentView
	for _, s := range d.Students {
		if s.Self == self {
			out = append(out, s)
		}
	}
	return out
}

func (b *Broker) render(w http.ResponseWriter, r *http.Request, status int, page string, d pageData) {
	d.Brand = b.brand
	var buf bytes.Buffer
	if err := b.pages[page].ExecuteTemplate(&buf, "layout", d); err != nil {
		b.logger(r.Context()).Error("render page", "page", page, "err", err)
		http.Error(w, "Внутренняя ошибка", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// renderError shows err on the error page: a *UserError as it says, anything else as a generic
// server error (logged, never shown).
func (b *Broker) renderError(w http.ResponseWriter, r *http.Request, err error) {
	var ue *UserError
	switch {
	case !errors.As(err, &ue) && isUnavailable(err):
		b.logger(r.Context()).Warn("dependency unavailable", "err", err)
		w.Header().Set("Retry-After", "30")
		ue = errUnavailablePage
	case ue == nil:
		b.logger(r.Context()).Error("request failed", "err", err)
		ue = errInternal
	case ue.Operator != "":
		b.metrics.upstreamRefusals.WithLabelValues(ue.OperatorCode).Inc()
		b.logger(r.Context()).Error("upstream refuses the broker's configuration", "upstream", ue.Upstream, "esia_code", ue.OperatorCode, "fix", ue.Operator, "err", ue.Err)
	case ue.Err != nil || ue.Upstream != "":
		// A failed login's line: the request id (from the logger), the upstream and ESIA's code,
		// the status and the error in English; never the person.
		b.logger(r.Context()).Warn("request refused", "status", ue.Status, "upstream", ue.Upstream, "esia_code", esia.ErrorCode(ue.Err), "err", ue.Err)
	}
	status := ue.Status
	if status == 0 {
		status = http.StatusBadRequest
	}
	b.render(w, r, status, "error", pageData{Title: ue.Title, Message: ue.Message, Retry: ue.Retry, RequestID: requestID(r.Context()), Calm: ue.Calm, HelpURL: ue.HelpURL, HelpText: ue.HelpText})
}
