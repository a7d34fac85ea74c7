package pages

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestEveryPageRenders draws every page type, empty and filled, through its template: a field
// a template names that its type lacks fails here, not in front of a parent.
func TestEveryPageRenders(t *testing.T) {
	set, err := Parse(Brand{Name: "Дневник Края", SupportPhone: "8 800 000-00-00"})
	if err != nil {
		t.Fatal(err)
	}
	students := []Student{{ID: "s-1", Name: "Иванов Пётр", Class: "5А"}, {ID: "s-2", Name: "Иванова Анна", Class: "9Б", Self: true}}
	conns := []Connector{{ID: "esia", Name: "Войти через Госуслуги"}}
	tests := []struct {
		page Page
		want []string // in the body besides the title and the brand
	}{
		{&Error{Frame: Frame{Title: "Вход отменён"}, Message: "Вы отменили вход.", Retry: "/login/esia?login=1", RequestID: "req-1", Calm: true, HelpURL: "https://www.gosuslugi.ru/", HelpText: "Госуслуги"}, []string{"Вы отменили вход.", "req-1"}},
		{&Home{Frame: Frame{Title: "Дневник Края"}, Connectors: conns, ChildLogin: true, Diaries: []Diary{{Name: "КИАСУО", URL: "https://kiasuo.example/"}}, CSRF: "c", Message: "Вы вошли как Иванова"}, []string{"КИАСУО", "Вы вошли как Иванова"}},
		{&Start{LoginID: "l-1", Connectors: conns, ChildLogin: true}, []string{"Войти через Госуслуги"}},
		{&Logout{CSRF: "c", Hidden: map[string]string{"state": "st-1"}}, []string{"st-1"}},
		{&LoggedOut{Frame: Frame{Refresh: "https://diary.example/bye"}, Frames: []string{"https://diary.example/fc?sid=1"}, ReturnURI: "https://diary.example/bye"}, []string{"https://diary.example/fc?sid=1"}},
		{&Role{LoginID: "l-1"}, []string{"l-1"}},
		{&Code{LoginID: "l-1", CSRF: "c", Role: "родитель", RoleValue: "parent", Code: "7KQ4", FieldError: "Код не подошёл."}, []string{"Код не подошёл.", "7KQ4"}},
		{&CodeDone{Linked: Linked{Students: students}, Message: "Готово", LoginID: "l-1", RoleValue: "parent"}, []string{"Готово", "Иванов Пётр"}},
		{&Consent{Linked: Linked{Students: students}, LoginID: "l-1", CSRF: "c", ClientName: "КИАСУО", Items: []string{"фамилию, имя"}, Version: "3"}, []string{"КИАСУО", "фамилию, имя"}},
		{&Picker{LoginID: "l-1", CSRF: "c", Students: students}, []string{"Иванова Анна"}},
		{&Account{Linked: Linked{Students: students}, Message: "Иванова Мария", Adult: true, CSRF: "c", Notice: "Пароль изменён.",
			Children: []Child{{ID: "s-1", Name: "Иванов Пётр", Login: "petya", Passwords: true}}, Devices: []Device{{ID: "d-1", Client: "Госуслуги", Connected: "01.09.2026 10:00"}}},
			[]string{"Иванова Мария", "Пароль изменён.", "petya", "Госуслуги"}},
		{&ChildLogin{LoginID: "l-1", CSRF: "c", Code: "petya", FieldError: "Неверный логин или пароль."}, []string{"Неверный логин или пароль."}},
		{&Key{Code: "ABCD-EFGH", Message: "10 мин.", ClientName: "Госуслуги"}, []string{"ABCD-EFGH", "10 мин."}},
		{&Intent{ClientName: "КИАСУО", CSRF: "c", Students: students, Connectors: conns}, []string{"КИАСУО", "Иванов Пётр"}},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		name := tc.page.template()
		seen[name] = true
		t.Run(name, func(t *testing.T) {
			w := httptest.NewRecorder()
			if err := set.Render(w, http.StatusOK, tc.page); err != nil {
				t.Fatal(err)
			}
			body := w.Body.String()
			title := tc.page.frame().Title
			if title == "" {
				t.Fatal("the page has no title")
			}
			for _, s := range append([]string{title, "Дневник Края"}, tc.want...) {
				if !strings.Contains(body, s) {
					t.Errorf("the page lacks %q", s)
				}
			}
		})
		// Empty, every page still draws (nothing in a template assumes a field is set).
		t.Run(name+"/empty", func(t *testing.T) {
			empty := map[string]Page{"error": &Error{}, "home": &Home{}, "start": &Start{}, "logout": &Logout{}, "logged_out": &LoggedOut{}, "role": &Role{},
				"code": &Code{}, "code_done": &CodeDone{}, "consent": &Consent{}, "picker": &Picker{}, "account": &Account{}, "child_login": &ChildLogin{},
				"key": &Key{}, "intent": &Intent{}}[name]
			if err := set.Render(httptest.NewRecorder(), http.StatusOK, empty); err != nil {
				t.Fatal(err)
			}
		})
	}
	files, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(f, "templates/"), ".html")
		if name != "layout" && !seen[name] {
			t.Errorf("template %s has no page type in this test", name)
		}
	}
}
