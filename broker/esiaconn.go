package broker

import (
	"context"
	"errors"
	"net/http"

	"github.com/esia-broker/esia-broker/esia"
)

// esiaClient is what the ESIA connector needs of the esia package's client.
type esiaClient interface {
	AuthURL(ctx context.Context, state string) (string, error)
	Exchange(ctx context.Context, code string) (*esia.Tokens, error)
	Person(ctx context.Context, accessToken, oid string) (*esia.Person, error)
}

// ESIAConnector logs people in through ESIA directly, GOST-signed. It admits only confirmed
// accounts.
type ESIAConnector struct {
	client esiaClient
}

// NewESIAConnector wraps an ESIA client.
func NewESIAConnector(c *esia.Client) *ESIAConnector { return &ESIAConnector{client: c} }

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
	if !p.Trusted {
		return nil, errUnconfirmed(nil)
	}
	return &Identity{
		Subject: tok.Claims.OID, FamilyName: p.LastName, GivenName: p.FirstName, MiddleName: p.MiddleName,
		Birthdate: esia.ISOBirthDate(p.BirthDate), SNILS: p.SNILS, AMR: []string{"esia"}, ACR: "urn:esia:trusted",
	}, nil
}

func errUnconfirmed(err error) *UserError {
	return &UserError{Status: http.StatusForbidden, Title: "Учётная запись Госуслуг не подтверждена",
		Message: "Войти в электронный дневник можно только с подтверждённой учётной записью Госуслуг. " +
			"Подтвердите личность в любом центре обслуживания (МФЦ), онлайн через банк или Почтой России — " +
			"как это сделать, написано на gosuslugi.ru в разделе «Подтверждение учётной записи». " +
			"После подтверждения войдите снова.", Err: err}
}

// esiaUserError turns what went wrong with ESIA into a page a parent can act on.
func esiaUserError(err error) error {
	var ee *esia.Error
	switch {
	case errors.As(err, &ee) && ee.OAuthError == "access_denied":
		return &UserError{Status: http.StatusBadRequest, Title: "Вход отменён", Err: err,
			Message: "Вы отменили вход на Госуслугах. Чтобы открыть дневник, войдите ещё раз."}
	case errors.As(err, &ee) && ee.Code == esia.CodeUnconfirmedAccount:
		return errUnconfirmed(err)
	case errors.As(err, &ee) && ee.Code == esia.CodeCodeInvalid:
		return &UserError{Status: http.StatusBadRequest, Title: "Время входа истекло", Err: err,
			Message: "Госуслуги не приняли код входа: он устарел или уже был использован. Войдите ещё раз."}
	case errors.As(err, &ee) && ee.Code == esia.CodeRequestTime:
		return &UserError{Status: http.StatusBadGateway, Title: "Госуслуги отклонили вход", Err: err,
			Message: "Госуслуги отклонили запрос из-за расхождения времени (код ESIA-007015). Попробуйте ещё раз через минуту; если ошибка повторится, сообщите в службу поддержки."}
	case errors.As(err, &ee) && ee.Code != "":
		return &UserError{Status: http.StatusBadGateway, Title: "Госуслуги отклонили вход", Err: err,
			Message: "Госуслуги отклонили запрос на вход (код " + ee.Code + "). Попробуйте ещё раз; если ошибка повторится, сообщите в службу поддержки этот код."}
	case errors.Is(err, esia.ErrUnavailable):
		return &UserError{Status: http.StatusServiceUnavailable, Title: "Госуслуги не отвечают", Err: err,
			Message: "Сервис Госуслуг сейчас недоступен или отвечает слишком долго. Попробуйте войти через несколько минут."}
	}
	return &UserError{Status: http.StatusBadGateway, Title: "Госуслуги прислали неверный ответ", Err: err,
		Message: "Не удалось завершить вход: ответ Госуслуг не прошёл проверку. Попробуйте ещё раз; если ошибка повторится, сообщите в службу поддержки."}
}
