package broker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/esia-broker/esia-broker/esia"

	"go.opentelemetry.io/otel/trace"
)

// esiaClient is what the ESIA connector needs of the esia package's client.
type esiaClient interface {
	AuthURL(ctx context.Context, state string) (string, error)
	Exchange(ctx context.Context, code string) (*esia.Tokens, error)
	Person(ctx context.Context, accessToken, oid string) (*esia.Person, error)
	LogoutURL(redirectURL string) string
	Probe(ctx context.Context) (*esia.Error, error)
	SetObserver(f func(call string, took time.Duration, err error))
	SetTracer(tp trace.TracerProvider)
}

// ESIAConnector logs people in through ESIA directly, GOST-signed. It admits only confirmed
// accounts.
type ESIAConnector struct {
	client esiaClient
	opts   ESIAOptions

	// The last probe of ESIA (see confirm): at most one a minute, whatever arrives.
	probeMu  sync.Mutex
	probeAt  time.Time
	probeErr *esia.Error
}

// ESIAOptions tune the ESIA connector.
type ESIAOptions struct {
	// KeepESIASession leaves ESIA's own single sign-on session open when a person logs out of
	// the broker. By default logout ends it too (/idp/ext/Logout): on a shared school computer
	// the next parent would otherwise be logged in as the previous one.
	KeepESIASession bool
	// Certificates are the ones the connector depends on (the system's own, ESIA's), for the
	// expiry metric and the log at start.
	Certificates []CertificateInfo
}

// CertificateInfo is a certificate whose expiry the operator watches.
type CertificateInfo struct {
	// Role is client (the system's certificate registered at ESIA) or esia (ESIA's).
	Role      string
	Subject   string
	NotBefore time.Time
	NotAfter  time.Time
}

// NewESIAConnector wraps an ESIA client.
func NewESIAConnector(c *esia.Client, opts ESIAOptions) *ESIAConnector {
	return &ESIAConnector{client: c, opts: opts}
}

// ObserveUpstream implements upstreamObserver: every call to ESIA is reported to f.
func (c *ESIAConnector) ObserveUpstream(f func(call string, took time.Duration, err error)) {
	c.client.SetObserver(f)
}

// TraceUpstream implements upstreamTracer.
func (c *ESIAConnector) TraceUpstream(tp trace.TracerProvider) { c.client.SetTracer(tp) }

// Certificates implements certificateHolder.
func (c *ESIAConnector) Certificates() []CertificateInfo { return c.opts.Certificates }

// UpstreamLogoutURL implements upstreamLogout: ESIA's logout, coming back to returnTo; "" when
// the ESIA session is to be kept.
func (c *ESIAConnector) UpstreamLogoutURL(returnTo string) string {
	if c.opts.KeepESIASession {
		return ""
	}
	return c.client.LogoutURL(returnTo)
}

// ID implements Connector: the callback is /esia/callback.
func (c *ESIAConnector) ID() string { return "esia" }

// DisplayName implements Connector.
func (c *ESIAConnector) DisplayName() string { return "Войти через Госуслуги" }

// LoginURL implements Connector.
func (c *ESIAConnector) LoginURL(ctx context.Context, state string) (string, string, error) {
	u, err := c.client.AuthURL(ctx, state)
	return u, "", err
}

// HandleCallback implements Connector: the code is exchanged, the token checked, the person read,
// and an unconfirmed account refused.
func (c *ESIAConnector) HandleCallback(ctx context.Context, r *http.Request, _ string) (*Identity, error) {
	q := r.URL.Query()
	if err := esia.CallbackError(q); err != nil {
		if esia.Classify(err) == esia.ClassConfiguration {
			return nil, c.confirm(ctx, err)
		}
		return nil, esiaUserError(err)
	}
	tok, err := c.client.Exchange(ctx, q.Get("code"))
	if err != nil {
		return nil, esiaUserError(err)
	}
	p, err := c.client.Person(ctx, tok.AccessToken, tok.Claims.OID)
	if err != nil {
		return nil, esiaUserError(err)
	}
	id := &Identity{
		Subject: tok.Claims.OID, FamilyName: p.LastName, GivenName: p.FirstName, MiddleName: p.MiddleName,
		Birthdate: esia.ISOBirthDate(p.BirthDate), SNILS: p.SNILS, AMR: []string{"esia"}, ACR: ACRTrusted,
		AuthTime: tok.AuthTime, AuthTimeErr: tok.IDTokenErr,
	}
	if !p.Trusted {
		// The broker decides: only a child's own account matching a card gets in unconfirmed.
		id.Unconfirmed, id.ACR, id.Fields = true, ACRUnconfirmedChild, p.Fields
	}
	return id, nil
}

// confirm checks a configuration fault that arrived on the redirect back. That redirect passes
// through the browser, and anyone with a login flow can forge it; before the operator is
// alarmed, the connector asks ESIA itself with a fresh signed request (at most once a minute).
// ESIA refusing that too confirms the fault; otherwise the parent is told ESIA refused this
// login and to try again, and only a warning is logged.
func (c *ESIAConnector) confirm(ctx context.Context, reported error) error {
	c.probeMu.Lock()
	if time.Since(c.probeAt) > time.Minute {
		e, err := c.client.Probe(ctx)
		if err != nil {
			e = nil // ESIA unreachable: nothing confirmed
		}
		c.probeAt, c.probeErr = time.Now(), e
	}
	probed := c.probeErr
	c.probeMu.Unlock()
	if probed != nil && esia.Classify(probed) == esia.ClassConfiguration {
		return esiaUserError(probed)
	}
	code := esia.ErrorCode(reported)
	shown := ""
	if code != "" {
		shown = " (код " + code + ")"
	}
	return &UserError{Status: http.StatusBadGateway, Title: "Госуслуги отклонили вход", Err: fmt.Errorf("not confirmed by a probe of ESIA: %w", reported),
		Message: "Госуслуги не приняли этот вход" + shown + ". Попробуйте войти ещё раз; если ошибка повторится, сообщите в службу поддержки."}
}

func errUnconfirmed(err error) *UserError {
	return &UserError{Status: http.StatusForbidden, Title: "Учётная запись Госуслуг не подтверждена",
		Message: "В электронный дневник входят только с подтверждённой учётной записью Госуслуг: так данные детей защищены от посторонних. " +
			"Подтвердить личность можно в МФЦ, онлайн через банк или на Почте России, а затем войти снова.",
		Calm: true, HelpURL: "https://www.gosuslugi.ru/", HelpText: "Открыть Госуслуги (в профиле — «Подтвердить учётную запись»)", Err: err}
}

// esiaUserError turns what went wrong with ESIA into a page a parent can act on. ESIA's code
// decides before the OAuth error: a wrong client secret comes back as access_denied
// (ESIA-007053), like a person's own refusal (ESIA-007004), and must not tell every parent
// that they cancelled.
func esiaUserError(err error) error {
	var ee *esia.Error
	code := ""
	if errors.As(err, &ee) {
		code = ee.Code
	}
	switch esia.Classify(err) {
	case esia.ClassCancelled:
		return &UserError{Status: http.StatusBadRequest, Title: "Вход отменён", Err: err,
			Message: "Вы отменили вход на Госуслугах. Чтобы открыть дневник, войдите ещё раз."}
	case esia.ClassUnconfirmed:
		return errUnconfirmed(err)
	case esia.ClassExpired:
		return &UserError{Status: http.StatusBadRequest, Title: "Время входа истекло", Err: err,
			Message: "Госуслуги не приняли код входа: он устарел или уже был использован. Войдите ещё раз."}
	case esia.ClassConfiguration:
		info, _ := esia.LookupCode(code)
		hint := info.Operator
		if hint == "" {
			hint = "ESIA refused the broker's request (" + firstNonEmpty(ee.OAuthError, "no OAuth error") + "): check upstream.esia"
		}
		shown := ""
		if code != "" {
			shown = " (код " + code + ")"
		}
		return &UserError{Status: http.StatusServiceUnavailable, Title: "Сервис временно недоступен", Err: err,
			Operator: hint, OperatorCode: code,
			Message: "Вход через Госуслуги сейчас не работает: Госуслуги не приняли запрос электронного дневника" + shown +
				". Это не ошибка в ваших действиях, и повторный вход сейчас не поможет. Ошибка записана для администраторов; попробуйте войти позже."}
	case esia.ClassUnavailable:
		return &UserError{Status: http.StatusServiceUnavailable, Title: "Госуслуги не отвечают", Err: err,
			Message: "Сервис Госуслуг сейчас недоступен или отвечает слишком долго. Попробуйте войти через несколько минут."}
	}
	if code != "" {
		return &UserError{Status: http.StatusBadGateway, Title: "Госуслуги отклонили вход", Err: err,
			Message: "Госуслуги отклонили запрос на вход (код " + code + "). Попробуйте ещё раз; если ошибка повторится, сообщите в службу поддержки этот код."}
	}
	return &UserError{Status: http.StatusBadGateway, Title: "Госуслуги прислали неверный ответ", Err: err,
		Message: "Не удалось завершить вход: ответ Госуслуг не прошёл проверку. Попробуйте ещё раз; если ошибка повторится, сообщите в службу поддержки."}
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
