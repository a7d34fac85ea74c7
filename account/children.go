package account

import (
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/esia-broker/esia-broker/flow"
	"github.com/esia-broker/esia-broker/invites"
	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/pages"
	"github.com/esia-broker/esia-broker/provider"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/web"
	"github.com/google/uuid"
)

// errPasswordsOff is the page of a password path in a region that allows only ESIA.
var errPasswordsOff = &pages.UserError{Status: http.StatusForbidden, Title: "Вход по логину и паролю отключён",
	Message: "В этом регионе в электронный дневник входят только через Госуслуги. Ребёнку младше 14 лет родитель может зарегистрировать учётную запись на Госуслугах (в разделе «Дети» своей учётной записи); с ней ребёнок входит кнопкой «Войти через Госуслуги»."}

func (h *Handler) childLoginPage(w http.ResponseWriter, r *http.Request) {
	if !h.cfg.Children.PasswordAccounts {
		h.RenderError(w, r, errPasswordsOff)
		return
	}
	if _, err := h.store.LoginRequest(r.Context(), r.URL.Query().Get("login")); err != nil {
		h.RenderError(w, r, pages.ExpiredLogin(err))
		return
	}
	h.Render(w, r, http.StatusOK, "child_login", pages.Data{Title: "Вход для детей до 14 лет", LoginID: r.URL.Query().Get("login"), CSRF: h.CSRFToken(h.BrowserID(w, r))})
}

// childLogin checks a child's login and password and starts the child's session.
func (h *Handler) childLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if h.CSRFRefused(w, r) {
		return
	}
	if !h.cfg.Children.PasswordAccounts {
		h.RenderError(w, r, errPasswordsOff)
		return
	}
	lr, err := h.store.LoginRequest(ctx, r.PostFormValue("login_request"))
	if err != nil {
		h.RenderError(w, r, pages.ExpiredLogin(err))
		return
	}
	if !h.SameBrowser(r, lr.BrowserHash) {
		h.RenderError(w, r, &pages.UserError{Status: http.StatusForbidden, Title: "Вход не завершён", Message: "Вход был начат в другом окне или браузере. Вернитесь в электронный дневник и войдите снова."})
		return
	}
	login := r.PostFormValue("login")
	if len(login) > 64 {
		login = login[:64]
	}
	again := func(status int, msg string) {
		h.Render(w, r, status, "child_login", pages.Data{Title: "Вход для детей до 14 лет", LoginID: lr.ID, CSRF: h.CSRFToken(h.Browser(r)), Code: login, FieldError: msg})
	}
	norm, _ := linking.LoginKey(login)
	accountID, err := h.linker.ChildLogin(ctx, login, r.PostFormValue("password"), h.ClientIP(r), h.KnownDevice(r, norm))
	if err != nil && !web.IsUnavailable(err) {
		// A failed login's line: the request id (from the logger), the upstream and why; never
		// the login or the password.
		h.Logger(ctx).Warn("login refused", "upstream", "child", "result", childResult(err))
	}
	var le *linking.ChildLockedError
	switch {
	case errors.As(err, &le):
		h.Metrics.Logins.WithLabelValues("child", "locked").Inc()
		h.Metrics.Lockouts.WithLabelValues("child").Inc()
		w.Header().Set("Retry-After", strconv.Itoa(int(time.Until(le.Until).Seconds())+1))
		again(http.StatusTooManyRequests, "Слишком много неудачных попыток. Попробуйте снова после "+le.Until.In(pages.Moscow).Format("15:04")+" (по московскому времени) или попросите родителя сменить пароль.")
		return
	case errors.Is(err, linking.ErrBusy):
		h.Metrics.Logins.WithLabelValues("child", "busy").Inc()
		h.RenderBusy(w, r)
		return
	case errors.Is(err, linking.ErrBadCredentials):
		h.Metrics.Logins.WithLabelValues("child", "bad_password").Inc()
		again(http.StatusUnauthorized, "Неверный логин или пароль.")
		return
	case errors.Is(err, linking.ErrChildTooOld):
		h.RenderError(w, r, &pages.UserError{Status: http.StatusForbidden, Title: "Входите через Госуслуги",
			Message: "С 14 лет вход в электронный дневник — только через Госуслуги, с собственной подтверждённой учётной записью. Привязка родителя к дневнику сохраняется."})
		return
	case errors.Is(err, linking.ErrPasswordAccountsOff):
		h.RenderError(w, r, errPasswordsOff)
		return
	case errors.Is(err, linking.ErrChildDisabled):
		h.RenderError(w, r, &pages.UserError{Status: http.StatusForbidden, Title: "Вход по логину отключён",
			Message: "Вход с этим логином отключён. Если у тебя есть своя учётная запись на Госуслугах, входи кнопкой «Войти через Госуслуги»; иначе обратись к родителю."})
		return
	case errors.Is(err, linking.ErrNoGuardianLeft), errors.Is(err, linking.ErrStudentLeft):
		h.RenderError(w, r, &pages.UserError{Status: http.StatusForbidden, Title: "Учётная запись отключена",
			Message: "Вход с этим логином отключён: обучающийся выбыл из школы или к нему больше не привязан ни один родитель. Обратитесь к родителю или в школу."})
		return
	case err != nil:
		h.RenderError(w, r, err)
		return
	}
	if old := h.SessionCookie(r); old != "" {
		_ = h.store.DeleteBrowserSession(ctx, web.HashToken(old))
	}
	raw := web.RandomToken()
	browser := h.NewBrowserValue()
	bs := &storage.BrowserSession{IDHash: web.HashToken(raw), AccountID: accountID, AuthTime: time.Now().UTC(), ACR: "child", ExpiresAt: time.Now().Add(h.cfg.Session.Lifespan)}
	err = h.store.InTx(ctx, func(ctx context.Context) error {
		if err := h.store.CreateBrowserSession(ctx, bs, []string{"pwd"}); err != nil {
			return err
		}
		_, err := h.store.CompleteLoginRequest(ctx, lr.ID, bs.IDHash, web.HashToken(browser))
		return err
	})
	if err != nil {
		h.RenderError(w, r, pages.ExpiredLogin(err))
		return
	}
	h.Metrics.Logins.WithLabelValues("child", "ok").Inc()
	h.RememberDevice(w, norm)
	h.SetCookie(w, h.cfg.Session.CookieName, raw, h.cfg.Session.Lifespan)
	h.SetBrowser(w, r, browser)
	if flow.AccountOnly(lr) {
		// A login from the start page: back to it, where the region's diaries are listed.
		_, _ = h.store.ConsumeLoginRequest(ctx, lr.ID)
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/oauth2/authorize/resume?login="+url.QueryEscape(lr.ID), http.StatusSeeOther)
}

// renderAccount shows the account page with an optional notice or error.
func (h *Handler) renderAccount(w http.ResponseWriter, r *http.Request, account *storage.Account, status int, notice, fieldErr string) {
	h.renderAccountForm(w, r, account, status, notice, fieldErr, nil)
}

// childFormError is a refusal of one child's form: shown in that form, at its field, with what
// was typed kept.
type childFormError struct {
	Student, Action string
	// Field is "login" or "password", or "" for the form as a whole.
	Field, Message, Login string
}

// childErrorField tells which field of the child's form a refusal is about.
func childErrorField(err error) string {
	switch {
	case errors.Is(err, linking.ErrLoginTaken), errors.Is(err, linking.ErrLoginFormat):
		return "login"
	case errors.Is(err, linking.ErrPasswordShort), errors.Is(err, linking.ErrPasswordLong),
		errors.Is(err, linking.ErrPasswordIsLogin), errors.Is(err, linking.ErrPasswordCommon), errors.Is(err, linking.ErrPasswordControl):
		return "password"
	}
	return ""
}

// renderAccountForm is renderAccount with a refusal shown in one child's form.
func (h *Handler) renderAccountForm(w http.ResponseWriter, r *http.Request, account *storage.Account, status int, notice, fieldErr string, fe *childFormError) {
	ctx := r.Context()
	linked, err := h.store.LinkedStudents(ctx, account.ID)
	if err != nil {
		h.RenderError(w, r, err)
		return
	}
	students := pages.Students(linked)
	if account.Kind == "child" {
		// A sub-account holds no links: it is its student card, and links nothing more.
		c, err := h.store.ChildByAccount(ctx, account.ID)
		if err != nil {
			h.RenderError(w, r, err)
			return
		}
		st, err := h.store.Student(ctx, c.StudentID)
		if err != nil {
			h.RenderError(w, r, err)
			return
		}
		students = []pages.Student{{ID: st.ID, Name: storage.FullName(st.FamilyName, st.GivenName, st.MiddleName), Class: st.Class, Self: true}}
	}
	var children []pages.Child
	for _, l := range linked {
		if l.Relation != "parent" || linking.IsAdult(l.Birthdate, h.calendar()) {
			continue
		}
		cv := pages.Child{ID: l.StudentID, Name: storage.FullName(l.Family, l.Given, l.Middle), Passwords: h.cfg.Children.PasswordAccounts}
		if c, err := h.store.ChildByStudent(ctx, l.StudentID); err == nil {
			cv.Login = c.Login
			a, err := h.store.Account(ctx, c.AccountID)
			if err != nil {
				h.RenderError(w, r, err)
				return
			}
			cv.Disabled = a.Status != "active"
		} else if !errors.Is(err, storage.ErrNotFound) {
			h.RenderError(w, r, err)
			return
		}
		if cv.OwnESIA, err = h.store.OwnESIALink(ctx, l.StudentID); err != nil {
			h.RenderError(w, r, err)
			return
		}
		if fe != nil && fe.Student == l.StudentID {
			cv.Error, cv.ErrorField, cv.ErrorAction, cv.TypedLogin = fe.Message, fe.Field, fe.Action, fe.Login
			if !cv.HasForm(fe.Action) {
				cv.ErrorField, cv.ErrorAction = "", "section" // the form is not on the page: the refusal heads the child's section
			}
		}
		children = append(children, cv)
	}
	devs, err := h.store.Devices(ctx, account.ID)
	if err != nil {
		h.RenderError(w, r, err)
		return
	}
	var devices []pages.Device
	for _, d := range devs {
		dv := pages.Device{ID: d.ID, Client: h.clientName(ctx, d.ClientID), Connected: d.UsedAt.In(pages.Moscow).Format("02.01.2006 15:04")}
		if d.LastUsed != nil {
			dv.LastUsed = d.LastUsed.In(pages.Moscow).Format("02.01.2006 15:04")
		}
		devices = append(devices, dv)
	}
	if fe != nil && !slices.ContainsFunc(children, func(c pages.Child) bool { return c.ID == fe.Student }) {
		fieldErr = fe.Message // not a child on this page (a forged form): shown at the top
	}
	h.Render(w, r, status, "account", pages.Data{Title: "Личный кабинет", Message: storage.FullName(account.FamilyName, account.GivenName, account.MiddleName),
		Students: students, SubAccount: account.Kind == "child", Adult: h.flow.MayBeParent(account), Children: children, Devices: devices, CSRF: h.CSRFToken(h.BrowserID(w, r)), Notice: notice, FieldError: fieldErr})
}

var childErrors = map[error]string{
	linking.ErrNotGuardian:         "Управлять входом ребёнка может только привязанный к нему родитель.",
	linking.ErrChildTooOld:         "С 14 лет ребёнок входит через Госуслуги сам; учётная запись по логину не нужна.",
	linking.ErrChildExists:         "У ребёнка уже есть логин: можно только сменить пароль.",
	linking.ErrNoChildLogin:        "У ребёнка ещё нет логина: сначала создайте учётную запись.",
	linking.ErrLoginTaken:          "Этот логин уже занят. Придумайте другой.",
	linking.ErrLoginFormat:         "Логин: от 3 до 32 латинских букв, цифр, точек, дефисов или подчёркиваний.",
	linking.ErrPasswordShort:       "Пароль должен быть не короче 8 символов.",
	linking.ErrPasswordLong:        "Пароль должен быть не длиннее 128 символов.",
	linking.ErrPasswordIsLogin:     "Пароль не должен совпадать с логином.",
	linking.ErrPasswordCommon:      "Этот пароль слишком простой и часто встречается. Придумайте другой.",
	linking.ErrPasswordControl:     "В пароле не должно быть управляющих символов (табуляции, перевода строки). Придумайте другой.",
	linking.ErrStudentLeft:         "Обучающийся выбыл из школы.",
	linking.ErrChildAccount:        "Учётная запись ребёнка не может управлять входом. Войдите через Госуслуги со своей учётной записью родителя.",
	linking.ErrNotAdult:            "Управлять входом ребёнка может только совершеннолетний родитель.",
	linking.ErrNoBirthdate:         "Госуслуги не передали дату рождения вашей учётной записи, поэтому управлять входом ребёнка нельзя. Проверьте данные на Госуслугах.",
	linking.ErrPasswordAccountsOff: "В этом регионе дети входят только через Госуслуги: учётные записи с логином и паролем отключены.",
	linking.ErrNoOwnESIA:           "Ребёнок ещё не входил в дневник со своей учётной записью Госуслуг. Сначала пусть ребёнок войдёт через Госуслуги, затем отключите вход по логину.",
}

// accountChild creates a child's sub-account or sets its new password.
func (h *Handler) accountChild(w http.ResponseWriter, r *http.Request) {
	if h.CSRFRefused(w, r) {
		return
	}
	account, ok := h.flow.SessionOrPage(w, r)
	if !ok {
		return
	}
	student, pw := r.PostFormValue("student"), r.PostFormValue("password")
	var err error
	notice := ""
	switch r.PostFormValue("action") {
	case "create":
		var login string
		login, err = h.linker.CreateChildLogin(r.Context(), account.ID, student, r.PostFormValue("login"), pw)
		notice = "Учётная запись создана. Логин ребёнка: " + login + "."
	case "reset":
		err = h.linker.ResetChildPassword(r.Context(), account.ID, student, pw)
		notice = "Пароль изменён. Сообщите ребёнку новый пароль."
	case "move":
		err = h.linker.MoveChildToESIA(r.Context(), account.ID, student)
		notice = "Вход по логину и паролю отключён: ребёнок входит через Госуслуги со своей учётной записью."
	default:
		h.renderAccount(w, r, account, http.StatusBadRequest, "", "Неизвестное действие.")
		return
	}
	var le *linking.ChildLockedError
	switch {
	case errors.Is(err, linking.ErrBusy):
		h.RenderBusy(w, r)
		return
	case errors.As(err, &le):
		w.Header().Set("Retry-After", strconv.Itoa(int(time.Until(le.Until).Seconds())+1))
		h.renderAccountForm(w, r, account, http.StatusTooManyRequests, "", "", &childFormError{Student: student, Action: r.PostFormValue("action"), Login: r.PostFormValue("login"),
			Message: "Слишком много попыток подобрать логин. Попробуйте снова после " + le.Until.In(pages.Moscow).Format("15:04") + " (по московскому времени)."})
		return
	}
	if err != nil {
		for e, msg := range childErrors {
			if errors.Is(err, e) {
				h.renderAccountForm(w, r, account, http.StatusBadRequest, "", "", &childFormError{Student: student, Action: r.PostFormValue("action"),
					Field: childErrorField(err), Message: msg, Login: r.PostFormValue("login")})
				return
			}
		}
		h.RenderError(w, r, err)
		return
	}
	h.renderAccount(w, r, account, http.StatusOK, notice, "")
}

// generateKey shows a one-time activation key for the mobile app.
func (h *Handler) generateKey(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if h.CSRFRefused(w, r) {
		return
	}
	account, ok := h.flow.SessionOrPage(w, r)
	if !ok {
		return
	}
	if h.cfg.Activation.ClientID == "" {
		h.RenderError(w, r, &pages.UserError{Status: http.StatusServiceUnavailable, Title: "Ключи недоступны", Message: "Подключение мобильного приложения в этом регионе не настроено."})
		return
	}
	if err := h.provider.AccountMayUse(ctx, account); err != nil {
		if web.IsUnavailable(err) {
			h.RenderError(w, r, err)
			return
		}
		h.RenderError(w, r, &pages.UserError{Status: http.StatusForbidden, Title: "Ключ не выдан", Message: "С этой учётной записью входить больше нельзя, поэтому ключ для приложения не выдаётся.", Err: err})
		return
	}
	key, err := invites.GenerateLen(rand.Reader, provider.ActivationKeyLength)
	if err != nil {
		h.RenderError(w, r, err)
		return
	}
	norm, _ := invites.NormalizeLen(key, provider.ActivationKeyLength)
	ak := &storage.ActivationKey{ID: uuid.NewString(), KeyDigest: invites.Digest(h.keyDigestKey, norm), AccountID: account.ID, ClientID: h.cfg.Activation.ClientID, ExpiresAt: time.Now().Add(h.cfg.Activation.KeyTTL)}
	err = h.store.InTx(ctx, func(ctx context.Context) error {
		if err := h.store.CreateActivationKey(ctx, ak); err != nil {
			return err
		}
		return h.store.Audit(ctx, "account:"+account.ID, "key.generate", ak.ID, nil)
	})
	if err != nil {
		h.RenderError(w, r, err)
		return
	}
	h.Metrics.Keys.WithLabelValues("issued").Inc()
	minutes := int(h.cfg.Activation.KeyTTL.Round(time.Minute) / time.Minute)
	h.Render(w, r, http.StatusOK, "key", pages.Data{Title: "Ключ для мобильного приложения", Code: key, Message: strconv.Itoa(minutes) + " мин.",
		ClientName: h.clientName(ctx, h.cfg.Activation.ClientID)})
}

// revokeDevice disconnects an app: its refresh-token family is revoked.
func (h *Handler) revokeDevice(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if h.CSRFRefused(w, r) {
		return
	}
	account, ok := h.flow.SessionOrPage(w, r)
	if !ok {
		return
	}
	id := r.PostFormValue("device")
	err := h.store.InTx(ctx, func(ctx context.Context) error {
		if err := h.store.RevokeDevice(ctx, account.ID, id); err != nil {
			return err
		}
		return h.store.Audit(ctx, "account:"+account.ID, "key.revoke", id, nil)
	})
	if errors.Is(err, storage.ErrNotFound) {
		h.renderAccount(w, r, account, http.StatusNotFound, "", "Устройство не найдено.")
		return
	}
	if err != nil {
		h.RenderError(w, r, err)
		return
	}
	h.renderAccount(w, r, account, http.StatusOK, "Устройство отключено.", "")
}

// childResult names why a child's login failed, from a fixed set.
func childResult(err error) string {
	var le *linking.ChildLockedError
	switch {
	case errors.As(err, &le):
		return "locked"
	case errors.Is(err, linking.ErrBusy):
		return "busy"
	case errors.Is(err, linking.ErrBadCredentials):
		return "bad_password"
	case errors.Is(err, linking.ErrChildTooOld):
		return "too_old"
	case errors.Is(err, linking.ErrPasswordAccountsOff):
		return "passwords_off"
	case errors.Is(err, linking.ErrChildDisabled):
		return "disabled"
	case errors.Is(err, linking.ErrNoGuardianLeft), errors.Is(err, linking.ErrStudentLeft):
		return "no_right"
	}
	return "error"
}

// clientName is a client's display name as people see it (its id when it has none, or when
// the client is gone).
func (h *Handler) clientName(ctx context.Context, id string) string {
	if c, err := h.store.GetClient(ctx, id); err == nil {
		if sc, ok := storage.ClientOf(c); ok && sc.Name != "" {
			return sc.Name
		}
	}
	return id
}
