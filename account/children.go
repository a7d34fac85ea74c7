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

func (h *Handler) childLoginPage(w http.ResponseWriter, r *http.Request) {
	if !h.cfg.Children.PasswordAccounts {
		h.RenderError(w, r, pages.PasswordsOff)
		return
	}
	if _, err := h.store.LoginRequest(r.Context(), r.URL.Query().Get("login")); err != nil {
		h.RenderError(w, r, pages.ExpiredLogin(err))
		return
	}
	h.Render(w, r, http.StatusOK, &pages.ChildLogin{LoginID: r.URL.Query().Get("login"), CSRF: h.CSRFToken(h.BrowserID(w, r))})
}

// childLogin checks a child's login and password and starts the child's session.
func (h *Handler) childLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if !h.cfg.Children.PasswordAccounts {
		h.RenderError(w, r, pages.PasswordsOff)
		return
	}
	lr, err := h.store.LoginRequest(ctx, r.PostFormValue("login_request"))
	if err != nil {
		h.RenderError(w, r, pages.ExpiredLogin(err))
		return
	}
	if !h.SameBrowser(r, lr.BrowserHash) {
		h.RenderError(w, r, pages.OtherBrowser)
		return
	}
	login := r.PostFormValue("login")
	if len(login) > 64 {
		login = login[:64]
	}
	again := func(status int, msg string) {
		h.Render(w, r, status, &pages.ChildLogin{LoginID: lr.ID, CSRF: h.CSRFToken(h.Browser(r)), Code: login, FieldError: msg})
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
		again(http.StatusTooManyRequests, pages.ChildLoginLocked(le.Until))
		return
	case errors.Is(err, linking.ErrBusy):
		h.Metrics.Logins.WithLabelValues("child", "busy").Inc()
		h.RenderBusy(w, r)
		return
	case errors.Is(err, linking.ErrBadCredentials):
		h.Metrics.Logins.WithLabelValues("child", "bad_password").Inc()
		again(http.StatusUnauthorized, pages.ChildBadCredentials)
		return
	case errors.Is(err, linking.ErrChildTooOld):
		h.RenderError(w, r, pages.ChildTooOld)
		return
	case errors.Is(err, linking.ErrPasswordAccountsOff):
		h.RenderError(w, r, pages.PasswordsOff)
		return
	case errors.Is(err, linking.ErrChildDisabled):
		h.RenderError(w, r, pages.ChildLoginDisabled)
		return
	case errors.Is(err, linking.ErrNoGuardianLeft), errors.Is(err, linking.ErrStudentLeft):
		h.RenderError(w, r, pages.ChildNoRight)
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
	h.Render(w, r, status, &pages.Account{Message: storage.FullName(account.FamilyName, account.GivenName, account.MiddleName),
		Linked: pages.Linked{Students: students}, SubAccount: account.Kind == "child", Adult: h.flow.MayBeParent(account), Children: children, Devices: devices, CSRF: h.CSRFToken(h.BrowserID(w, r)), Notice: notice, FieldError: fieldErr})
}

var childErrors = map[error]string{
	linking.ErrNotGuardian:         pages.ChildNotGuardian,
	linking.ErrChildTooOld:         pages.ChildTooOldForLogin,
	linking.ErrChildExists:         pages.ChildLoginExists,
	linking.ErrNoChildLogin:        pages.ChildNoLogin,
	linking.ErrLoginTaken:          pages.ChildLoginTaken,
	linking.ErrLoginFormat:         pages.ChildLoginFormat,
	linking.ErrPasswordShort:       pages.ChildPasswordShort,
	linking.ErrPasswordLong:        pages.ChildPasswordLong,
	linking.ErrPasswordIsLogin:     pages.ChildPasswordIsLogin,
	linking.ErrPasswordCommon:      pages.ChildPasswordCommon,
	linking.ErrPasswordControl:     pages.ChildPasswordControl,
	linking.ErrStudentLeft:         pages.ChildStudentLeft,
	linking.ErrChildAccount:        pages.ChildByChildAccount,
	linking.ErrNotAdult:            pages.ChildByMinor,
	linking.ErrNoBirthdate:         pages.ChildNoBirthdate,
	linking.ErrPasswordAccountsOff: pages.ChildPasswordsOff,
	linking.ErrNoOwnESIA:           pages.ChildNoOwnESIA,
}

// accountChild creates a child's sub-account or sets its new password.
func (h *Handler) accountChild(w http.ResponseWriter, r *http.Request, account *storage.Account) {
	student, pw := r.PostFormValue("student"), r.PostFormValue("password")
	var err error
	notice := ""
	switch r.PostFormValue("action") {
	case "create":
		var login string
		login, err = h.linker.CreateChildLogin(r.Context(), account.ID, student, r.PostFormValue("login"), pw)
		notice = pages.ChildCreated(login)
	case "reset":
		err = h.linker.ResetChildPassword(r.Context(), account.ID, student, pw)
		notice = pages.ChildPasswordChanged
	case "move":
		err = h.linker.MoveChildToESIA(r.Context(), account.ID, student)
		notice = pages.ChildMovedToESIA
	default:
		h.renderAccount(w, r, account, http.StatusBadRequest, "", pages.AccountUnknownAction)
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
			Message: pages.ChildGuessLocked(le.Until)})
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
func (h *Handler) generateKey(w http.ResponseWriter, r *http.Request, account *storage.Account) {
	ctx := r.Context()
	if h.cfg.Activation.ClientID == "" {
		h.RenderError(w, r, pages.KeysOff)
		return
	}
	if err := h.provider.AccountMayUse(ctx, account); err != nil {
		if web.IsUnavailable(err) {
			h.RenderError(w, r, err)
			return
		}
		h.RenderError(w, r, pages.KeyRefused(err))
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
	h.Render(w, r, http.StatusOK, &pages.Key{Code: key, Message: pages.KeyLifetime(minutes),
		ClientName: h.clientName(ctx, h.cfg.Activation.ClientID)})
}

// revokeDevice disconnects an app: its refresh-token family is revoked.
func (h *Handler) revokeDevice(w http.ResponseWriter, r *http.Request, account *storage.Account) {
	ctx := r.Context()
	id := r.PostFormValue("device")
	err := h.store.InTx(ctx, func(ctx context.Context) error {
		if err := h.store.RevokeDevice(ctx, account.ID, id); err != nil {
			return err
		}
		return h.store.Audit(ctx, "account:"+account.ID, "key.revoke", id, nil)
	})
	if errors.Is(err, storage.ErrNotFound) {
		h.renderAccount(w, r, account, http.StatusNotFound, "", pages.AccountDeviceNotFound)
		return
	}
	if err != nil {
		h.RenderError(w, r, err)
		return
	}
	h.renderAccount(w, r, account, http.StatusOK, pages.AccountDeviceRevoked, "")
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
