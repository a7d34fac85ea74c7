package pages

import (
	"errors"
	"net/http"
	"strconv"
	"time"
)

// The catalogue of the Russian texts the handlers show: each refusal a page explains, and the
// messages of the forms. Handlers name them; they hold no Russian of their own.

// PasswordsOff is the page of a password path in a region that allows only ESIA.
var PasswordsOff = &UserError{Status: http.StatusForbidden, Title: "Вход по логину и паролю отключён",
	Message: "В этом регионе в электронный дневник входят только через Госуслуги. Ребёнку младше 14 лет родитель может зарегистрировать учётную запись на Госуслугах (в разделе «Дети» своей учётной записи); с ней ребёнок входит кнопкой «Войти через Госуслуги»."}

// OtherBrowser is the page of a step of a login begun in another window or browser.
var OtherBrowser = &UserError{Status: http.StatusForbidden, Title: "Вход не завершён", Message: "Вход был начат в другом окне или браузере. Вернитесь в электронный дневник и войдите снова."}

// ChildTooOld is the page of a child of 14 or over at the children's login.
var ChildTooOld = &UserError{Status: http.StatusForbidden, Title: "Входите через Госуслуги",
	Message: "С 14 лет вход в электронный дневник — только через Госуслуги, с собственной подтверждённой учётной записью. Привязка родителя к дневнику сохраняется."}

// ChildLoginDisabled is the page of a disabled sub-account's login.
var ChildLoginDisabled = &UserError{Status: http.StatusForbidden, Title: "Вход по логину отключён",
	Message: "Вход с этим логином отключён. Если у тебя есть своя учётная запись на Госуслугах, входи кнопкой «Войти через Госуслуги»; иначе обратись к родителю."}

// ChildNoRight is the page of a sub-account whose student left or has no parent linked.
var ChildNoRight = &UserError{Status: http.StatusForbidden, Title: "Учётная запись отключена",
	Message: "Вход с этим логином отключён: обучающийся выбыл из школы или к нему больше не привязан ни один родитель. Обратитесь к родителю или в школу."}

// KeysOff is the page of the activation key in a region without the mobile app.
var KeysOff = &UserError{Status: http.StatusServiceUnavailable, Title: "Ключи недоступны", Message: "Подключение мобильного приложения в этом регионе не настроено."}

// NoSuchConnectorHere is the page of an unknown way to log in on the start page.
var NoSuchConnectorHere = &UserError{Status: http.StatusNotFound, Title: "Способ входа не найден", Message: "Такого способа входа нет. Вернитесь на главную страницу и выберите вход ещё раз."}

// NotFound is the page of an address with no page.
var NotFound = &UserError{Status: http.StatusNotFound, Title: "Страница не найдена", Message: "Такой страницы нет. Проверьте адрес или вернитесь в электронный дневник."}

// MethodNotAllowed is the page of a method an address does not take.
var MethodNotAllowed = &UserError{Status: http.StatusMethodNotAllowed, Title: "Действие недоступно", Message: "Этот адрес не принимает такой запрос. Вернитесь в электронный дневник и попробуйте снова."}

// AccountDisabled is the page of an account an administrator disabled.
var AccountDisabled = &UserError{Status: http.StatusForbidden, Title: "Учётная запись отключена", Message: "Вход с этой учётной записью отключён администратором. Обратитесь в школу или в службу поддержки."}

// NotYourChild is the page of a pick of a student not linked to the account.
var NotYourChild = &UserError{Status: http.StatusBadRequest, Title: "Ребёнок не найден", Message: "Этот ребёнок не привязан к вашей учётной записи. Вернитесь назад и выберите ребёнка из списка."}

// LoginNeeded is the page of a page that needs a session, without one.
var LoginNeeded = &UserError{Status: http.StatusUnauthorized, Title: "Нужно войти", Message: "Сеанс истёк или вы ещё не вошли. Откройте электронный дневник и войдите через Госуслуги."}

// ChildCodes is the page of a child's sub-account where codes are entered.
var ChildCodes = &UserError{Status: http.StatusForbidden, Title: "Код вводит родитель",
	Message: "Учётная запись ребёнка не может вводить пригласительные коды. Код вводит родитель, войдя через Госуслуги со своей учётной записью."}

// NoRole is the page of a code sent without a role.
var NoRole = &UserError{Status: http.StatusBadRequest, Title: "Неверный запрос", Message: "Роль не выбрана. Вернитесь назад и выберите роль."}

// NoSuchConnector is the page of an unknown way to log in.
var NoSuchConnector = &UserError{Status: http.StatusNotFound, Title: "Способ входа не найден", Message: "Такого способа входа нет. Вернитесь в электронный дневник и нажмите «Войти» ещё раз."}

// NoConnectors is the page of a link intent when no way to log in is configured.
var NoConnectors = &UserError{Status: http.StatusServiceUnavailable, Title: "Вход недоступен", Message: "Не настроен ни один способ входа. Сообщите в службу поддержки."}

// BadLogoutRequest is the page of a logout request that cannot be read.
var BadLogoutRequest = &UserError{Status: http.StatusBadRequest, Title: "Неверный запрос", Message: "Запрос на выход повреждён. Закройте браузер, чтобы выйти."}

// LogoutFormExpired is the page of a logout confirmation from another browser.
var LogoutFormExpired = &UserError{Status: http.StatusForbidden, Title: "Страница устарела", Message: "Форма устарела. Обновите страницу и нажмите «Выйти» ещё раз."}

// UnregisteredReturn is the page of a post-logout address the diary did not register.
var UnregisteredReturn = &UserError{Status: http.StatusBadRequest, Title: "Неверный адрес возврата", Message: "Адрес, на который дневник просит вернуться после выхода, не зарегистрирован. Закройте браузер, чтобы выйти."}

// FormExpired is the page of a form without this browser's CSRF token.
var FormExpired = &UserError{Status: http.StatusForbidden, Title: "Страница устарела", Message: "Форма устарела или открыта в другом браузере. Вернитесь назад, обновите страницу и попробуйте снова."}

// Busy is the page of a request that found every password check slot taken.
var Busy = &UserError{Status: http.StatusServiceUnavailable, Title: "Сервис перегружен",
	Message: "Сейчас входят очень многие. Подождите несколько секунд и попробуйте снова."}

// Unreachable is the page of an upstream that could not be reached to start a login.
func Unreachable(err error) *UserError {
	return &UserError{Status: http.StatusBadGateway, Title: "Сервис входа недоступен", Message: "Не удалось связаться с сервисом входа. Попробуйте ещё раз через несколько минут.", Err: err}
}

// ForeignCallback is the page of an upstream's answer that came to another browser than the
// one the login began in.
func ForeignCallback(connID string) *UserError {
	return &UserError{Status: http.StatusForbidden, Title: "Вход не завершён", Upstream: connID, Err: errors.New("the upstream's answer came to another browser"),
		Message: "Ответ сервиса входа пришёл не в тот браузер, где начинался вход. Вернитесь в электронный дневник и войдите снова."}
}

// NotFresh is the page of a login that had to be fresh but was answered from an older upstream
// session; retry goes through the upstream's logout first.
func NotFresh(connID, retry string) *UserError {
	return &UserError{Status: http.StatusForbidden, Title: "Войдите заново", Upstream: connID,
		Err:     errors.New("the upstream answered from a session older than the login had to be"),
		Message: "Госуслуги впустили без входа: на этом устройстве ещё открыт прежний сеанс Госуслуг. Нажмите «Попробовать снова» — прежний сеанс будет закрыт, и Госуслуги спросят вход.",
		Retry:   retry}
}

// The reasons a diary's link intent may not be taken by the account that logged in.
const (
	LinkNotThisStudent = "Дневник просил привязать учётную запись самого обучающегося, а дата рождения в вашей учётной записи Госуслуг не совпадает с данными школы. Обучающийся должен войти со своей учётной записью."
	LinkNotAdult       = "Привязать ребёнка как родитель может только совершеннолетний. Попросите родителя войти через Госуслуги со своей учётной записью."
	LinkNoBirthdate    = "Госуслуги не передали дату рождения вашей учётной записи, поэтому привязка невозможна. Проверьте данные на Госуслугах."
	LinkNotThisAccount = "С этой учётной записью привязка невозможна."
)

// LinkRefused is the page of a diary's link intent the account may not take, for reason (one
// of the Link… texts).
func LinkRefused(reason string, err error) *UserError {
	return &UserError{Status: http.StatusForbidden, Title: "Привязка невозможна", Message: reason, Err: err}
}

// IntentGone is the page of a link intent used or expired.
func IntentGone(err error) *UserError {
	return &UserError{Status: http.StatusGone, Title: "Ссылка для привязки устарела", Err: err,
		Message: "Ссылка для привязки к Госуслугам уже использована или устарела. Вернитесь в дневник и нажмите «выполнить привязку к ЕСИА» ещё раз."}
}

// IntentElsewhere is the page of a link intent another browser opened first.
func IntentElsewhere(err error) *UserError {
	return &UserError{Status: http.StatusForbidden, Title: "Ссылка открыта в другом браузере",
		Message: "Эту ссылку для привязки уже открыли в другом браузере. Вернитесь в дневник и нажмите «выполнить привязку к ЕСИА» ещё раз.", Err: err}
}

// The page of a diary's link intent completed.
const (
	IntentDoneTitle = "Привязка к Госуслугам выполнена"
	IntentDone      = "Учётная запись Госуслуг привязана к дневнику. Теперь входите в дневник через Госуслуги."
)

// LogoutHintRefused is the page of a logout whose ID token hint is not one of the broker's, or
// names another diary.
func LogoutHintRefused(err error) *UserError {
	return &UserError{Status: http.StatusBadRequest, Title: "Неверный запрос на выход", Message: "Электронный дневник прислал неверный запрос на выход. Закройте браузер, чтобы выйти.", Err: err}
}

// BrokenReturn is the page of a registered post-logout address that does not parse.
func BrokenReturn(err error) *UserError {
	return &UserError{Status: http.StatusBadRequest, Title: "Неверный адрес возврата", Message: "Адрес, на который дневник просит вернуться после выхода, повреждён. Закройте браузер, чтобы выйти.", Err: err}
}

// KeyRefused is the page of an activation key asked for by an account that may no longer log in.
func KeyRefused(err error) *UserError {
	return &UserError{Status: http.StatusForbidden, Title: "Ключ не выдан", Message: "С этой учётной записью входить больше нельзя, поэтому ключ для приложения не выдаётся.", Err: err}
}

// TooManyRequests is the page of an address over its rate limit, free again in secs seconds.
func TooManyRequests(secs int) *UserError {
	return &UserError{Status: http.StatusTooManyRequests, Title: "Слишком много запросов",
		Message: "С вашего адреса пришло слишком много запросов. Подождите " + strconv.Itoa(secs) + " с и попробуйте снова."}
}

// InternalPlain is the plain-text answer when not even the error page can be drawn.
const InternalPlain = "Внутренняя ошибка"

// AuthorizeRefusal is the page of a diary's authorization request that cannot be sent back to
// the diary (its client or redirect URI is not registered): errorField is the OAuth error,
// aboutRedirect whether its hint is about the redirect URI.
func AuthorizeRefusal(errorField string, aboutRedirect bool, requestID string) *Error {
	msg := "Электронный дневник прислал неправильный запрос на вход. Вернитесь в дневник и попробуйте снова; если ошибка повторится, сообщите в службу поддержки."
	switch {
	case errorField == "invalid_client":
		msg = "Электронный дневник, с которого вы пришли, не зарегистрирован для входа. Сообщите в службу поддержки."
	case errorField == "invalid_request" && aboutRedirect:
		msg = "Адрес возврата в электронный дневник не зарегистрирован. Сообщите в службу поддержки."
	}
	return &Error{Frame: Frame{Title: "Ошибка запроса на вход"}, Message: msg, RequestID: requestID}
}

// scopeText says what each scope gives a diary, on the consent page.
var scopeText = map[string]string{
	"openid":         "идентификатор вашей учётной записи",
	"profile":        "фамилию, имя, отчество и дату рождения",
	"students":       "список привязанных детей: школа, класс, фамилия и имя",
	"esia":           "идентификатор учётной записи на Госуслугах",
	"offline_access": "доступ без повторного входа, пока вы не выйдете",
}

// ScopeItems are the consent page's lines for scopes; kids tells whether the account is a
// parent (a student is not asked about children).
func ScopeItems(scopes []string, kids bool) []string {
	var items []string
	for _, s := range scopes {
		t, ok := scopeText[s]
		if s == "students" && !kids {
			t = "сведения о вашей учёбе: школа, класс, фамилия и имя"
		}
		if ok {
			items = append(items, t)
		}
	}
	return items
}

// The messages of the invite code form.
const (
	CodeMissing         = "Введите код с бланка: 12 букв и цифр, например 7KQ4-M2XD-9PRT."
	CodeWrong           = "Код не подошёл. Проверьте, правильно ли он введён: 12 букв и цифр, например 7KQ4-M2XD-9PRT."
	CodeUsed            = "Этот код уже использован. Если ребёнок не появился в списке, попросите новый код у классного руководителя."
	CodeExpired         = "Срок действия кода истёк. Попросите новый код у классного руководителя."
	CodeRevoked         = "Этот код заменён новым. Попросите действующий код у классного руководителя."
	CodeOtherRole       = "Это код для другой роли. Вернитесь назад и выберите роль, указанную на бланке с кодом."
	CodeAlreadyLinked   = "Этот ребёнок уже привязан к вашей учётной записи."
	CodeStudentLeft     = "Обучающийся выбыл из школы, поэтому код больше не действует."
	CodeChildAccount    = "Учётная запись ребёнка не может вводить пригласительные коды. Код вводит родитель, войдя через Госуслуги со своей учётной записью."
	CodeNotAdult        = "Код родителя может ввести только совершеннолетний. Если вы обучающийся, вернитесь назад и выберите роль «Обучающийся»."
	CodeNoBirthdate     = "Госуслуги не передали дату рождения вашей учётной записи, поэтому код ввести нельзя. Проверьте данные на Госуслугах и войдите снова."
	CodeNotThisStudent  = "Код обучающегося может ввести только сам обучающийся: дата рождения в вашей учётной записи Госуслуг не совпадает с данными школы."
	CodeAcceptedParent  = "Готово: ребёнок привязан к вашей учётной записи."
	CodeAcceptedStudent = "Готово: ваш дневник привязан к учётной записи."
)

// CodesLocked says when codes may be tried again.
func CodesLocked(until time.Time) string {
	return "Слишком много неверных кодов. Попробуйте снова после " + until.In(Moscow).Format("15:04") + " (по московскому времени)."
}

// The messages of the children's login form.
const ChildBadCredentials = "Неверный логин или пароль."

// ChildLoginLocked says when the child may try again.
func ChildLoginLocked(until time.Time) string {
	return "Слишком много неудачных попыток. Попробуйте снова после " + until.In(Moscow).Format("15:04") + " (по московскому времени) или попросите родителя сменить пароль."
}

// The refusals of a child's form on the account page.
const (
	ChildNotGuardian      = "Управлять входом ребёнка может только привязанный к нему родитель."
	ChildTooOldForLogin   = "С 14 лет ребёнок входит через Госуслуги сам; учётная запись по логину не нужна."
	ChildLoginExists      = "У ребёнка уже есть логин: можно только сменить пароль."
	ChildNoLogin          = "У ребёнка ещё нет логина: сначала создайте учётную запись."
	ChildLoginTaken       = "Этот логин уже занят. Придумайте другой."
	ChildLoginFormat      = "Логин: от 3 до 32 латинских букв, цифр, точек, дефисов или подчёркиваний."
	ChildPasswordShort    = "Пароль должен быть не короче 8 символов."
	ChildPasswordLong     = "Пароль должен быть не длиннее 128 символов."
	ChildPasswordIsLogin  = "Пароль не должен совпадать с логином."
	ChildPasswordCommon   = "Этот пароль слишком простой и часто встречается. Придумайте другой."
	ChildPasswordControl  = "В пароле не должно быть управляющих символов (табуляции, перевода строки). Придумайте другой."
	ChildStudentLeft      = "Обучающийся выбыл из школы."
	ChildByChildAccount   = "Учётная запись ребёнка не может управлять входом. Войдите через Госуслуги со своей учётной записью родителя."
	ChildByMinor          = "Управлять входом ребёнка может только совершеннолетний родитель."
	ChildNoBirthdate      = "Госуслуги не передали дату рождения вашей учётной записи, поэтому управлять входом ребёнка нельзя. Проверьте данные на Госуслугах."
	ChildPasswordsOff     = "В этом регионе дети входят только через Госуслуги: учётные записи с логином и паролем отключены."
	ChildNoOwnESIA        = "Ребёнок ещё не входил в дневник со своей учётной записью Госуслуг. Сначала пусть ребёнок войдёт через Госуслуги, затем отключите вход по логину."
	ChildPasswordChanged  = "Пароль изменён. Сообщите ребёнку новый пароль."
	ChildMovedToESIA      = "Вход по логину и паролю отключён: ребёнок входит через Госуслуги со своей учётной записью."
	AccountUnknownAction  = "Неизвестное действие."
	AccountDeviceNotFound = "Устройство не найдено."
	AccountDeviceRevoked  = "Устройство отключено."
)

// ChildCreated is the notice of a sub-account made with login.
func ChildCreated(login string) string {
	return "Учётная запись создана. Логин ребёнка: " + login + "."
}

// ChildGuessLocked says when a parent may try new logins again.
func ChildGuessLocked(until time.Time) string {
	return "Слишком много попыток подобрать логин. Попробуйте снова после " + until.In(Moscow).Format("15:04") + " (по московскому времени)."
}

// LoggedInAs is the start page's line for a person already logged in.
func LoggedInAs(name string) string {
	return "Вы вошли как " + name + ". Откройте свой электронный дневник или личный кабинет."
}

// KeyLifetime is how long an activation key lives, as the key page says it.
func KeyLifetime(minutes int) string { return strconv.Itoa(minutes) + " мин." }
