package flow

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/esia-broker/esia-broker/invites"
	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/pages"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/ory/fosite"
)

func consentKey(scopes fosite.Arguments, linked []storage.LinkedStudent) (string, string) {
	sc := slices.Clone([]string(scopes))
	slices.Sort(sc)
	ids := make([]string, 0, len(linked))
	for _, l := range linked {
		ids = append(ids, l.StudentID)
	}
	slices.Sort(ids)
	return strings.Join(sc, " "), strings.Join(ids, ",")
}

// consentCurrent tells whether the recorded consent covers this text version, these scopes and
// these children.
func (f *Flow) consentCurrent(ctx context.Context, accountID, clientID string, scopes fosite.Arguments, linked []storage.LinkedStudent) (bool, error) {
	c, err := f.store.Consent(ctx, accountID, clientID)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return f.consentMatches(c, scopes, linked), nil
}

// consentMatches tells whether a stored consent (nil: none) covers this text version, these
// scopes and these children: consent given covers every subset of it — fewer scopes, and, when
// the children's data is asked for (scope students), fewer children. A new scope, a new child or
// a new text asks again.
func (f *Flow) consentMatches(c *storage.Consent, scopes fosite.Arguments, linked []storage.LinkedStudent) bool {
	if c == nil || c.TextVersion != f.cfg.Linking.ConsentVersion {
		return false
	}
	given := strings.Fields(c.Scopes)
	for _, s := range scopes {
		if !slices.Contains(given, s) {
			return false
		}
	}
	if !slices.Contains([]string(scopes), "students") {
		return true
	}
	children := strings.Split(c.Students, ",")
	for _, l := range linked {
		if !slices.Contains(children, l.StudentID) {
			return false
		}
	}
	return true
}

func (f *Flow) renderConsent(w http.ResponseWriter, r *http.Request, lr *storage.LoginRequest, client *storage.Client, scopes fosite.Arguments, linked []storage.LinkedStudent) {
	kids := slices.ContainsFunc(linked, func(l storage.LinkedStudent) bool { return l.Relation != "self" })
	items := pages.ScopeItems(scopes, kids)
	name := client.Name
	if name == "" {
		name = client.ID
	}
	f.Metrics.Consents.WithLabelValues("shown").Inc()
	f.Render(w, r, http.StatusOK, &pages.Consent{LoginID: lr.ID, CSRF: f.CSRFToken(f.BrowserID(w, r)),
		ClientName: name, Items: items, Linked: pages.Linked{Students: pages.Students(linked)}, Version: f.cfg.Linking.ConsentVersion})
}

func (f *Flow) renderPicker(w http.ResponseWriter, r *http.Request, lr *storage.LoginRequest, linked []storage.LinkedStudent) {
	f.Render(w, r, http.StatusOK, &pages.Picker{LoginID: lr.ID, CSRF: f.CSRFToken(f.BrowserID(w, r)), Students: pages.Students(linked)})
}

// consent records the answer of the consent page.
func (f *Flow) consent(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	lr, _, account, ok := f.loginInProgress(w, r, r.PostFormValue("login"))
	if !ok {
		return
	}
	ar, err := f.provider.ReplayAuthorize(ctx, lr.AuthorizeQuery)
	if err != nil {
		f.authorizeError(w, r, ar, err)
		return
	}
	if r.PostFormValue("decision") != "accept" {
		f.Metrics.Consents.WithLabelValues("refused").Inc()
		_, _ = f.store.ConsumeLoginRequest(ctx, lr.ID) // gone already is as good as consumed
		if err := f.store.Audit(ctx, "account:"+account.ID, "consent.deny", ar.GetClient().GetID(), nil); err != nil {
			f.RenderError(w, r, err)
			return
		}
		f.provider.WriteAuthorizeError(ctx, f.provider.AuthorizeWriter(w), ar, fosite.ErrAccessDenied.WithHint("The user refused consent."))
		return
	}
	linked, err := f.store.LinkedStudents(ctx, account.ID)
	if err != nil {
		f.RenderError(w, r, err)
		return
	}
	sc, st := consentKey(ar.GetRequestedScopes(), linked)
	err = f.store.InTx(ctx, func(ctx context.Context) error {
		if err := f.store.SaveConsent(ctx, &storage.Consent{AccountID: account.ID, ClientID: ar.GetClient().GetID(), TextVersion: f.cfg.Linking.ConsentVersion, Scopes: sc, Students: st}); err != nil {
			return err
		}
		if err := f.store.UpdateLoginRequest(ctx, lr.ID, lr.StudentID, true); err != nil {
			return err
		}
		return f.store.Audit(ctx, "account:"+account.ID, "consent.grant", ar.GetClient().GetID(), map[string]any{"version": f.cfg.Linking.ConsentVersion, "scopes": sc, "students": len(linked)})
	})
	if err != nil {
		f.RenderError(w, r, err)
		return
	}
	f.Metrics.Consents.WithLabelValues("given").Inc()
	http.Redirect(w, r, "/oauth2/authorize/resume?login="+url.QueryEscape(lr.ID), http.StatusSeeOther)
}

// selectStudent records the student picked on the picker page.
func (f *Flow) selectStudent(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	lr, _, account, ok := f.loginInProgress(w, r, r.PostFormValue("login"))
	if !ok {
		return
	}
	linked, err := f.store.LinkedStudents(ctx, account.ID)
	if err != nil {
		f.RenderError(w, r, err)
		return
	}
	pick := r.PostFormValue("student")
	if !slices.ContainsFunc(linked, func(l storage.LinkedStudent) bool { return l.StudentID == pick }) {
		f.RenderError(w, r, pages.NotYourChild)
		return
	}
	if err := f.store.UpdateLoginRequest(ctx, lr.ID, pick, lr.Consented); err != nil {
		f.RenderError(w, r, pages.ExpiredLogin(err))
		return
	}
	http.Redirect(w, r, "/oauth2/authorize/resume?login="+url.QueryEscape(lr.ID), http.StatusSeeOther)
}

// AccountHandler is the handler of a page that needs a logged-in account.
type AccountHandler func(w http.ResponseWriter, r *http.Request, account *storage.Account)

// WithAccount runs h with the browser's logged-in account. Without a live session h does not
// run: the page says to log in (401).
func (f *Flow) WithAccount(h AccountHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		bs, account, err := f.CurrentSession(r.Context(), r)
		if err != nil {
			f.RenderError(w, r, err)
			return
		}
		if bs == nil {
			f.RenderError(w, r, pages.LoginNeeded)
			return
		}
		h(w, r, account)
	}
}

// loginParam checks that an optional login request id belongs to this browser's session.
func (f *Flow) loginParam(w http.ResponseWriter, r *http.Request, id string) (string, bool) {
	if id == "" {
		return "", true
	}
	lr, _, _, ok := f.loginInProgress(w, r, id)
	if !ok {
		return "", false
	}
	return lr.ID, true
}

func (f *Flow) rolePage(w http.ResponseWriter, r *http.Request, account *storage.Account) {
	login, ok := f.loginParam(w, r, r.URL.Query().Get("login"))
	if !ok {
		return
	}
	if account.Kind == "child" {
		f.RenderError(w, r, pages.ChildCodes)
		return
	}
	if !f.MayBeParent(account) {
		// A minor has one role: the student's code is the only one it may enter.
		f.renderCode(w, r, http.StatusOK, login, invites.RoleStudent, "", "")
		return
	}
	f.Render(w, r, http.StatusOK, &pages.Role{LoginID: login})
}

func roleFromParam(v string) (string, bool) {
	switch v {
	case invites.RoleParent, invites.RoleStudent:
		return v, true
	}
	return "", false
}

func (f *Flow) codePage(w http.ResponseWriter, r *http.Request, account *storage.Account) {
	login, ok := f.loginParam(w, r, r.URL.Query().Get("login"))
	if !ok {
		return
	}
	if account.Kind == "child" {
		f.RenderError(w, r, pages.ChildCodes)
		return
	}
	role, ok := roleFromParam(r.URL.Query().Get("role"))
	if !ok {
		role = invites.RoleParent
	}
	if role == invites.RoleParent && !f.MayBeParent(account) {
		// The form would only be refused when sent: a minor enters the student's code.
		role = invites.RoleStudent
	}
	f.renderCode(w, r, http.StatusOK, login, role, "", "")
}

func (f *Flow) renderCode(w http.ResponseWriter, r *http.Request, status int, login, role, code, fieldErr string) {
	f.Render(w, r, status, &pages.Code{LoginID: login, CSRF: f.CSRFToken(f.BrowserID(w, r)),
		Role: invites.RoleName(role), RoleValue: role, ForStudent: role == invites.RoleStudent, Code: code, FieldError: fieldErr})
}

// redeemCode spends an invite code typed on the code page.
func (f *Flow) redeemCode(w http.ResponseWriter, r *http.Request, account *storage.Account) {
	ctx := r.Context()
	login, ok := f.loginParam(w, r, r.PostFormValue("login"))
	if !ok {
		return
	}
	role, ok := roleFromParam(r.PostFormValue("role"))
	if !ok {
		f.RenderError(w, r, pages.NoRole)
		return
	}
	code := r.PostFormValue("code")
	if len(code) > 32 {
		code = code[:32]
	}
	if strings.TrimSpace(code) == "" {
		// Nothing typed is not a wrong code: no attempt is counted.
		f.renderCode(w, r, http.StatusBadRequest, login, role, "", pages.CodeMissing)
		return
	}
	_, err := f.linker.RedeemCode(ctx, account.ID, code, role, f.ClientIP(r))
	f.Metrics.Invites.WithLabelValues(redeemResult(err)).Inc()
	if err == nil {
		f.Metrics.Links.WithLabelValues("invite", "added").Inc()
	}
	if err != nil {
		var le *invites.LockedError
		if errors.As(err, &le) {
			f.Metrics.Lockouts.WithLabelValues("invite").Inc()
			w.Header().Set("Retry-After", strconv.Itoa(int(time.Until(le.Until).Seconds())+1))
			f.renderCode(w, r, http.StatusTooManyRequests, login, role, code, pages.CodesLocked(le.Until))
			return
		}
		refusal, known := redeemRefusalOf(err)
		if !known {
			f.RenderError(w, r, err)
			return
		}
		f.renderCode(w, r, refusal.status, login, role, code, refusal.message)
		return
	}
	linked, _ := f.store.LinkedStudents(ctx, account.ID)
	msg := pages.CodeAcceptedParent
	if role == invites.RoleStudent {
		msg = pages.CodeAcceptedStudent
	}
	f.Render(w, r, http.StatusOK, &pages.CodeDone{Message: msg, LoginID: login, Linked: pages.Linked{Students: pages.Students(linked)}, RoleValue: string(role)})
}

// redeemRefusal is how a refused code is answered: the metric's result, the status and the
// message of the code form.
type redeemRefusal struct {
	err     error
	result  string
	status  int
	message string
}

// redeemRefusals are the refusals of a code, in the order they are told apart.
var redeemRefusals = []redeemRefusal{
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

// redeemRefusalOf finds how err is answered; known is false for an error that is not a
// refusal of the code (a failure).
func redeemRefusalOf(err error) (redeemRefusal, bool) {
	for _, rf := range redeemRefusals {
		if errors.Is(err, rf.err) {
			return rf, true
		}
	}
	return redeemRefusal{}, false
}

// redeemResult names a code redemption's outcome for the metrics (a fixed set).
func redeemResult(err error) string {
	var le *invites.LockedError
	if err == nil {
		return "ok"
	}
	if errors.As(err, &le) {
		return "locked"
	}
	if rf, ok := redeemRefusalOf(err); ok {
		return rf.result
	}
	return "error"
}

// MayBeParent tells whether the account may link a child as a parent: an adult's own account.
func (f *Flow) MayBeParent(a *storage.Account) bool {
	return a.Kind != "child" && linking.MayLink(a, nil, "parent", f.calendar()) == nil
}
