package pages

// Page is one page: the data its template is drawn from. Each page has its own type, so a
// handler can give a page only the fields its template reads.
type Page interface {
	template() string
	frame() *Frame
}

// Frame is what the layout draws on every page: the title (the page's own when empty), the
// region's brand (set by Render), and a meta refresh.
type Frame struct {
	Title string
	Brand Brand
	// Refresh is where the page goes on its own after a moment.
	Refresh string
}

func (f *Frame) frame() *Frame { return f }

// titles are the pages' titles, where a page has one of its own; Parse parses these pages.
var titles = map[string]string{
	"error":       "",
	"home":        "",
	"start":       "Вход в электронный дневник",
	"logout":      "Выход",
	"logged_out":  "Вы вышли",
	"role":        "Выберите роль",
	"code":        "Введите пригласительный код",
	"code_done":   "Код принят",
	"consent":     "Согласие на обработку персональных данных",
	"picker":      "Выберите ребёнка",
	"account":     "Личный кабинет",
	"child_login": "Вход для детей до 14 лет",
	"key":         "Ключ для мобильного приложения",
	"intent":      "Привязка к Госуслугам",
}

// Linked are the students a page lists: the account's own card and the children it is a
// parent of.
type Linked struct {
	Students []Student
}

// Own are the linked students the account is itself: a student is spoken to as a student.
func (l Linked) Own() []Student { return l.students(true) }

// Kids are the linked students the account is a parent of.
func (l Linked) Kids() []Student { return l.students(false) }

func (l Linked) students(self bool) []Student {
	var out []Student
	for _, s := range l.Students {
		if s.Self == self {
			out = append(out, s)
		}
	}
	return out
}

// Error explains a refusal or a failure (RenderError draws it from a *UserError).
type Error struct {
	Frame
	Message, Retry, RequestID string
	// Calm: a state of the person's own, shown as plain text rather than an alert.
	Calm              bool
	HelpURL, HelpText string
}

// Home is the broker's start page («/»).
type Home struct {
	Frame
	Connectors []Connector
	ChildLogin bool
	Diaries    []Diary
	CSRF       string
	Message    string
}

// Start is the choice of a way to log in for a diary's login request.
type Start struct {
	Frame
	LoginID    string
	Connectors []Connector
	ChildLogin bool
}

// Logout asks to confirm a logout that came without an ID token.
type Logout struct {
	Frame
	CSRF   string
	Hidden map[string]string
}

// LoggedOut says the logout is done; Frames are the diaries' front-channel logout URIs.
type LoggedOut struct {
	Frame
	Frames    []string
	ReturnURI string
}

// Role asks whether the person is a parent or the student.
type Role struct {
	Frame
	LoginID string
}

// Code takes an invite code for a role.
type Code struct {
	Frame
	LoginID, CSRF   string
	Role, RoleValue string
	ForStudent      bool
	Code            string
	FieldError      string
}

// CodeDone says a code was accepted (or a diary's link made) and lists the linked students.
type CodeDone struct {
	Frame
	Linked
	Message, LoginID, RoleValue, ReturnURI string
}

// Consent asks for consent to give a diary the data listed in Items.
type Consent struct {
	Frame
	Linked
	LoginID, CSRF, ClientName string
	Items                     []string
	Version                   string
}

// Picker asks which child the diary opens.
type Picker struct {
	Frame
	LoginID, CSRF string
	Students      []Student
}

// Account is the personal page: the linked students, the children's logins, the apps.
type Account struct {
	Frame
	Linked
	// Message is the account's name.
	Message string
	// SubAccount: a child's login-and-password sub-account (it links nothing).
	SubAccount bool
	// Adult: the account may link a child as a parent.
	Adult                    bool
	Children                 []Child
	Devices                  []Device
	CSRF, Notice, FieldError string
}

// ChildLogin is the login form of a child's sub-account; Code keeps the login typed.
type ChildLogin struct {
	Frame
	LoginID, CSRF, Code, FieldError string
}

// Key shows a one-time activation key for the mobile app; Message is how long it lives.
type Key struct {
	Frame
	Code, Message, ClientName string
}

// Intent shows a diary's link intent before the ESIA login that completes it.
type Intent struct {
	Frame
	ClientName, CSRF string
	Students         []Student
	ForStudent       bool
	Connectors       []Connector
}

func (*Error) template() string      { return "error" }
func (*Home) template() string       { return "home" }
func (*Start) template() string      { return "start" }
func (*Logout) template() string     { return "logout" }
func (*LoggedOut) template() string  { return "logged_out" }
func (*Role) template() string       { return "role" }
func (*Code) template() string       { return "code" }
func (*CodeDone) template() string   { return "code_done" }
func (*Consent) template() string    { return "consent" }
func (*Picker) template() string     { return "picker" }
func (*Account) template() string    { return "account" }
func (*ChildLogin) template() string { return "child_login" }
func (*Key) template() string        { return "key" }
func (*Intent) template() string     { return "intent" }
