package broker

import (
	"errors"
	"net/http"

	"github.com/esia-broker/esia-broker/upstream"
)

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

func (e *UserError) Error() string {
	if e.Err != nil {
		return e.Title + ": " + e.Err.Error()
	}
	return e.Title
}

func (e *UserError) Unwrap() error { return e.Err }

func errUnconfirmed(err error) *UserError {
	return &UserError{Status: http.StatusForbidden, Title: "Учётная запись Госуслуг не подтверждена",
		Message: "В электронный дневник входят только с подтверждённой учётной записью Госуслуг: так данные детей защищены от посторонних. " +
			"Подтвердить личность можно в МФЦ, онлайн через банк или на Почте России, а затем войти снова.",
		Calm: true, HelpURL: "https://www.gosuslugi.ru/", HelpText: "Открыть Госуслуги (в профиле — «Подтвердить учётную запись»)", Err: err}
}

// upstreamPage is the page a parent can act on for a failed upstream login of connector
// connID: ESIA's ("esia") names Госуслуги, another connector «сервис входа». Anything that is
// not an *upstream.Error is returned as it is.
func upstreamPage(connID string, err error) error {
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
			return errUnconfirmed(err)
		}
		return &UserError{Status: http.StatusBadGateway, Title: "Сервис входа отклонил вход", Message: "Сервис входа отклонил запрос. Попробуйте ещё раз; если ошибка повторится, сообщите в службу поддержки.", Err: err}
	}
	switch e.Kind {
	case upstream.Cancelled:
		return &UserError{Status: http.StatusBadRequest, Title: "Вход отменён", Err: err,
			Message: "Вы отменили вход на Госуслугах. Чтобы открыть дневник, войдите ещё раз."}
	case upstream.Unconfirmed:
		return errUnconfirmed(err)
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
