package broker

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/esia-broker/esia-broker/invites"
	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/storage"
)

// errPasswordsOff is the page of a password path in a region that allows only ESIA.
var errPasswordsOff = &UserError{Status: http.StatusForbidden, Title: "Вход по логину и паролю отключён",
	Message: "В этом регионе в электронный дневник входят только через Госуслуги. Ребёнку младше 14 лет родитель может зарегистрировать учётную запись на Госуслугах (в разделе «Дети» своей учётной записи); с ней ребёнок входит кнопкой «Войти через Госуслуги»."}

func (b *Broker) childLoginPage(w http.ResponseWriter, r *http.Request) {
	if !b.cfg.Children.PasswordAccounts {
		b.renderError(w, r, errPasswordsOff)
		return
	}
	if _, err := b.store.LoginRequest(r.Context(), r.URL.Query().Get("login")); err != nil {
		b.renderError(w, r, expiredLogin(err))
		return
	}
	b.render(w, r, http.StatusOK, "child_login", pageData{Title: "Вход для детей до 14 лет", LoginID: r.URL.Query().Get("login"), CSRF: b.csrfToken(b.browserID(w, r))})
}

// childLogin checks a child's login and password and starts the child's session.
func (b *Broker) childLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if b.csrfRefused(w, r) {
		return
	}
	if !b.cfg.Children.PasswordAccounts {
		b.renderError(w, r, errPasswordsOff)
		return
	}
	lr, err := b.store.LoginRequest(ctx, r.PostFormValue("login_request"))
	if err != nil {
		b.renderError(w, r, expiredLogin(err))
		return
	}
	if !b.sameBrowser(r, lr.BrowserHash) {
		b.renderError(w, r, &UserError{Status: http.StatusForbidden, Title: "Вход не завершён", Message: "Вход был начат в другом окне или браузере. Вернитесь в электронный дневник и войдите снова."})
		return
	}
	login := r.PostFormValue("login")
	if len(login) > 64 {
		login = login[:64]
	}
	again := func(status int, msg string) {
		b.render(w, r, status, "child_login", pageData{Title: "Вход для детей до 14 лет", LoginID: lr.ID, CSRF: b.csrfToken(b.browser(r)), Code: login, FieldError: msg})
	}
	norm, _ := linking.LoginKey(login)
	accountID, err := b.linker.ChildLogin(ctx, login, r.PostFormValue("password"), b.clientIP(r), b.knownDevice(r, norm))
	if err != nil && !isUnavailable(err) {
		// A failed login's line: the request id (from the logger), the upstream and why; never
		// the login or the password.
		b.logger(ctx).Warn("login refused", "upstream", "child", "result", childResult(err))
	}
	var le *linking.ChildLockedError
	switch {
	case errors.As(err, &le):
		b.metrics.logins.WithLabelValues("child", "locked").Inc()
		b.metrics.lockouts.WithLabelValues("child").Inc()
		w.Header().Set("Retry-After", strconv.Itoa(int(time.Until(le.Until).Seconds())+1))
		again(http.StatusTooManyRequests, "Слишком много неудачных попыток. Попробуйте снова после "+le.Until.In(moscow).Format("15:04")+" (по московскому времени) или попросите родителя сменить пароль.")
		return
	case errors.Is(err, linking.ErrBusy):
		b.metrics.logins.WithLabelValues("child", "busy").Inc()
		b.renderBusy(w, r)
		return
	case errors.Is(err, linking.ErrBadCredentials):
		b.metrics.logins.WithLabelValues("child", "bad_password").Inc()
		again(http.StatusUnauthorized, "Неверный логин или пароль.")
		return
	case errors.Is(err, linking.ErrChildTooOld):
		b.renderError(w, r, &UserError{Status: http.StatusForbidden, Title: "Входите через Госуслуги",
			Message: "С 14 лет вход в электронный дневник — только через Госуслуги, с собственной подтверждённой учётной записью. Привязка родителя к дневнику сохраняется."})
		return
	case errors.Is(err, linking.ErrPasswordAccountsOff):
		b.renderError(w, r, errPasswordsOff)
		return
	case errors.Is(err, linking.ErrChildDisabled):
		b.renderError(w, r, &UserError{Status: http.StatusForbidden, Title: "Вход по логину отключён",
			Message: "Вход с этим логином отключён. Если у тебя есть своя учётная запись на Госуслугах, входи кнопкой «Войти через Госуслуги»; иначе обратись к родителю."})
		return
	case errors.Is(err, linking.ErrNoGuardianLeft), errors.Is(err, linking.ErrStudentLeft):
		b.renderError(w, r, &UserError{Status: http.StatusForbidden, Title: "Учётная запись отключена",
			Message: "Вход с этим логином отключён: обучающийся выбыл из школы или к нему больше не привязан ни один родитель. Обратитесь к родителю или в школу."})
		return
	case err != nil:
		b.renderError(w, r, err)
		return
	}
	if old := b.sessionCookie(r); old != "" {
		_ = b.store.DeleteBrowserSession(ctx, hashToken(old))
	}
	raw := randomToken()
	browser := b.newBrowserValue()
	bs := &storage.BrowserSession{IDHash: hashToken(raw), AccountID: accountID, AuthTime: time.Now().UTC(), ACR: "child", ExpiresAt: time.Now().Add(b.cfg.Session.Lifespan)}
	err = b.store.InTx(ctx, func(ctx context.Context) error {
		if err := b.store.CreateBrowserSession(ctx, bs, []string{"pwd"}); err != nil {
			return err
		}
		_, err := b.store.CompleteLoginRequest(ctx, lr.ID, bs.IDHash, hashToken(browser))
		return err
	})
	if err != nil {
		b.renderError(w, r, expiredLogin(err))
		return
	}
	b.metrics.logins.WithLabelValues("child", "ok").Inc()
	b.rememberDevice(w, norm)
	b.setCookie(w, b.cfg.Session.CookieName, raw, b.cfg.Session.Lifespan)
	b.setBrowser(w, r, browser)
	if accountOnly(lr) {
		// A login from the start page: back to it, where the region's diaries are listed.
		_, _ = b.store.ConsumeLoginRequest(ctx, lr.ID)
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/oauth2/authorize/resume?login="+url.QueryEscape(lr.ID), http.StatusSeeOther)
}

// renderAccount shows the account page with an optional notice or error.
func (b *Broker) renderAccount(w http.ResponseWriter, r *http.Request, account *storage.Account, status int, notice, fieldErr string) {
	b.renderAccountForm(w, r, account, status, notice, fieldErr, nil)
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
func (b *Broker) renderAccountForm(w http.ResponseWriter, r *http.Request, account *storage.Account, status int, notice, fieldErr string, fe *childFormError) {
	ctx := r.Context()
	linked, err := b.store.LinkedStudents(ctx, account.ID)
	if err != nil {
		b.renderError(w, r, err)
		return
	}
	students := studentViews(linked)
	if account.Kind == "child" {
		// A sub-account holds no links: it is its student card, and links nothing more.
		c, err := b.store.ChildByAccount(ctx, account.ID)
		if err != nil {
			b.renderError(w, r, err)
			return
		}
		st, err := b.store.Student(ctx, c.StudentID)
		if err != nil {
			b.renderError(w, r, err)
			return
		}
		students = []studentView{{ID: st.ID, Name: storage.FullName(st.FamilyName, st.GivenName, st.MiddleName), Class: st.Class, Self: true}}
	}
	var children []childView
	for _, l := range linked {
		if l.Relation != "parent" || linking.IsAdult(l.Birthdate, b.calendar()) {
			continue
		}
		cv := childView{ID: l.StudentID, Name: storage.FullName(l.Family, l.Given, l.Middle), Passwords: b.cfg.Children.PasswordAccounts}
		if c, err := b.store.ChildByStudent(ctx, l.StudentID); err == nil {
			cv.Login = c.Login
			a, err := b.store.Account(ctx, c.AccountID)
			if err != nil {
				b.renderError(w, r, err)
				return
			}
			cv.Disabled = a.Status != "active"
		} else if !errors.Is(err, storage.ErrNotFound) {
			b.renderError(w, r, err)
			return
		}
		if cv.OwnESIA, err = b.store.OwnESIALink(ctx, l.StudentID); err != nil {
			b.renderError(w, r, err)
			return
		}
		if fe != nil && fe.Student == l.StudentID {
			cv.Error, cv.ErrorField, cv.ErrorAction, cv.TypedLogin = fe.Message, fe.Field, fe.Action, fe.Login
			if !cv.hasForm(fe.Action) {
				cv.ErrorField, cv.ErrorAction = "", "section" // the form is not on the page: the refusal heads the child's section
			}
		}
		children = append(children, cv)
	}
	devs, err := b.store.Devices(ctx, account.ID)
	if err != nil {
		b.renderError(w, r, err)
		return
	}
	var devices []deviceView
	for _, d := range devs {
		dv := deviceView{ID: d.ID, Client: b.clientName(ctx, d.ClientID), Connected: d.UsedAt.In(moscow).Format("02.01.2006 15:04")}
		if d.LastUsed != nil {
			dv.LastUsed = d.LastUsed.In(moscow).Format("02.01.2006 15:04")
		}
		devices = append(devices, dv)
	}
	if fe != nil && !slices.ContainsFunc(children, func(c childView) bool { return c.ID == fe.Student }) {
		fieldErr = fe.Message // not a child on this page (a forged form): shown at the top
	}
	b.render(w, r, status, "account", pageData{Title: "Личный кабинет", Message: storage.FullName(account.FamilyName, account.GivenName, account.MiddleName),
		Students: students, SubAccount: account.Kind == "child", Adult: b.mayBeParent(account), Children: children, Devices: devices, CSRF: b.csrfToken(b.browserID(w, r)), Notice: notice, FieldError: fieldErr})
}

// mayBeParent tells whether the account may link a child as a parent: an adult's own account.
func (b *Broker) mayBeParent(a *storage.Account) bool {
	return a.Kind != "child" && linking.MayLink(a, nil, "parent", b.calendar()) == nil
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

// renderBusy answers a request that found every password check slot taken: 503 with
// Retry-After, and a page that says to try again in a moment.
func (b *Broker) renderBusy(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Retry-After", "5")
	b.renderError(w, r, &UserError{Status: http.StatusServiceUnavailable, Title: "Сервис перегружен",
		Message: "Сейчас входят очень многие. Подождите несколько секунд и попробуйте снова."})
}

// accountChild creates a child's sub-account or sets its new password.
func (b *Broker) accountChild(w http.ResponseWriter, r *http.Request) {
	if b.csrfRefused(w, r) {
		return
	}
	account, ok := b.sessionOrPage(w, r)
	if !ok {
		return
	}
	student, pw := r.PostFormValue("student"), r.PostFormValue("password")
	var err error
	notice := ""
	switch r.PostFormValue("action") {
	case "create":
		var login string
		login, err = b.linker.CreateChildLogin(r.Context(), account.ID, student, r.PostFormValue("login"), pw)
		notice = "Учётная запись создана. Логин ребёнка: " + login + "."
	case "reset":
		err = b.linker.ResetChildPassword(r.Context(), account.ID, student, pw)
		notice = "Пароль изменён. Сообщите ребёнку новый пароль."
	case "move":
		err = b.linker.MoveChildToESIA(r.Context(), account.ID, student)
		notice = "Вход по логину и паролю отключён: ребёнок входит через Госуслуги со своей учётной записью."
	default:
		b.renderAccount(w, r, account, http.StatusBadRequest, "", "Неизвестное действие.")
		return
	}
	var le *linking.ChildLockedError
	switch {
	case errors.Is(err, linking.ErrBusy):
		b.renderBusy(w, r)
		return
	case errors.As(err, &le):
		w.Header().Set("Retry-After", strconv.Itoa(int(time.Until(le.Until).Seconds())+1))
		b.renderAccountForm(w, r, account, http.StatusTooManyRequests, "", "", &childFormError{Student: student, Action: r.PostFormValue("action"), Login: r.PostFormValue("login"),
			Message: "Слишком много попыток подобрать логин. Попробуйте снова после " + le.Until.In(moscow).Format("15:04") + " (по московскому времени)."})
		return
	}
	if err != nil {
		for e, msg := range childErrors {
			if errors.Is(err, e) {
				b.renderAccountForm(w, r, account, http.StatusBadRequest, "", "", &childFormError{Student: student, Action: r.PostFormValue("action"),
					Field: childErrorField(err), Message: msg, Login: r.PostFormValue("login")})
				return
			}
		}
		b.renderError(w, r, err)
		return
	}
	b.renderAccount(w, r, account, http.StatusOK, notice, "")
}

// generateKey shows a one-time activation key for the mobile app.
func (b *Broker) generateKey(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if b.csrfRefused(w, r) {
		return
	}
	account, ok := b.sessionOrPage(w, r)
	if !ok {
		return
	}
	if b.cfg.Activation.ClientID == "" {
		b.renderError(w, r, &UserError{Status: http.StatusServiceUnavailable, Title: "Ключи недоступны", Message: "Подключение мобильного приложения в этом регионе не настроено."})
		return
	}
	if err := b.accountMayUse(ctx, account); err != nil {
		if isUnavailable(err) {
			b.renderError(w, r, err)
			return
		}
		b.renderError(w, r, &UserError{Status: http.StatusForbidden, Title: "Ключ не выдан", Message: "С этой учётной записью входить больше нельзя, поэтому ключ для приложения не выдаётся.", Err: err})
		return
	}
	key, err := invites.GenerateLen(randReader{}, ActivationKeyLength)
	if err != nil {
		b.renderError(w, r, err)
		return
	}
	norm, _ := invites.NormalizeLen(key, ActivationKeyLength)
	ak := &storage.ActivationKey{ID: uuid.NewString(), KeyDigest: invites.Digest(b.keyDigestKey, norm), AccountID: account.ID, ClientID: b.cfg.Activation.ClientID, ExpiresAt: time.Now().Add(b.cfg.Activation.KeyTTL)}
	err = b.store.InTx(ctx, func(ctx context.Context) error {
		if err := b.store.CreateActivationKey(ctx, ak); err != nil {
			return err
		}
		return b.store.Audit(ctx, "account:"+account.ID, "key.generate", ak.ID, nil)
	})
	if err != nil {
		b.renderError(w, r, err)
		return
	}
	b.metrics.keys.WithLabelValues("issued").Inc()
	minutes := int(b.cfg.Activation.KeyTTL.Round(time.Minute) / time.Minute)
	b.render(w, r, http.StatusOK, "key", pageData{Title: "Ключ для мобильного приложения", Code: key, Message: strconv.Itoa(minutes) + " мин.",
		ClientName: b.clientName(ctx, b.cfg.Activation.ClientID)})
}

// revokeDevice disconnects an app: its refresh-token family is revoked.
func (b *Broker) revokeDevice(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if b.csrfRefused(w, r) {
		return
	}
	account, ok := b.sessionOrPage(w, r)
	if !ok {
		return
	}
	id := r.PostFormValue("device")
	err := b.store.InTx(ctx, func(ctx context.Context) error {
		if err := b.store.RevokeDevice(ctx, account.ID, id); err != nil {
			return err
		}
		return b.store.Audit(ctx, "account:"+account.ID, "key.revoke", id, nil)
	})
	if errors.Is(err, storage.ErrNotFound) {
		b.renderAccount(w, r, account, http.StatusNotFound, "", "Устройство не найдено.")
		return
	}
	if err != nil {
		b.renderError(w, r, err)
		return
	}
	b.renderAccount(w, r, account, http.StatusOK, "Устройство отключено.", "")
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
func (b *Broker) clientName(ctx context.Context, id string) string {
	if c, err := b.store.GetClient(ctx, id); err == nil {
		if sc, ok := storage.ClientOf(c); ok && sc.Name != "" {
			return sc.Name
		}
	}
	return id
}
