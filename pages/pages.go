// Package pages holds what people see: the page templates, the stylesheet and icons, one type
// per page with the data its template reads, and (texts.go) every Russian text the broker's
// areas show.
package pages

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"time"

	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/upstream"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Static is the pages' stylesheet, script and icons, served under /static/.
func Static() fs.FS {
	s, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic("pages: the embedded static folder is missing: " + err.Error())
	}
	return s
}

// Set is the parsed pages with the region's brand.
type Set struct {
	pages map[string]*template.Template
	brand Brand
}

// Parse parses every page; brand is shown on each.
func Parse(brand Brand) (*Set, error) {
	s := &Set{pages: map[string]*template.Template{}, brand: brand}
	for name := range titles {
		t, err := template.ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("parse page %s: %w", name, err)
		}
		s.pages[name] = t
	}
	return s, nil
}

// Brand is the region's presentation on every page.
func (s *Set) Brand() Brand { return s.brand }

// Render writes page p with status. When the page cannot be drawn nothing is written and the
// error is returned.
func (s *Set) Render(w http.ResponseWriter, status int, p Page) error {
	name := p.template()
	t, ok := s.pages[name]
	if !ok {
		return fmt.Errorf("no page %q", name)
	}
	f := p.frame()
	f.Brand = s.brand
	if f.Title == "" {
		f.Title = titles[name]
	}
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", p); err != nil {
		return fmt.Errorf("render page %s: %w", name, err)
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
	return nil
}

// Internal is the page of a failure the person cannot act on (logged, never shown).
var Internal = &UserError{Status: http.StatusInternalServerError, Title: "Что-то пошло не так", Message: "На сервере произошла ошибка. Попробуйте ещё раз через несколько минут; если ошибка повторится, сообщите в службу поддержки код обращения."}

// Unavailable is the page shown while the database or another dependency cannot be reached.
var Unavailable = &UserError{Status: http.StatusServiceUnavailable, Title: "Сервис временно недоступен",
	Message: "Вход сейчас недоступен из-за технических работ или сбоя. Подождите минуту и обновите страницу — всё, что вы уже сделали, сохранено или будет начато заново безопасно."}

// Connector is a way to log in on the start page.
type Connector struct{ ID, Name string }

// Brand is the region's presentation on every page.
type Brand struct {
	Name, SupportPhone, SupportEmail, SupportURL string
	Logo                                         bool
}

// Diary is a diary on the start page: its name and home page.
type Diary struct{ Name, URL string }

// Child is a child under 14 on the parent's account page: how the child logs in.
type Child struct {
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

// HasForm tells whether the child's section shows the form for action (as account.html does).
func (c Child) HasForm(action string) bool {
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
func (c Child) Invalid(action, field string) bool {
	return c.Error != "" && c.ErrorAction == action && c.ErrorField == field
}

// FormError tells whether the form for action was refused as a whole.
func (c Child) FormError(action string) bool {
	return c.Error != "" && c.ErrorAction == action && c.ErrorField == ""
}

// Device is a connected app on the account page.
type Device struct{ ID, Client, Connected, LastUsed string }

// Student is a linked student on a page.
type Student struct {
	ID, Name, Class string
	// Self: the account is this student's own (a student of 14 or over, or a child with an
	// own ESIA account); otherwise the account is a parent's.
	Self bool
}

// UserError is an error with a Russian title and message for the page, and an HTTP status.
type UserError struct {
	Status  int
	Title   string
	Message string
	Err     error
	// Retry is set by the broker: where «Попробовать снова» leads.
	Retry string
	// Operator, when set, is a fault only the operator can fix (ESIA refuses the broker's
	// configuration): it is logged at error level, in English, with OperatorCode.
	Operator     string
	OperatorCode string
	// Upstream names the connector of a failed login, for the log line.
	Upstream string
	// Calm: the page explains a state of the person's own (not an error of the service),
	// shown as plain text rather than a red alert; HelpURL and HelpText are a link onwards.
	Calm              bool
	HelpURL, HelpText string
}

// Error is the title, with the cause when there is one (for the log).
func (e *UserError) Error() string {
	if e.Err != nil {
		return e.Title + ": " + e.Err.Error()
	}
	return e.Title
}

// Unwrap gives the cause.
func (e *UserError) Unwrap() error { return e.Err }

// Unconfirmed is the page of an upstream account that is not confirmed.
func Unconfirmed(err error) *UserError {
	return &UserError{Status: http.StatusForbidden, Title: "Учётная запись Госуслуг не подтверждена",
		Message: "В электронный дневник входят только с подтверждённой учётной записью Госуслуг: так данные детей защищены от посторонних. " +
			"Подтвердить личность можно в МФЦ, онлайн через банк или на Почте России, а затем войти снова.",
		Calm: true, HelpURL: "https://www.gosuslugi.ru/", HelpText: "Открыть Госуслуги (в профиле — «Подтвердить учётную запись»)", Err: err}
}

// Upstream is the page a parent can act on for a failed upstream login of connector
// connID: ESIA's ("esia") names Госуслуги, another connector «сервис входа». Anything that is
// not an *upstream.Error is returned as it is.
func Upstream(connID string, err error) error {
	var e *upstream.Error
	if !errors.As(err, &e) {
		return err
	}
	shown := ""
	if e.Code != "" {
		shown = " (код " + e.Code + ")"
	}
	if connID != "esia" {
		switch e.Kind {
		case upstream.Cancelled:
			return &UserError{Status: http.StatusBadRequest, Title: "Вход отменён", Message: "Вы отменили вход. Чтобы открыть дневник, войдите ещё раз.", Err: err}
		case upstream.Unconfirmed:
			return Unconfirmed(err)
		}
		return &UserError{Status: http.StatusBadGateway, Title: "Сервис входа отклонил вход", Message: "Сервис входа отклонил запрос. Попробуйте ещё раз; если ошибка повторится, сообщите в службу поддержки.", Err: err}
	}
	switch e.Kind {
	case upstream.Cancelled:
		return &UserError{Status: http.StatusBadRequest, Title: "Вход отменён", Err: err,
			Message: "Вы отменили вход на Госуслугах. Чтобы открыть дневник, войдите ещё раз."}
	case upstream.Unconfirmed:
		return Unconfirmed(err)
	case upstream.Expired:
		return &UserError{Status: http.StatusBadRequest, Title: "Время входа истекло", Err: err,
			Message: "Госуслуги не приняли код входа: он устарел или уже был использован. Войдите ещё раз."}
	case upstream.Misconfigured:
		return &UserError{Status: http.StatusServiceUnavailable, Title: "Сервис временно недоступен", Err: err,
			Operator: e.Operator, OperatorCode: e.Code,
			Message: "Вход через Госуслуги сейчас не работает: Госуслуги не приняли запрос электронного дневника" + shown +
				". Это не ошибка в ваших действиях, и повторный вход сейчас не поможет. Ошибка записана для администраторов; попробуйте войти позже."}
	case upstream.Unavailable:
		return &UserError{Status: http.StatusServiceUnavailable, Title: "Госуслуги не отвечают", Err: err,
			Message: "Сервис Госуслуг сейчас недоступен или отвечает слишком долго. Попробуйте войти через несколько минут."}
	case upstream.RefusedUnverified:
		return &UserError{Status: http.StatusBadGateway, Title: "Госуслуги отклонили вход", Err: err,
			Message: "Госуслуги не приняли этот вход" + shown + ". Попробуйте войти ещё раз; если ошибка повторится, сообщите в службу поддержки."}
	case upstream.Refused:
		return &UserError{Status: http.StatusBadGateway, Title: "Госуслуги отклонили вход", Err: err,
			Message: "Госуслуги отклонили запрос на вход" + shown + ". Попробуйте ещё раз; если ошибка повторится, сообщите в службу поддержки этот код."}
	}
	return &UserError{Status: http.StatusBadGateway, Title: "Госуслуги прислали неверный ответ", Err: err,
		Message: "Не удалось завершить вход: ответ Госуслуг не прошёл проверку. Попробуйте ещё раз; если ошибка повторится, сообщите в службу поддержки."}
}

// Students are the linked students as pages show them.
func Students(linked []storage.LinkedStudent) []Student {
	out := make([]Student, 0, len(linked))
	for _, l := range linked {
		out = append(out, Student{ID: l.StudentID, Name: storage.FullName(l.Family, l.Given, l.Middle), Class: l.Class, Self: l.Relation == "self"})
	}
	return out
}

// Moscow is the time zone of the times pages show (lock-outs, devices).
var Moscow = time.FixedZone("MSK", 3*3600)

// ExpiredLogin is the page of a login request that is gone: expired, used, or never made.
func ExpiredLogin(err error) error {
	return &UserError{Status: http.StatusBadRequest, Title: "Время входа истекло", Message: "Страница входа устарела или уже была использована. Вернитесь в электронный дневник и нажмите «Войти» ещё раз.", Err: err}
}
