package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/esia-broker/esia-broker/invites"
	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/provider"
	"github.com/esia-broker/esia-broker/storage"
)

// The test roster matches the emulator's personas: parent-two-kids (112-233-445 95) is the
// guardian of s-1 (school 1) and s-2 (school 2); student-15 (567-890-123 43) is s-3; s-4 and
// s-5 have no guardian SNILS (codes); s-5 is 13; parent-three-kids (678-901-234 38) has s-6,
// s-7 and s-8 in two schools.
const testRoster = `student_id,school_id,class,family_name,given_name,middle_name,birthdate,snils,active,guardian1_snils,guardian1_name
s-1,sch-1,7А,Иванов,Алексей,Игоревич,12.09.2013,123-456-789 64,1,112-233-445 95,Иванова Мария Петровна
s-2,sch-2,3Б,Иванова,Дарья,Игоревна,21.05.2017,234-567-890 99,1,112-233-445 95,Иванова Мария Петровна
s-3,sch-1,9В,Кузнецов,Иван,Андреевич,10.01.2011,567-890-123 43,1,,
s-4,sch-1,5А,Петров,Максим,Сергеевич,14.03.2015,,1,,
s-5,sch-1,7Б,Петрова,Ксения,Сергеевна,03.02.2013,,1,,
s-6,sch-1,10А,Смирнов,Павел,Олегович,03.04.2010,789-012-345 23,1,678-901-234 38,Смирнова Ольга Сергеевна
s-7,sch-2,6Б,Смирнова,Вера,Олеговна,15.08.2014,890-123-456 99,1,678-901-234 38,Смирнова Ольга Сергеевна
s-8,sch-2,1А,Смирнов,Глеб,Олегович,27.12.2018,901-234-567 64,1,678-901-234 38,Смирнова Ольга Сергеевна
`

var allSNILS = []string{"112-233-445 95", "123-456-789 64", "234-567-890 99", "345-678-901 23", "456-789-012 38", "567-890-123 43", "678-901-234 38", "789-012-345 23", "890-123-456 99", "901-234-567 64"}

type linkEnv struct {
	codes []string // plain invite codes the test issued: they must not reach the database or logs
	h     *harness
	rp    *rp
	store *storage.Store
	link  *linking.Service
	inv   *invites.Service
}

func newLinkEnv(t *testing.T, s *storage.Store, env ...string) *linkEnv {
	t.Helper()
	conns, _ := esiaUpstream(t, "", 5*time.Second)
	h := newHarnessWith(t, s, conns, env...)
	c := h.client("kiasuo", "secret-secret-secret", "openid", "profile", "offline_access", "students", "esia", "roster:write", "links:write")
	c.Name = "КИАСУО"
	if err := s.UpdateClient(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	d := linking.NewDigester([]byte(strings.Repeat("k", 32))) // the harness's snils_pepper
	inv := invites.NewService(s, d.InviteKey(), invites.DefaultLimits())
	link := linking.NewService(s, d, inv)
	ctx := context.Background()
	for id, name := range map[string]string{"sch-1": "МБОУ СШ № 1", "sch-2": "Гимназия № 2"} {
		if err := s.UpsertSchool(ctx, id, name); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := link.Import(ctx, strings.NewReader(day(testRoster)), linking.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	return &linkEnv{h: h, rp: newRP(t, h, "kiasuo", "secret-secret-secret", "openid", "profile", "students", "esia", "offline_access"), store: s, link: link, inv: inv}
}

var formField = func(name string) *regexp.Regexp {
	return regexp.MustCompile(`name="` + name + `" value="([^"]+)"`)
}

type loginResult struct {
	pages    []string // the titles of the broker pages seen
	final    *http.Response
	body     string
	verifier string
}

func title(body string) string {
	m := regexp.MustCompile(`<h1>([^<]*)</h1>`).FindStringSubmatch(body)
	if m == nil {
		return ""
	}
	return m[1]
}

// esiaLogin runs an RP authorization as persona through the emulator; answer handles each
// broker page (given its body) and returns the next response, or nil to stop there.
func (e *linkEnv) esiaLogin(t *testing.T, br *browser, persona string, extra []oauth2.AuthCodeOption, answer func(body string, resp *http.Response) *http.Response) loginResult {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	opts := append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(verifier), oidc.Nonce("nonce-" + persona)}, extra...)
	u := startESIA(t, e.h, br, e.rp.conf.AuthCodeURL("state-"+persona, opts...))
	resp, err := br.Get(u.String())
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	req := formField("request").FindSubmatch(page)
	if req == nil {
		t.Fatalf("no persona page: %s", page)
	}
	resp, err = br.PostForm(u.String(), url.Values{"request": {string(req[1])}, "persona": {persona}})
	if err != nil {
		t.Fatal(err)
	}
	res := loginResult{verifier: verifier}
	for range 12 {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusFound || resp.StatusCode == http.StatusSeeOther {
			res.final, res.body = resp, string(body)
			return res
		}
		res.pages = append(res.pages, title(string(body)))
		next := answer(string(body), resp)
		if next == nil {
			res.final, res.body = resp, string(body)
			return res
		}
		resp = next
	}
	t.Fatal("too many pages")
	return res
}

// acceptAll accepts consent and fails on anything else.
func (e *linkEnv) acceptAll(t *testing.T, br *browser) func(string, *http.Response) *http.Response {
	return func(body string, resp *http.Response) *http.Response {
		if !strings.Contains(body, `action="/consent"`) {
			t.Fatalf("unexpected page %d: %s", resp.StatusCode, body)
		}
		return e.post(t, br, "/consent", body, url.Values{"decision": {"accept"}})
	}
}

// post submits a broker form, taking csrf and login from the page it was on.
func (e *linkEnv) post(t *testing.T, br *browser, path, page string, v url.Values) *http.Response {
	t.Helper()
	if m := formField("csrf").FindStringSubmatch(page); m != nil {
		v.Set("csrf", m[1])
	}
	if m := formField("login").FindStringSubmatch(page); m != nil && v.Get("login") == "" {
		v.Set("login", m[1])
	}
	resp, err := br.PostForm(e.h.URL+path, v)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

type idClaims struct {
	Sub       string                  `json:"sub"`
	Roles     []string                `json:"roles"`
	Students  []provider.StudentClaim `json:"students"`
	StudentID string                  `json:"student_id"`
	ESIAOID   string                  `json:"esia_oid"`
	Name      string                  `json:"name"`
	AMR       []string                `json:"amr"`
	Extra     map[string]interface{}  `json:"-"`
}

func (e *linkEnv) tokens(t *testing.T, res loginResult) (*oauth2.Token, idClaims) {
	t.Helper()
	loc, _ := url.Parse(res.final.Header.Get("Location"))
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code: %s %v", res.final.Header.Get("Location"), res.pages)
	}
	tok, err := e.rp.conf.Exchange(e.rp.ctx, code, oauth2.VerifierOption(res.verifier))
	if err != nil {
		t.Fatal(err)
	}
	idt, err := e.rp.verifier.Verify(e.rp.ctx, tok.Extra("id_token").(string))
	if err != nil {
		t.Fatal(err)
	}
	var c idClaims
	if err := idt.Claims(&c); err != nil {
		t.Fatal(err)
	}
	return tok, c
}

func studentIDs(c idClaims) string {
	var ids []string
	for _, s := range c.Students {
		ids = append(ids, s.ID+"/"+s.SchoolID+"/"+s.Relation)
	}
	slices.Sort(ids)
	return strings.Join(ids, ",")
}

func TestLinkingJourneys(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		e := newLinkEnv(t, s)

		t.Run("parent with SNILS on two cards gets both children, no question asked", func(t *testing.T) {
			br := newBrowser(t)
			res := e.esiaLogin(t, br, "parent-two-kids", nil, e.acceptAll(t, br))
			if len(res.pages) != 1 || res.pages[0] != "Согласие на обработку персональных данных" {
				t.Errorf("pages seen: %v", res.pages)
			}
			_, c := e.tokens(t, res)
			if studentIDs(c) != "s-1/sch-1/parent,s-2/sch-2/parent" || !slices.Equal(c.Roles, []string{"parent"}) || c.ESIAOID != "1000300001" || c.StudentID != "" {
				t.Errorf("claims %+v", c)
			}
			if c.Students[0].Name == "" || c.Students[0].Class == "" {
				t.Errorf("student claim lacks name or class: %+v", c.Students[0])
			}
			// Consent is recorded: the next login asks nothing.
			br2 := newBrowser(t)
			res = e.esiaLogin(t, br2, "parent-two-kids", nil, e.acceptAll(t, br2))
			if len(res.pages) != 0 {
				t.Errorf("second login showed %v", res.pages)
			}
			// Fewer scopes are covered by the consent given: nothing is asked, nothing rewritten.
			br3 := newBrowser(t)
			res = e.esiaLogin(t, br3, "parent-two-kids", []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("scope", "openid students")}, e.acceptAll(t, br3))
			if len(res.pages) != 0 {
				t.Errorf("a subset of the scopes asked again: %v", res.pages)
			}
			if c, err := s.Consent(context.Background(), mustAccountID(t, s, "1000300001"), "kiasuo"); err != nil || c.Scopes != "esia offline_access openid profile students" {
				t.Errorf("consent record %+v %v", c, err)
			}
		})

		t.Run("a removed guardian SNILS drops the link at the next login", func(t *testing.T) {
			changed := strings.Replace(day(testRoster), day("21.05.2017,234-567-890 99,1,112-233-445 95,Иванова Мария Петровна"), day("21.05.2017,234-567-890 99,1,,"), 1)
			if _, err := e.link.Import(context.Background(), strings.NewReader(changed), linking.ImportOptions{}); err != nil {
				t.Fatal(err)
			}
			br := newBrowser(t)
			res := e.esiaLogin(t, br, "parent-two-kids", nil, e.acceptAll(t, br))
			if len(res.pages) != 0 {
				t.Errorf("one child fewer: the consent given still covers it, yet it was asked: %v", res.pages)
			}
			_, c := e.tokens(t, res)
			if studentIDs(c) != "s-1/sch-1/parent" || c.StudentID != "s-1" {
				t.Errorf("after removal: %+v", c)
			}
			if _, err := e.link.Import(context.Background(), strings.NewReader(day(testRoster)), linking.ImportOptions{}); err != nil {
				t.Fatal(err)
			}
		})

		t.Run("student of 15 links by own SNILS", func(t *testing.T) {
			br := newBrowser(t)
			_, c := e.tokens(t, e.esiaLogin(t, br, "student-15", nil, e.acceptAll(t, br)))
			if studentIDs(c) != "s-3/sch-1/self" || !slices.Equal(c.Roles, []string{"student"}) || c.StudentID != "s-3" {
				t.Errorf("claims %+v", c)
			}
		})

		t.Run("parent with no match chooses a role and redeems one code per child", func(t *testing.T) {
			slips, err := e.inv.Issue(context.Background(), invites.IssueRequest{Selection: invites.Selection{SchoolID: "sch-1", IDs: []string{"s-4", "s-5"}}, Role: invites.RoleParent, TTL: time.Hour, Operator: "cli:teacher"})
			if err != nil {
				t.Fatal(err)
			}
			student, err := e.inv.Issue(context.Background(), invites.IssueRequest{Selection: invites.Selection{SchoolID: "sch-1", IDs: []string{"s-5"}}, Role: invites.RoleStudent, TTL: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			for _, sl := range append(slips, student...) {
				e.codes = append(e.codes, sl.Code, strings.ReplaceAll(sl.Code, "-", ""))
			}
			br := newBrowser(t)
			var seen []string
			res := e.esiaLogin(t, br, "parent-no-match", nil, func(body string, resp *http.Response) *http.Response {
				seen = append(seen, body)
				switch {
				case title(body) == "Выберите роль":
					// The student role with a 13-year-old's code is refused first (the parent is not
					// the student: the birth dates differ).
					lid := regexp.MustCompile(`login=([0-9a-f-]+)`).FindStringSubmatch(body)[1]
					r, _ := br.Get(e.h.URL + "/link/code?role=student&login=" + lid)
					return r
				case strings.Contains(body, `name="role" value="student"`):
					if strings.Contains(body, "может ввести только сам обучающийся") {
						lid := formField("login").FindStringSubmatch(body)[1]
						r, _ := br.Get(e.h.URL + "/link/code?role=parent&login=" + lid)
						return r
					}
					return e.post(t, br, "/link/code", body, url.Values{"role": {"student"}, "code": {student[0].Code}})
				case strings.Contains(body, `name="role" value="parent"`) && !strings.Contains(body, "не подошёл"):
					if strings.Count(strings.Join(seen, ""), "Код принят") == 0 {
						return e.post(t, br, "/link/code", body, url.Values{"role": {"parent"}, "code": {"WRNG-WRNG-WRNG"}})
					}
					return e.post(t, br, "/link/code", body, url.Values{"role": {"parent"}, "code": {strings.ToLower(strings.ReplaceAll(slips[1].Code, "-", " "))}})
				case strings.Contains(body, "не подошёл"):
					return e.post(t, br, "/link/code", body, url.Values{"role": {"parent"}, "code": {slips[0].Code}})
				case title(body) == "Код принят":
					if strings.Count(body, "<li>") == 1 {
						lid := regexp.MustCompile(`/link/code\?role=parent&amp;login=([0-9a-f-]+)`).FindStringSubmatch(body)[1]
						r, _ := br.Get(e.h.URL + "/link/code?role=parent&login=" + lid)
						return r
					}
					lid := regexp.MustCompile(`resume\?login=([0-9a-f-]+)`).FindStringSubmatch(body)[1]
					r, _ := br.Get(e.h.URL + "/oauth2/authorize/resume?login=" + lid)
					return r
				case strings.Contains(body, `action="/consent"`):
					return e.post(t, br, "/consent", body, url.Values{"decision": {"accept"}})
				}
				t.Fatalf("unexpected page: %s", body)
				return nil
			})
			want := []string{"Выберите роль", "Введите пригласительный код", "Введите пригласительный код", "Введите пригласительный код", "Введите пригласительный код", "Код принят", "Введите пригласительный код", "Код принят", "Согласие на обработку персональных данных"}
			if !slices.Equal(res.pages, want) {
				t.Errorf("pages %v\nwant  %v", res.pages, want)
			}
			joined := strings.Join(seen, "\n")
			for _, w := range []string{"может ввести только сам обучающийся", "Код не подошёл", "Петров Максим Сергеевич", "Петрова Ксения Сергеевна", `aria-invalid="true"`} {
				if !strings.Contains(joined, w) {
					t.Errorf("no page said %q", w)
				}
			}
			_, c := e.tokens(t, res)
			if studentIDs(c) != "s-4/sch-1/parent,s-5/sch-1/parent" {
				t.Errorf("claims %+v", c)
			}
		})

		t.Run("the picker sets student_id in every token", func(t *testing.T) {
			br := newBrowser(t)
			res := e.esiaLogin(t, br, "parent-three-kids", []oauth2.AuthCodeOption{oauth2.SetAuthURLParam("prompt", "select_account")}, func(body string, resp *http.Response) *http.Response {
				if strings.Contains(body, `action="/consent"`) {
					return e.post(t, br, "/consent", body, url.Values{"decision": {"accept"}})
				}
				if strings.Contains(body, `action="/select"`) {
					if strings.Count(body, `name="student"`) != 3 {
						t.Errorf("picker lists %d children", strings.Count(body, `name="student"`))
					}
					return e.post(t, br, "/select", body, url.Values{"student": {"s-7"}})
				}
				t.Fatalf("unexpected page: %s", body)
				return nil
			})
			if !slices.Equal(res.pages, []string{"Согласие на обработку персональных данных", "Выберите ребёнка"}) {
				t.Errorf("pages %v", res.pages)
			}
			tok, c := e.tokens(t, res)
			if c.StudentID != "s-7" || len(c.Students) != 3 || c.Name != "Смирнова Ольга Сергеевна" || !slices.Equal(c.AMR, []string{"esia"}) {
				t.Errorf("claims %+v", c)
			}
			// The access token (JWT) and userinfo carry the same claims.
			payload, _ := jwtPayload(tok.AccessToken)
			if payload["student_id"] != "s-7" || payload["students"] == nil {
				t.Errorf("access token claims %v", payload)
			}
			ui, err := e.rp.provider.UserInfo(e.rp.ctx, oauth2.StaticTokenSource(tok))
			if err != nil {
				t.Fatal(err)
			}
			var uc idClaims
			_ = ui.Claims(&uc)
			if uc.StudentID != "s-7" || len(uc.Students) != 3 {
				t.Errorf("userinfo %+v", uc)
			}
			// A student who leaves disappears from refreshed tokens.
			if _, err := e.link.Deactivate(context.Background(), "s-7", "api:kiasuo"); err != nil {
				t.Fatal(err)
			}
			expired := *tok
			expired.Expiry = time.Now().Add(-time.Minute)
			tok2, err := e.rp.conf.TokenSource(e.rp.ctx, &expired).Token()
			if err != nil {
				t.Fatal(err)
			}
			idt, err := e.rp.verifier.Verify(e.rp.ctx, tok2.Extra("id_token").(string))
			if err != nil {
				t.Fatal(err)
			}
			var c2 idClaims
			_ = idt.Claims(&c2)
			if len(c2.Students) != 2 || c2.StudentID != "" || strings.Contains(studentIDs(c2), "s-7") {
				t.Errorf("after the student left: %+v", c2)
			}
		})

		t.Run("no plain SNILS in the database or the logs", func(t *testing.T) {
			for _, sn := range allSNILS {
				digits := strings.NewReplacer("-", "", " ", "").Replace(sn)
				for _, needle := range []string{sn, digits} {
					found, err := s.SearchText(context.Background(), needle)
					if err != nil {
						t.Fatal(err)
					}
					if len(found) > 0 {
						t.Errorf("SNILS %s found in %v", needle, found)
					}
					if strings.Contains(e.h.Logs.String(), needle) {
						t.Errorf("SNILS %s found in the logs", needle)
					}
				}
			}
			if len(e.codes) == 0 {
				t.Fatal("no invite codes were issued: the check below proves nothing")
			}
			for _, code := range e.codes {
				if found, _ := s.SearchText(context.Background(), code); len(found) > 0 {
					t.Errorf("invite code found in %v", found)
				}
				for _, v := range []string{code, strings.ToLower(code)} {
					if strings.Contains(e.h.Logs.String(), v) {
						t.Errorf("invite code %s found in the logs", v)
					}
				}
			}
			for _, bd := range strings.Fields(day("1985-03-04 04.03.1985 2013-09-12 12.09.2013 2011-01-10 10.01.2011")) {
				if strings.Contains(e.h.Logs.String(), bd) {
					t.Errorf("a birth date (%s) reached the logs", bd)
				}
			}
			for _, name := range []string{"Иванова", "Смирнова", "Петров", "Кузнецов"} {
				if strings.Contains(e.h.Logs.String(), name) {
					t.Errorf("a name (%s) reached the logs", name)
				}
			}
			if !strings.Contains(e.h.Logs.String(), `"msg":"request"`) {
				t.Error("the logs are empty: the check above proves nothing")
			}
		})
	})
}

func mustAccountID(t *testing.T, s *storage.Store, oid string) string {
	t.Helper()
	a, err := s.AccountByUpstream(context.Background(), "esia", oid)
	if err != nil {
		t.Fatal(err)
	}
	return a.ID
}

func jwtPayload(tok string) (map[string]any, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("not a JWT")
	}
	b, err := base64URLDecode(parts[1])
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}

func TestRosterAndLinkIntentAPI(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		e := newLinkEnv(t, s)
		ctx := context.Background()
		cc := clientcredentials.Config{ClientID: "kiasuo", ClientSecret: "secret-secret-secret", TokenURL: e.h.URL + "/oauth2/token"}
		call := func(t *testing.T, method, path, token string, body string) (int, map[string]any) {
			t.Helper()
			req, _ := http.NewRequest(method, e.h.URL+path, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if token != "" {
				req.Header.Set("Authorization", "Bearer "+token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var m map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&m)
			return resp.StatusCode, m
		}
		cc.Scopes = []string{"roster:write"}
		rosterTok, err := cc.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		cc.Scopes = []string{"links:write"}
		linksTok, err := cc.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		card := `{"school_id":"sch-2","class":"2А","family_name":"Орлова","given_name":"Ева","birthdate":"2018-04-01","guardians":[{"snils":"456-789-012 38","name":"Сидорова А. В."}]}`
		if code, _ := call(t, "PUT", "/api/v1/students/s-9", "", card); code != 401 {
			t.Errorf("without a token: %d", code)
		}
		if code, _ := call(t, "PUT", "/api/v1/students/s-9", linksTok.AccessToken, card); code != 403 {
			t.Errorf("with the wrong scope: %d", code)
		}
		if code, m := call(t, "PUT", "/api/v1/students/s-9", rosterTok.AccessToken, strings.Replace(card, "456-789-012 38", "456-789-012 39", 1)); code != 400 || !strings.Contains(fmt.Sprint(m["problems"]), "control number") {
			t.Errorf("bad SNILS: %d %v", code, m)
		}
		if code, m := call(t, "PUT", "/api/v1/students/s-9", rosterTok.AccessToken, card); code != 200 || m["changed"] != true {
			t.Errorf("put: %d %v", code, m)
		}
		if code, m := call(t, "PUT", "/api/v1/students/s-9", rosterTok.AccessToken, card); code != 200 || m["changed"] != false {
			t.Errorf("same put again: %d %v", code, m)
		}
		if code, _ := call(t, "PUT", "/api/v1/students/s-9", rosterTok.AccessToken, `{"school_id":"sch-2","hack":1}`); code != 400 {
			t.Errorf("unknown field: %d", code)
		}
		batch := `[{"student_id":"s-10","school_id":"sch-1","class":"1А","family_name":"А","given_name":"Б","birthdate":"2019-01-01"},{"student_id":"s-11","school_id":"nope","class":"1А","family_name":"В","given_name":"Г","birthdate":"2019-01-01"}]`
		if code, m := call(t, "POST", "/api/v1/students/batch", rosterTok.AccessToken, batch); code != 400 || !strings.Contains(fmt.Sprint(m["problems"]), "unknown school") {
			t.Errorf("bad batch: %d %v", code, m)
		}
		if _, err := s.Student(ctx, "s-10"); err == nil {
			t.Error("a bad batch wrote its good card")
		}
		if code, m := call(t, "POST", "/api/v1/students/batch", rosterTok.AccessToken, strings.Replace(batch, `"nope"`, `"sch-1"`, 1)); code != 200 || m["created"] != float64(2) {
			t.Errorf("batch: %d %v", code, m)
		}
		if code, m := call(t, "DELETE", "/api/v1/students/s-10", rosterTok.AccessToken, ""); code != 200 || m["changed"] != true {
			t.Errorf("deactivate: %d %v", code, m)
		}
		if code, _ := call(t, "DELETE", "/api/v1/students/nobody", rosterTok.AccessToken, ""); code != 404 {
			t.Errorf("deactivate unknown: %d", code)
		}

		// A diary-initiated link: the old-login user's students are linked to the ESIA account.
		if code, _ := call(t, "POST", "/api/v1/link-intents", rosterTok.AccessToken, `{"students":["s-4"]}`); code != 403 {
			t.Errorf("intent with roster scope: %d", code)
		}
		if code, _ := call(t, "POST", "/api/v1/link-intents", linksTok.AccessToken, `{"students":["s-4"],"return_uri":"https://evil.example/"}`); code != 400 {
			t.Errorf("intent with a foreign return_uri: %d", code)
		}
		code, m := call(t, "POST", "/api/v1/link-intents", linksTok.AccessToken, `{"students":["s-4"],"relation":"parent","return_uri":"`+rpPostLogout+`"}`)
		if code != 201 {
			t.Fatalf("intent: %d %v", code, m)
		}
		linkURL := m["url"].(string)
		br := newBrowser(t)
		stop := *br.Client
		stop.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
		resp, err := stop.Get(linkURL)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// The page names the student before anyone goes to ESIA; the button binds the intent.
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "Петров Максим Сергеевич") {
			t.Fatalf("intent page: %d %s", resp.StatusCode, page)
		}
		resp, err = stop.PostForm(linkURL, url.Values{"csrf": {formField("csrf").FindStringSubmatch(string(page))[1]}, "connector": {"esia"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if !strings.HasPrefix(resp.Header.Get("Location"), "/login/esia?login=") {
			t.Fatalf("the intent's button: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		resp, err = stop.Get(e.h.URL + resp.Header.Get("Location"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		esiaURL, _ := url.Parse(resp.Header.Get("Location"))
		res, body := choosePersona(t, br, esiaURL, "parent-no-match")
		if res.StatusCode != 200 || !strings.Contains(body, "Привязка к Госуслугам выполнена") || !strings.Contains(body, "Петров Максим Сергеевич") || !strings.Contains(body, rpPostLogout) {
			t.Errorf("link page: %d %s", res.StatusCode, body)
		}
		links, _ := s.Links(ctx, mustAccountID(t, s, "1000300002"), false)
		if len(links) != 1 || links[0].Method != "diary" || links[0].StudentID != "s-4" {
			t.Errorf("links %+v", links)
		}
		resp, _ = br.Get(linkURL)
		b2, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusGone || !strings.Contains(string(b2), "устарела") {
			t.Errorf("second use of the link: %d", resp.StatusCode)
		}
	})
}
