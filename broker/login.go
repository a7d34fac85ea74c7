package broker

import (
	"context"
	"crypto/hmac"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/gorilla/mux"
	"github.com/ory/fosite"
	"github.com/ory/fosite/token/jwt"

	"github.com/esia-broker/esia-broker/esia"
	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/upstream"
)

func isExpiredOnly(err error) bool {
	var ve *jwt.ValidationError
	return errors.As(err, &ve) && ve.Errors == jwt.ValidationErrorExpired
}

// loginStart begins the trip to an upstream: a single-use flow bound to this browser.
func (b *Broker) loginStart(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	conn, ok := b.connectors[mux.Vars(r)["connector"]]
	if !ok {
		b.renderError(w, r, &UserError{Status: http.StatusNotFound, Title: "Способ входа не найден", Message: "Такого способа входа нет. Вернитесь в электронный дневник и нажмите «Войти» ещё раз."})
		return
	}
	lr, err := b.store.LoginRequest(ctx, r.URL.Query().Get("login"))
	if err != nil {
		b.renderError(w, r, expiredLogin(err))
		return
	}
	b.browserID(w, r)
	if !b.sameBrowser(r, lr.BrowserHash) {
		b.renderError(w, r, &UserError{Status: http.StatusForbidden, Title: "Вход не завершён", Message: "Вход был начат в другом окне или браузере. Вернитесь в электронный дневник и войдите снова."})
		return
	}
	if r.URL.Query().Get("fresh") == "" {
		if to := b.upstreamLogoutFirst(w, r, conn, lr); to != "" {
			http.Redirect(w, r, to, http.StatusFound)
			return
		}
	}
	target, f, err := b.upstreamTrip(ctx, conn, lr)
	if err != nil {
		b.renderError(w, r, err)
		return
	}
	if err := b.store.CreateUpstreamFlow(ctx, f); err != nil {
		b.renderError(w, r, err)
		return
	}
	http.Redirect(w, r, target, http.StatusFound)
}

// upstreamLogoutFirst returns where to send the browser before a trip to conn for lr, or "".
// ESIA's own session outlives the broker's. Before a trip that must not reuse it — this
// browser's logout did not get through ESIA's logout, or the diary asks for a fresh login
// (prompt=login, max_age) — the browser goes through ESIA's logout first and comes back to
// /login/{conn} with fresh=1.
func (b *Broker) upstreamLogoutFirst(w http.ResponseWriter, r *http.Request, conn upstream.Connector, lr *storage.LoginRequest) string {
	lo, ok := conn.(upstream.Logout)
	if !ok || !b.mustEndUpstreamSession(r, lr) {
		return ""
	}
	to := lo.UpstreamLogoutURL(b.issuer() + "/oauth2/logout/done")
	if to != "" {
		b.setCookie(w, logoutCookie, logoutReturn{Login: lr.ID, Connector: conn.ID(), At: time.Now()}.encode(), logoutPending)
	}
	return to
}

// upstreamTrip asks conn where to send the browser for login request lr, and returns the
// single-use flow to store before sending it there. A failure comes back as the page to show,
// its «Повторить» starting the trip again.
func (b *Broker) upstreamTrip(ctx context.Context, conn upstream.Connector, lr *storage.LoginRequest) (string, *storage.UpstreamFlow, error) {
	state := uuid.NewString()
	target, data, err := conn.LoginURL(ctx, state)
	if err != nil {
		b.metrics.logins.WithLabelValues(conn.ID(), "upstream_error").Inc()
		ue := *asUserError(err).(*UserError)
		ue.Retry = "/login/" + url.PathEscape(conn.ID()) + "?login=" + url.QueryEscape(lr.ID)
		return "", nil, &ue
	}
	return target, &storage.UpstreamFlow{State: state, Connector: conn.ID(), LoginRequestID: lr.ID, BrowserHash: lr.BrowserHash,
		Data: data, ExpiresAt: time.Now().Add(b.cfg.Session.LoginTimeout)}, nil
}

func asUserError(err error) error {
	var ue *UserError
	if errors.As(err, &ue) {
		return ue
	}
	return &UserError{Status: http.StatusBadGateway, Title: "Сервис входа недоступен", Message: "Не удалось связаться с сервисом входа. Попробуйте ещё раз через несколько минут.", Err: err}
}

// callback completes the upstream login: the flow is consumed once, checked against this
// browser, the account is created or updated, and a new session id is issued.
func (b *Broker) callback(w http.ResponseWriter, r *http.Request, connID string) {
	ctx := r.Context()
	conn := b.connectors[connID]
	flow, err := b.store.ConsumeUpstreamFlow(ctx, r.URL.Query().Get("state"))
	if err != nil {
		b.metrics.logins.WithLabelValues(connID, "bad_state").Inc()
		ue := *asUserError(expiredLogin(err)).(*UserError)
		ue.Upstream = connID
		b.renderError(w, r, &ue)
		return
	}
	if flow.Connector != connID || !b.sameBrowser(r, flow.BrowserHash) {
		b.metrics.logins.WithLabelValues(connID, "foreign_browser").Inc()
		b.renderError(w, r, &UserError{Status: http.StatusForbidden, Title: "Вход не завершён", Upstream: connID, Err: errors.New("the upstream's answer came to another browser"),
			Message: "Ответ сервиса входа пришёл не в тот браузер, где начинался вход. Вернитесь в электронный дневник и войдите снова."})
		return
	}
	id, err := conn.HandleCallback(ctx, r, flow.Data)
	if err != nil {
		b.metrics.logins.WithLabelValues(connID, loginFailure(err)).Inc()
		if r.URL.Query().Get("error") != "" {
			b.metrics.callbackErrors.WithLabelValues(connID, boundedCode(esia.ErrorCode(err))).Inc()
		}
		ue := asUserError(upstreamPage(connID, err)).(*UserError)
		retry := *ue
		retry.Retry = "/login/" + url.PathEscape(connID) + "?login=" + url.QueryEscape(flow.LoginRequestID)
		retry.Upstream = connID
		b.renderError(w, r, &retry)
		return
	}
	// Only a keyed digest of the SNILS is kept; a SNILS that does not parse is dropped.
	snilsDigest := ""
	if id.SNILS != "" {
		if d, err := b.linker.Digester().SNILS(id.SNILS); err == nil {
			snilsDigest = d
		}
	}
	if id.Unconfirmed {
		if err := b.admitUnconfirmed(ctx, connID, id, snilsDigest); err != nil {
			b.metrics.logins.WithLabelValues(connID, "unconfirmed").Inc()
			retry := *asUserError(err).(*UserError)
			retry.Retry = "/login/" + url.PathEscape(connID) + "?login=" + url.QueryEscape(flow.LoginRequestID)
			retry.Upstream = connID
			b.renderError(w, r, &retry)
			return
		}
	}
	sub := id.Subject
	raw := randomToken()
	amr := id.AMR
	if len(amr) == 0 {
		amr = []string{connID}
	}
	bs := &storage.BrowserSession{IDHash: hashToken(raw), AuthTime: time.Now().UTC(), ACR: id.ACR, ExpiresAt: time.Now().Add(b.cfg.Session.Lifespan)}
	// A new browser id at every login: one known or planted before it is worth nothing after.
	browser := b.newBrowserValue()
	var (
		account *storage.Account
		lr      *storage.LoginRequest
		intent  *storage.LinkIntent
		pre     loginState
		next    step
		issued  fosite.AuthorizeResponder
		authErr error
		// What the login changed in the links, counted once it is committed.
		snilsChanges linking.Changes
		diaryLinks   int
	)
	// Everything the login writes — account, links, the diary's link, the new session — is one
	// transaction: a failure leaves none of it.
	err = b.store.InTx(ctx, func(ctx context.Context) error {
		var err error
		account, err = b.store.UpsertUpstreamAccount(ctx, &storage.Account{
			Kind: "esia", Upstream: connID, UpstreamSub: &sub, SNILSDigest: snilsDigest, Unconfirmed: id.Unconfirmed,
			FamilyName: id.FamilyName, GivenName: id.GivenName, MiddleName: id.MiddleName, Birthdate: id.Birthdate,
		})
		if err != nil {
			return err
		}
		if account.Status != "active" {
			b.metrics.logins.WithLabelValues(connID, "disabled").Inc()
			return &UserError{Status: http.StatusForbidden, Title: "Учётная запись отключена", Message: "Вход с этой учётной записью отключён администратором. Обратитесь в школу или в службу поддержки."}
		}
		// A new session id at every login: whatever id the browser held before is dropped.
		if old := b.sessionCookie(r); old != "" {
			if err := b.store.DeleteBrowserSession(ctx, hashToken(old)); err != nil {
				return err
			}
		}
		bs.AccountID = account.ID
		if err := b.store.CreateBrowserSession(ctx, bs, amr); err != nil {
			return err
		}
		// The login request is marked as logged in by the new session, and read, at once.
		if lr, err = b.store.CompleteLoginRequest(ctx, flow.LoginRequestID, bs.IDHash, hashToken(browser)); err != nil {
			return expiredLogin(err)
		}
		// A login that had to be fresh: refused (all of it rolled back) when the upstream
		// answered from an older session of its own.
		if err := b.checkFresh(r, connID, lr, id); err != nil {
			return err
		}
		// The first login of an account a region's link import made: its imported links
		// become normal ones, each checked now that ESIA has said who logged in.
		if _, _, err := b.linker.SettleImported(ctx, account); err != nil {
			return err
		}
		// Links by SNILS are re-checked at every login.
		if snilsChanges, err = b.linker.ResolveAccount(ctx, account, id.SNILS); err != nil {
			return err
		}
		if lr.LinkIntent != "" {
			if intent, err = b.store.ConsumeLinkIntent(ctx, lr.LinkIntent); err != nil {
				return errIntentGone(err)
			}
			if diaryLinks, err = b.linker.ApplyIntent(ctx, account.ID, intent.ClientID, intent.Relation, intent.Students()); err != nil {
				return intentRefused(err)
			}
		}
		if err := b.store.Audit(ctx, "account:"+account.ID, "login", connID, map[string]any{"amr": amr}); err != nil {
			return err
		}
		if intent != nil || accountOnly(lr) {
			return nil
		}
		// What the authorization needs next is read here, in the same transaction.
		if pre.linked, err = b.store.LinkedStudents(ctx, account.ID); err != nil {
			return err
		}
		q, _ := url.ParseQuery(lr.AuthorizeQuery)
		pre.consent, err = b.store.Consent(ctx, account.ID, q.Get("client_id"))
		if errors.Is(err, storage.ErrNotFound) {
			err = nil
		}
		if err != nil {
			return err
		}
		// When nothing else is needed the code is issued here too: one transaction for the
		// whole return from the upstream.
		next = b.nextStep(ctx, lr, account, &pre)
		if next.kind != stepFinish {
			return nil
		}
		issued, authErr, err = b.issueCode(ctx, next.ar, bs, account, next.client, lr, next.linked)
		if err != nil {
			return err
		}
		return authErr
	})
	if authErr != nil {
		b.authorizeError(w, r, next.ar, authErr)
		return
	}
	if err != nil {
		b.renderError(w, r, err)
		return
	}
	b.metrics.logins.WithLabelValues(connID, "ok").Inc()
	b.metrics.links.WithLabelValues("snils", "added").Add(float64(snilsChanges.Added))
	b.metrics.links.WithLabelValues("snils", "revoked").Add(float64(snilsChanges.Revoked))
	b.metrics.links.WithLabelValues("diary", "added").Add(float64(diaryLinks))
	b.setCookie(w, b.cfg.Session.CookieName, raw, b.cfg.Session.Lifespan)
	b.setBrowser(w, r, browser)
	if accountOnly(lr) {
		// A login from the start page: on to the account page.
		_, _ = b.store.ConsumeLoginRequest(ctx, lr.ID)
		http.Redirect(w, r, "/account", http.StatusSeeOther)
		return
	}
	if intent != nil {
		_, _ = b.store.ConsumeLoginRequest(ctx, lr.ID)
		linked, _ := b.store.LinkedStudents(ctx, account.ID)
		b.render(w, r, http.StatusOK, "code_done", pageData{Title: "Привязка к Госуслугам выполнена",
			Message: "Учётная запись Госуслуг привязана к дневнику. Теперь входите в дневник через Госуслуги.", Students: studentViews(linked), ReturnURI: intent.ReturnURI})
		return
	}
	// The authorization goes on in this response: straight back to the client with the code
	// when nothing else was needed, or to the page of the step that is.
	if issued != nil {
		b.provider.WriteAuthorizeResponse(ctx, b.authorizeWriter(w), next.ar, issued)
		return
	}
	b.act(w, r, next, lr, bs, account, true)
}

// intentRefused explains why the account that logged in may not take the intent's links.
func intentRefused(err error) error {
	msg := ""
	switch {
	case errors.Is(err, linking.ErrNotThisStudent):
		msg = "Дневник просил привязать учётную запись самого обучающегося, а дата рождения в вашей учётной записи Госуслуг не совпадает с данными школы. Обучающийся должен войти со своей учётной записью."
	case errors.Is(err, linking.ErrNotAdult):
		msg = "Привязать ребёнка как родитель может только совершеннолетний. Попросите родителя войти через Госуслуги со своей учётной записью."
	case errors.Is(err, linking.ErrNoBirthdate):
		msg = "Госуслуги не передали дату рождения вашей учётной записи, поэтому привязка невозможна. Проверьте данные на Госуслугах."
	case errors.Is(err, linking.ErrChildAccount), errors.Is(err, linking.ErrAccountOff):
		msg = "С этой учётной записью привязка невозможна."
	default:
		return err
	}
	return &UserError{Status: http.StatusForbidden, Title: "Привязка невозможна", Message: msg, Err: err}
}

func errIntentGone(err error) error {
	return &UserError{Status: http.StatusGone, Title: "Ссылка для привязки устарела", Err: err,
		Message: "Ссылка для привязки к Госуслугам уже использована или устарела. Вернитесь в дневник и нажмите «выполнить привязку к ЕСИА» ещё раз."}
}

// linkIntentPage shows a diary's link intent: the students it links, before anyone goes to ESIA.
// Opening it binds nothing (a link-preview bot or a mail scanner opens links too); the person's
// «Войти через Госуслуги» (linkIntentStart) binds it to their browser.
func (b *Broker) linkIntentPage(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	browser := b.browserID(w, r)
	intent, ok := b.openIntent(w, r, browser)
	if !ok {
		return
	}
	var students []storage.LinkedStudent
	for _, id := range intent.Students() {
		st, err := b.store.Student(ctx, id)
		if err != nil || !st.Active {
			continue
		}
		students = append(students, storage.LinkedStudent{StudentID: st.ID, Class: st.Class, Family: st.FamilyName, Given: st.GivenName, Middle: st.MiddleName})
	}
	if len(students) == 0 {
		b.renderError(w, r, errIntentGone(errors.New("no active student in the intent")))
		return
	}
	name := intent.ClientID
	if c, err := b.store.Client(ctx, intent.ClientID); err == nil && c.Name != "" {
		name = c.Name
	}
	conn := b.intentConnector()
	b.render(w, r, http.StatusOK, "intent", pageData{Title: "Привязка к Госуслугам", ClientName: name, CSRF: b.csrfToken(browser),
		Students: studentViews(students), ForStudent: intent.Relation == "self", Connectors: []connectorLink{{ID: conn.ID(), Name: conn.DisplayName()}}})
}

// linkIntentStart binds the intent to this browser (the first that asks keeps it) and starts
// the ESIA trip that completes it.
func (b *Broker) linkIntentStart(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if b.csrfRefused(w, r) {
		return
	}
	browser := b.browser(r)
	raw := mux.Vars(r)["intent"]
	if _, err := b.store.BindLinkIntent(ctx, hashToken(raw), hashToken(browser)); err != nil {
		b.renderError(w, r, intentError(err))
		return
	}
	conn := b.intentConnector()
	lr := &storage.LoginRequest{ID: uuid.NewString(), BrowserHash: hashToken(browser), LinkIntent: hashToken(raw), ExpiresAt: time.Now().Add(b.cfg.Session.LoginTimeout)}
	if err := b.store.CreateLoginRequest(ctx, lr); err != nil {
		b.renderError(w, r, err)
		return
	}
	http.Redirect(w, r, "/login/"+url.PathEscape(conn.ID())+"?login="+url.QueryEscape(lr.ID), http.StatusSeeOther)
}

// openIntent reads the intent of the path; one bound to another browser, gone or expired is a
// page.
func (b *Broker) openIntent(w http.ResponseWriter, r *http.Request, browser string) (*storage.LinkIntent, bool) {
	if len(b.connOrder) == 0 {
		b.renderError(w, r, &UserError{Status: http.StatusServiceUnavailable, Title: "Вход недоступен", Message: "Не настроен ни один способ входа. Сообщите в службу поддержки."})
		return nil, false
	}
	intent, err := b.store.LinkIntent(r.Context(), hashToken(mux.Vars(r)["intent"]))
	if err == nil && intent.BrowserHash != "" && intent.BrowserHash != hashToken(browser) {
		err = storage.ErrIntentElsewhere
	}
	if err != nil {
		b.renderError(w, r, intentError(err))
		return nil, false
	}
	return intent, true
}

func intentError(err error) error {
	if errors.Is(err, storage.ErrIntentElsewhere) {
		return &UserError{Status: http.StatusForbidden, Title: "Ссылка открыта в другом браузере",
			Message: "Эту ссылку для привязки уже открыли в другом браузере. Вернитесь в дневник и нажмите «выполнить привязку к ЕСИА» ещё раз.", Err: err}
	}
	return errIntentGone(err)
}

// intentConnector is the upstream that completes a link intent: ESIA when configured.
func (b *Broker) intentConnector() upstream.Connector {
	if c, ok := b.connectors["esia"]; ok {
		return c
	}
	return b.connOrder[0]
}

// admitUnconfirmed decides on an account the upstream reports as not confirmed: it gets in
// only as a child's own account — under 14 by the birth date the upstream gave, with a SNILS
// and birth date that match an active student card — and only while
// children.unconfirmed_esia_children allows it. What the upstream sent for such an account
// (the field names, no values) is logged, so operators see the real shape.
func (b *Broker) admitUnconfirmed(ctx context.Context, connID string, id *upstream.Identity, snilsDigest string) error {
	reason, err := b.unconfirmedRefusal(ctx, id.Birthdate, snilsDigest)
	if err != nil {
		return err
	}
	b.logger(ctx).Info("unconfirmed upstream account", "connector", connID, "admitted", reason == "", "reason", reason, "fields", id.Fields)
	if reason != "" {
		return errUnconfirmed(errors.New("the upstream account is not confirmed: " + reason))
	}
	return nil
}

// unconfirmedRefusal says why an unconfirmed account born on birthdate with SNILS digest
// snilsDigest may not use the broker today, or "" when it may: the rule of admitUnconfirmed,
// which accountMayUse applies again at every refresh and authorization (the 14th birthday, a
// card gone inactive or the rule switched off end its access as they would refuse its login).
func (b *Broker) unconfirmedRefusal(ctx context.Context, birthdate, snilsDigest string) (string, error) {
	switch age, err := linking.Age(birthdate, b.calendar()); {
	case !b.cfg.Children.UnconfirmedESIAChildren:
		return "unconfirmed_esia_children is off", nil
	case err != nil:
		return "no birth date", nil
	case age >= linking.AdultAge:
		return "not a child under 14", nil
	case snilsDigest == "":
		return "no SNILS", nil
	}
	_, own, err := b.store.StudentsForSNILS(ctx, snilsDigest)
	if err != nil {
		return "", err
	}
	for _, st := range own {
		if st.Active && st.Birthdate == birthdate {
			return "", nil
		}
	}
	return "no active student card with this SNILS and birth date", nil
}

// logout is RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0). With a valid
// id_token_hint the session ends at once; without one the person confirms with a form.
func (b *Broker) logout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		b.renderError(w, r, &UserError{Status: http.StatusBadRequest, Title: "Неверный запрос", Message: "Запрос на выход повреждён. Закройте браузер, чтобы выйти."})
		return
	}
	hint := r.Form.Get("id_token_hint")
	postLogout := r.Form.Get("post_logout_redirect_uri")
	clientID := r.Form.Get("client_id")
	var hintSub, hintSID string
	if hint != "" {
		claims, err := b.decodeIDToken(ctx, hint)
		if err != nil {
			b.renderError(w, r, &UserError{Status: http.StatusBadRequest, Title: "Неверный запрос на выход", Message: "Электронный дневник прислал неверный запрос на выход. Закройте браузер, чтобы выйти.", Err: err})
			return
		}
		hintSub, _ = claims["sub"].(string)
		hintSID, _ = claims["sid"].(string)
		aud := audiences(claims["aud"])
		if clientID == "" && len(aud) == 1 {
			clientID = aud[0]
		} else if clientID != "" && !slices.Contains(aud, clientID) {
			b.renderError(w, r, &UserError{Status: http.StatusBadRequest, Title: "Неверный запрос на выход", Message: "Электронный дневник прислал неверный запрос на выход. Закройте браузер, чтобы выйти."})
			return
		}
		// The account the token names, from the sub its diary saw (tokens.subject).
		hintSub = b.hintAccount(ctx, hintSub, hintSID, clientID)
	}
	if postLogout != "" {
		if _, err := b.postLogoutRedirect(ctx, clientID, postLogout, ""); err != nil {
			b.renderError(w, r, err)
			return
		}
	}
	bs, _, err := b.currentSession(ctx, r)
	if err != nil {
		b.renderError(w, r, err)
		return
	}
	confirmed := hint != "" && (bs == nil || bs.AccountID == hintSub)
	if r.Method == http.MethodPost && r.PostForm.Get("csrf") == "" && hint != "" {
		// RP-Initiated Logout by POST (RP-Initiated Logout 1.0 §2): a form from the diary's page
		// or a request from the diary's server. The ID token, which this broker signed, names the
		// person and the session (sid): that session ends wherever the request comes from.
		n, err := b.store.DeleteBrowserSessionsBySID(ctx, hintSID, hintSub)
		if err != nil {
			b.renderError(w, r, err)
			return
		}
		if n > 0 {
			if err := b.store.Audit(ctx, "account:"+hintSub, "logout", clientID, map[string]any{"by": "sid"}); err != nil {
				b.renderError(w, r, err)
				return
			}
		}
		if bs == nil || bs.AccountID != hintSub {
			// No session of that person in this browser (the diary's server, or another person
			// here): nothing else to end.
			b.finishLogout(w, r, logoutReturn{ClientID: clientID, URI: postLogout, State: r.Form.Get("state")})
			return
		}
		confirmed = true
	} else if r.Method == http.MethodPost {
		if !b.checkCSRF(r) {
			b.renderError(w, r, &UserError{Status: http.StatusForbidden, Title: "Страница устарела", Message: "Форма устарела. Обновите страницу и нажмите «Выйти» ещё раз."})
			return
		}
		confirmed = true
	}
	if !confirmed && bs != nil {
		browser := b.browserID(w, r)
		hidden := map[string]string{}
		for _, k := range []string{"post_logout_redirect_uri", "state", "client_id"} {
			if v := r.Form.Get(k); v != "" {
				hidden[k] = v
			}
		}
		b.render(w, r, http.StatusOK, "logout", pageData{Title: "Выход", CSRF: b.csrfToken(browser), Hidden: hidden})
		return
	}
	if bs != nil {
		if err := b.store.DeleteBrowserSession(ctx, bs.IDHash); err != nil {
			b.renderError(w, r, err)
			return
		}
		if err := b.store.Audit(ctx, "account:"+bs.AccountID, "logout", clientID, nil); err != nil {
			b.renderError(w, r, err)
			return
		}
	}
	b.clearCookie(w, b.cfg.Session.CookieName)
	b.clearCookie(w, b.cfg.Session.BrowserCookieName)
	back := logoutReturn{ClientID: clientID, URI: postLogout, State: r.Form.Get("state"), At: time.Now()}
	if bs != nil {
		back.Sub, back.SID, back.MAC = bs.AccountID, bs.SID, b.browserMAC("frontchannel\x00"+bs.AccountID+"\x00"+bs.SID)
	}
	if to := b.upstreamLogoutURL(); to != "" {
		// ESIA keeps a session of its own: end it too, then come back to /oauth2/logout/done,
		// which finishes where the relying party asked.
		b.setCookie(w, logoutCookie, back.encode(), logoutPending)
		http.Redirect(w, r, to, http.StatusFound)
		return
	}
	b.finishLogout(w, r, back)
}

// logoutCookie carries where a logout ends while the browser visits ESIA's logout. It stays
// until the browser is back from ESIA: while it is there, ESIA's session may still be open, and
// the next ESIA login from this browser goes through ESIA's logout first.
const logoutCookie = "esia_broker_logout"

// logoutPending is how long a logout whose ESIA step did not complete is remembered.
const logoutPending = 24 * time.Hour

// logoutReturn is where a logout ends: a relying party's registered post-logout URI with its
// state, or (URI empty) the broker's «Вы вышли» page; or, with Login set, the login request to
// continue once ESIA's session has ended.
type logoutReturn struct {
	ClientID, URI, State string
	Login, Connector     string
	// Sub and SID name the browser session that ended, for the diaries' front-channel logout
	// frames; MAC authenticates them (the cookie that carries them through ESIA's logout is the
	// browser's).
	Sub, SID, MAC string
	// At is when the logout began: a login in this browser before the logout completes must
	// have authenticated at the upstream after it.
	At time.Time
}

func (l logoutReturn) encode() string {
	v := url.Values{"c": {l.ClientID}, "u": {l.URI}, "s": {l.State}, "l": {l.Login}, "n": {l.Connector}, "t": {strconv.FormatInt(l.At.Unix(), 10)},
		"a": {l.Sub}, "i": {l.SID}, "m": {l.MAC}}
	return base64.RawURLEncoding.EncodeToString([]byte(v.Encode()))
}

// freshLeeway allows for the clocks of the broker and the upstream.
const freshLeeway = 30 * time.Second

// checkFresh refuses a login that had to be fresh but was answered from an older upstream
// session: ESIA's single sign-on answers without asking, and only the ID token's auth_time
// tells. A login must be fresh when the relying party asked (prompt=login: after the request
// began; max_age: within it) or a logout of this browser has not come back from ESIA yet (after
// the logout began). The fresh=1 of the continued login only skips the trip through ESIA's
// logout; this check does not depend on anything the browser says.
func (b *Broker) checkFresh(r *http.Request, connID string, lr *storage.LoginRequest, id *upstream.Identity) error {
	if _, ok := b.connectors[connID].(upstream.Logout); !ok {
		return nil // only ESIA keeps a session of its own that the broker ends and checks
	}
	var since time.Time
	later := func(t time.Time) {
		if t.After(since) {
			since = t
		}
	}
	q, _ := url.ParseQuery(lr.AuthorizeQuery)
	if slices.Contains(strings.Fields(q.Get("prompt")), "login") {
		later(lr.CreatedAt)
	}
	if n, err := strconv.ParseInt(q.Get("max_age"), 10, 64); err == nil && n >= 0 {
		later(time.Now().Add(-time.Duration(n) * time.Second))
	}
	if c, err := r.Cookie(b.cookieName(logoutCookie)); err == nil {
		if back, ok := decodeLogoutReturn(c.Value); ok {
			later(back.At)
		}
	}
	if since.IsZero() {
		return nil
	}
	if id.AuthTimeErr != nil {
		b.logger(r.Context()).Warn("the upstream's ID token did not check out: its auth_time is unknown", "connector", connID, "err", id.AuthTimeErr)
	}
	if !id.AuthTime.IsZero() && !id.AuthTime.Before(since.Add(-freshLeeway)) {
		return nil
	}
	b.metrics.logins.WithLabelValues(connID, "not_fresh").Inc()
	return &UserError{Status: http.StatusForbidden, Title: "Войдите заново", Upstream: connID,
		Err:     errors.New("the upstream answered from a session older than the login had to be"),
		Message: "Госуслуги впустили без входа: на этом устройстве ещё открыт прежний сеанс Госуслуг. Нажмите «Попробовать снова» — прежний сеанс будет закрыт, и Госуслуги спросят вход.",
		Retry:   "/login/" + url.PathEscape(connID) + "?login=" + url.QueryEscape(lr.ID)}
}

// mustEndUpstreamSession tells whether a trip upstream for lr must not reuse the upstream's
// own session: a logout of this browser is still pending, or the relying party asked for a
// fresh login.
func (b *Broker) mustEndUpstreamSession(r *http.Request, lr *storage.LoginRequest) bool {
	if _, err := r.Cookie(b.cookieName(logoutCookie)); err == nil {
		return true
	}
	q, _ := url.ParseQuery(lr.AuthorizeQuery)
	return slices.Contains(strings.Fields(q.Get("prompt")), "login") || q.Has("max_age")
}

func decodeLogoutReturn(s string) (logoutReturn, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) > 4096 {
		return logoutReturn{}, false
	}
	v, err := url.ParseQuery(string(b))
	if err != nil {
		return logoutReturn{}, false
	}
	at, _ := strconv.ParseInt(v.Get("t"), 10, 64)
	return logoutReturn{ClientID: v.Get("c"), URI: v.Get("u"), State: v.Get("s"), Login: v.Get("l"), Connector: v.Get("n"), At: time.Unix(at, 0),
		Sub: v.Get("a"), SID: v.Get("i"), MAC: v.Get("m")}, true
}

// upstreamLogoutURL is where to end the upstream's own session (ESIA's), coming back to
// /oauth2/logout/done; "" when no upstream keeps one.
func (b *Broker) upstreamLogoutURL() string {
	for _, c := range b.connOrder {
		if lo, ok := c.(upstream.Logout); ok {
			if u := lo.UpstreamLogoutURL(b.issuer() + "/oauth2/logout/done"); u != "" {
				return u
			}
		}
	}
	return ""
}

// postLogoutRedirect checks a post-logout redirect URI against the client's registration and
// returns it with state added.
func (b *Broker) postLogoutRedirect(ctx context.Context, clientID, uri, state string) (string, error) {
	client, err := b.store.Client(ctx, clientID)
	if err != nil || !slices.Contains(client.PostLogoutRedirectURIs, uri) {
		return "", &UserError{Status: http.StatusBadRequest, Title: "Неверный адрес возврата", Message: "Адрес, на который дневник просит вернуться после выхода, не зарегистрирован. Закройте браузер, чтобы выйти."}
	}
	u, err := url.Parse(uri)
	if err != nil {
		return "", &UserError{Status: http.StatusBadRequest, Title: "Неверный адрес возврата", Message: "Адрес, на который дневник просит вернуться после выхода, повреждён. Закройте браузер, чтобы выйти.", Err: err}
	}
	if state != "" {
		q := u.Query()
		q.Set("state", state)
		u.RawQuery = q.Encode()
	}
	return u.String(), nil
}

// finishLogout sends the browser where the logout was asked to end. When diaries the person
// used registered a frontchannel_logout_uri (Front-Channel Logout 1.0), the «Вы вышли» page
// loads each in a hidden frame, with iss and sid, and then goes on to the diary's return
// address, if one was asked for.
func (b *Broker) finishLogout(w http.ResponseWriter, r *http.Request, back logoutReturn) {
	to := ""
	if back.URI != "" {
		var err error
		if to, err = b.postLogoutRedirect(r.Context(), back.ClientID, back.URI, back.State); err != nil {
			b.renderError(w, r, err)
			return
		}
	}
	frames, origins, err := b.frontchannelFrames(r.Context(), back)
	if err != nil {
		b.logger(r.Context()).Warn("front-channel logout frames left out", "err", err)
	}
	if len(frames) == 0 && to != "" {
		http.Redirect(w, r, to, http.StatusFound)
		return
	}
	if len(frames) > 0 {
		w.Header().Set("Content-Security-Policy", contentSecurityPolicy+"; frame-src "+strings.Join(origins, " "))
	}
	b.render(w, r, http.StatusOK, "logged_out", pageData{Title: "Вы вышли", Frames: frames, ReturnURI: to, Refresh: to})
}

// frontchannelFrames returns the front-channel logout URIs, with iss and sid, of the diaries
// the ended session gave codes to, and their origins.
func (b *Broker) frontchannelFrames(ctx context.Context, back logoutReturn) ([]string, []string, error) {
	if back.SID == "" || !hmac.Equal([]byte(back.MAC), []byte(b.browserMAC("frontchannel\x00"+back.Sub+"\x00"+back.SID))) {
		return nil, nil, nil
	}
	uris, err := b.store.FrontchannelLogoutURIs(ctx, back.Sub, back.SID)
	if err != nil {
		return nil, nil, err
	}
	var frames, origins []string
	for _, raw := range uris {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			continue
		}
		q := u.Query()
		q.Set("iss", b.issuer())
		q.Set("sid", back.SID)
		u.RawQuery = q.Encode()
		frames = append(frames, u.String())
		if o := u.Scheme + "://" + u.Host; !slices.Contains(origins, o) {
			origins = append(origins, o)
		}
	}
	return frames, origins, nil
}

// logoutDone is where ESIA's logout comes back. The return address is checked again against
// the client's registration: the cookie only says which one was asked for.
func (b *Broker) logoutDone(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(b.cookieName(logoutCookie))
	if err != nil {
		// No logout under way in this browser: say «Вы вышли» only when nobody is logged in.
		if bs, _, err := b.currentSession(r.Context(), r); err == nil && bs != nil {
			http.Redirect(w, r, "/account", http.StatusFound)
			return
		}
		b.render(w, r, http.StatusOK, "logged_out", pageData{Title: "Вы вышли"})
		return
	}
	back, _ := decodeLogoutReturn(c.Value)
	b.clearCookie(w, logoutCookie)
	if back.Login != "" {
		// ESIA's session has ended: continue the login that had to wait for it.
		if _, ok := b.connectors[back.Connector]; ok {
			http.Redirect(w, r, "/login/"+url.PathEscape(back.Connector)+"?"+url.Values{"login": {back.Login}, "fresh": {"1"}}.Encode(), http.StatusFound)
			return
		}
		back = logoutReturn{}
	}
	b.finishLogout(w, r, back)
}

func audiences(v any) []string {
	switch a := v.(type) {
	case string:
		return []string{a}
	case []any:
		out := make([]string, 0, len(a))
		for _, x := range a {
			if s, ok := x.(string); ok {
				out = append(out, s)
			}
		}
		return out
	case []string:
		return a
	}
	return nil
}

// loginFailure names why an upstream login failed, for the metric: cancelled (the person
// refused at ESIA), unconfirmed, expired, upstream_refused (the broker's configuration),
// upstream_unavailable, or upstream_error. Only the last three are the service's failures.
func loginFailure(err error) string {
	var ue *UserError
	if errors.As(err, &ue) && ue.Title == errUnconfirmed(nil).Title {
		return "unconfirmed"
	}
	switch esia.Classify(err) {
	case esia.ClassCancelled:
		return "cancelled"
	case esia.ClassUnconfirmed:
		return "unconfirmed"
	case esia.ClassExpired:
		return "expired"
	case esia.ClassConfiguration:
		return "upstream_refused"
	case esia.ClassUnavailable:
		return "upstream_unavailable"
	}
	return "upstream_error"
}

// boundedCode is an ESIA code for a metric label: one of esia.Codes, "other", or "".
func boundedCode(code string) string {
	if code == "" {
		return ""
	}
	if _, ok := esia.LookupCode(code); ok {
		return code
	}
	return "other"
}

// home is the broker's own start page («/»), where the address on an invite slip leads: the
// region's name, «Войти через Госуслуги» (then the account page, where codes are entered and
// children managed), «Вход для детей до 14 лет», and the region's diaries.
func (b *Broker) home(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	clients, err := b.store.Clients(ctx)
	if err != nil {
		b.renderError(w, r, err)
		return
	}
	var diaries []diaryLink
	for _, c := range clients {
		if c.HomeURL != "" && c.Name != "" {
			diaries = append(diaries, diaryLink{Name: c.Name, URL: c.HomeURL})
		}
	}
	links := make([]connectorLink, 0, len(b.connOrder))
	for _, c := range b.connOrder {
		links = append(links, connectorLink{ID: c.ID(), Name: c.DisplayName()})
	}
	msg := ""
	if bs, a, err := b.currentSession(ctx, r); err == nil && bs != nil {
		msg = "Вы вошли как " + storage.FullName(a.FamilyName, a.GivenName, a.MiddleName) + ". Откройте свой электронный дневник или личный кабинет."
	}
	b.render(w, r, http.StatusOK, "home", pageData{Title: b.cfg.Region.Name, Connectors: links, ChildLogin: b.cfg.Children.PasswordAccounts,
		Diaries: diaries, CSRF: b.csrfToken(b.browserID(w, r)), Message: msg})
}

// accountLogin starts a login from the start page, without a diary's authorization request: it
// ends on the account page (ESIA), or back on the start page (a child's login).
func (b *Broker) accountLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if b.csrfRefused(w, r) {
		return
	}
	id := r.PostFormValue("connector")
	_, known := b.connectors[id]
	if !known && !(id == "child" && b.cfg.Children.PasswordAccounts) {
		b.renderError(w, r, &UserError{Status: http.StatusNotFound, Title: "Способ входа не найден", Message: "Такого способа входа нет. Вернитесь на главную страницу и выберите вход ещё раз."})
		return
	}
	lr := &storage.LoginRequest{ID: uuid.NewString(), BrowserHash: hashToken(b.browserID(w, r)), ExpiresAt: time.Now().Add(b.cfg.Session.LoginTimeout)}
	if err := b.store.CreateLoginRequest(ctx, lr); err != nil {
		b.renderError(w, r, err)
		return
	}
	to := "/login/" + url.PathEscape(id) + "?login=" + url.QueryEscape(lr.ID)
	if id == "child" {
		to = "/child/login?login=" + url.QueryEscape(lr.ID)
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// accountOnly tells whether a login request came from the start page (no diary's authorization,
// no diary's link intent).
func accountOnly(lr *storage.LoginRequest) bool {
	return lr.AuthorizeQuery == "" && lr.LinkIntent == ""
}
