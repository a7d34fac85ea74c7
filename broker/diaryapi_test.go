package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/esia-broker/esia-broker/storage"
)

// apiCaller calls the diaries' API with a bearer token.
type apiCaller struct {
	t    testing.TB
	base string
	// doc, when set, checks every answer against the API description.
	doc *openAPI
}

func (a apiCaller) do(method, path, token, body string) (int, http.Header, []byte) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if a.doc != nil {
		if tmpl := a.doc.template(strings.SplitN(path, "?", 2)[0]); tmpl != "" {
			a.doc.checkResponse(a.t, tmpl, method, strconv.Itoa(resp.StatusCode), b)
		} else {
			a.t.Errorf("%s is not described in docs/openapi.json", path)
		}
	}
	return resp.StatusCode, resp.Header, b
}

func (a apiCaller) json(method, path, token, body string) (int, map[string]any) {
	a.t.Helper()
	code, _, b := a.do(method, path, token, body)
	var m map[string]any
	if len(b) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			a.t.Fatalf("%s %s: %d %s", method, path, code, b)
		}
	}
	return code, m
}

// field is the field the first problem of a 400 names.
func field(m map[string]any) string {
	ps, _ := m["problems"].([]any)
	if len(ps) == 0 {
		return ""
	}
	f, _ := ps[0].(map[string]any)["field"].(string)
	return f
}

func ccToken(t testing.TB, base, id, secret string, scopes ...string) string {
	t.Helper()
	cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: base + "/oauth2/token", Scopes: scopes}
	tok, err := cc.Token(context.Background())
	if err != nil {
		t.Fatalf("client credentials %v: %v", scopes, err)
	}
	return tok.AccessToken
}

// TestDiaryAPI drives the class teacher's and the diary's side of issue 18: a client with only
// invites:write issues, lists, rotates, revokes and prints a class's codes; a parent redeems one
// in the browser; links:read shows the link (method code); DELETE of the link ends the parent's
// refresh token; the event feed tells each change once; wrong scope is 403, bad input 400 naming
// the field with nothing written.
func TestDiaryAPI(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		e := newLinkEnv(t, s)
		e.h.client("teacher-app", "teacher-secret-secret", "invites:write")
		e.h.client("diary-links", "links-secret-secret", "links:read", "links:write", "events:read")
		doc := loadOpenAPI(t)
		api := apiCaller{t, e.h.URL, &doc}
		inv := ccToken(t, e.h.URL, "teacher-app", "teacher-secret-secret", "invites:write")
		read := ccToken(t, e.h.URL, "diary-links", "links-secret-secret", "links:read")
		write := ccToken(t, e.h.URL, "diary-links", "links-secret-secret", "links:write")
		events := ccToken(t, e.h.URL, "diary-links", "links-secret-secret", "events:read")
		if _, err := (&clientcredentials.Config{ClientID: "teacher-app", ClientSecret: "teacher-secret-secret", TokenURL: e.h.URL + "/oauth2/token",
			Scopes: []string{"links:read"}}).Token(ctx); err == nil {
			t.Error("a client got a scope it is not registered for")
		}
		count := func() int {
			rows, err := s.ListInvites(ctx, storage.InviteFilter{})
			if err != nil {
				t.Fatal(err)
			}
			return len(rows)
		}

		// Scope and authentication.
		for _, c := range []struct {
			method, path, token string
			want                int
		}{
			{"POST", "/api/v1/invites", "", 401},
			{"POST", "/api/v1/invites", read, 403},
			{"GET", "/api/v1/invites?school_id=sch-1", events, 403},
			{"POST", "/api/v1/invites/sheet", write, 403},
			{"DELETE", "/api/v1/invites/x", read, 403},
			{"GET", "/api/v1/students/s-4/links", inv, 403},
			{"GET", "/api/v1/students/s-4/links", write, 403},
			{"DELETE", "/api/v1/links/x", read, 403},
			{"GET", "/api/v1/events", read, 403},
			{"GET", "/api/v1/events", "not-a-token", 401},
		} {
			code, h, _ := api.do(c.method, c.path, c.token, `{"school_id":"sch-1","role":"parent"}`)
			if code != c.want {
				t.Errorf("%s %s: %d, want %d", c.method, c.path, code, c.want)
			}
			if code == 403 && !strings.Contains(h.Get("WWW-Authenticate"), "insufficient_scope") {
				t.Errorf("%s %s: 403 without insufficient_scope: %q", c.method, c.path, h.Get("WWW-Authenticate"))
			}
		}

		// Bad input: 400 naming the field, nothing written.
		for _, c := range []struct{ body, field string }{
			{`{"role":"parent"}`, "school_id"},
			{`{"school_id":"sch-1","role":"teacher"}`, "role"},
			{`{"school_id":"sch-9","role":"parent"}`, "school_id"},
			{`{"school_id":"sch-1","class":"11Я","role":"parent"}`, "class"},
			{`{"school_id":"sch-1","student_ids":["s-4","nobody"],"role":"parent"}`, "student_ids"},
			{`{"school_id":"sch-1","student_ids":["s-2"],"role":"parent"}`, "student_ids"},
			{`{"school_id":"sch-1","role":"parent","expires_in":"forever"}`, "expires_in"},
			{`{"school_id":"sch-1","role":"parent","expires_in":"400d"}`, "expires_in"},
			{`{"school_id":"sch-1","role":"parent","expires_in":"-1h"}`, "expires_in"},
			{`{"school_id":"sch-1","role":"parent","schol":"x"}`, "schol"},
			{`{"school_id":"sch-1","role":"parent","rotate":"yes"}`, "rotate"},
			{`{"school_id":["sch-1"],"role":"parent"}`, "school_id"},
			{`{"school_id":"sch-1","ROLE":"parent","role":"parent"}`, "ROLE"},
			{`{"school_id":"sch-1","role":"parent","student_ids":["s-4","s-4"]}`, "student_ids"},
			{`{"school_id":"sch-1","role":"parent","expires_in":"1s"}`, "expires_in"},
		} {
			for _, path := range []string{"/api/v1/invites", "/api/v1/invites/sheet"} {
				code, m := api.json("POST", path, inv, c.body)
				if code != 400 || field(m) != c.field {
					t.Errorf("%s %s: %d %v, want 400 naming %s", path, c.body, code, m, c.field)
				}
			}
		}
		for _, body := range []string{`{"school_id":"sch-1","role":"parent"}{}`, `[]`, `{"school_id":"sch-1","role":"parent"} trailing`,
			`{"school_id":"sch-1","role":"parent"}}`, `{"school_id":"sch-1","role":"parent"}]`, `{"school_id":"sch-1","role":"teacher","role":"parent"}`,
			"{\"school_id\":\"sch-1\xff\",\"role\":\"parent\"}"} {
			if code, _ := api.json("POST", "/api/v1/invites", inv, body); code != 400 {
				t.Errorf("body %s: %d", body, code)
			}
		}
		for _, q := range []string{"", "?school_id=sch-1&status=lost", "?school_id=sch-1&role=x", "?school_id=sch-1&shool=1", "?school_id=sch-9"} {
			if code, _ := api.json("GET", "/api/v1/invites"+q, inv, ""); code != 400 {
				t.Errorf("list %q: %d", q, code)
			}
		}
		if n := count(); n != 0 {
			t.Fatalf("bad requests wrote %d invites", n)
		}

		// Issue a class's codes; again is 409 with nothing written; rotate replaces them.
		code, m := api.json("POST", "/api/v1/invites", inv, `{"school_id":"sch-1","class":"5А","role":"parent","expires_in":"72h"}`)
		issued, _ := m["invites"].([]any)
		if code != 201 || len(issued) != 1 {
			t.Fatalf("issue: %d %v", code, m)
		}
		first := issued[0].(map[string]any)
		if first["student_id"] != "s-4" || first["role"] != "parent" || !regexp.MustCompile(`^[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}$`).MatchString(fmt.Sprint(first["code"])) {
			t.Errorf("issued %v", first)
		}
		if code, m := api.json("POST", "/api/v1/invites", inv, `{"school_id":"sch-1","class":"5А","role":"parent"}`); code != 409 || m["error"] != "open_codes_exist" {
			t.Errorf("issue again: %d %v", code, m)
		}
		if n := count(); n != 1 {
			t.Errorf("the refused issue wrote: %d invites", n)
		}
		code, m = api.json("POST", "/api/v1/invites", inv, `{"school_id":"sch-1","class":"5А","role":"parent","rotate":true}`)
		rotated, _ := m["invites"].([]any)
		if code != 201 || len(rotated) != 1 || rotated[0].(map[string]any)["code"] == first["code"] {
			t.Fatalf("rotate: %d %v", code, m)
		}
		second := rotated[0].(map[string]any)
		e.codes = append(e.codes, first["code"].(string), second["code"].(string))

		// The records, never the codes.
		code, body, raw := func() (int, map[string]any, []byte) {
			c, _, b := api.do("GET", "/api/v1/invites?school_id=sch-1&class=5%D0%90&role=parent", inv, "")
			var m map[string]any
			_ = json.Unmarshal(b, &m)
			return c, m, b
		}()
		recs, _ := body["invites"].([]any)
		if code != 200 || len(recs) != 2 || strings.Contains(string(raw), first["code"].(string)) || strings.Contains(string(raw), `"code"`) {
			t.Fatalf("list: %d %s", code, raw)
		}
		status := map[string]string{}
		for _, r := range recs {
			r := r.(map[string]any)
			status[r["id"].(string)] = r["status"].(string)
		}
		if status[first["id"].(string)] != "revoked" || status[second["id"].(string)] != "open" {
			t.Errorf("statuses after rotate: %v", status)
		}
		if _, m := api.json("GET", "/api/v1/invites?school_id=sch-1&status=open", inv, ""); len(m["invites"].([]any)) != 1 {
			t.Errorf("open codes: %v", m)
		}

		// The printable sheet, for another class; then that code is revoked.
		code, h, sheet := api.do("POST", "/api/v1/invites/sheet", inv, `{"school_id":"sch-1","class":"7Б","role":"parent"}`)
		sheetCode := regexp.MustCompile(`[A-Z0-9]{4}-[A-Z0-9]{4}-[A-Z0-9]{4}`).FindString(string(sheet))
		if code != 201 || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || sheetCode == "" || !strings.Contains(string(sheet), "Петрова Ксения") {
			t.Fatalf("sheet: %d %s %.300s", code, h.Get("Content-Type"), sheet)
		}
		e.codes = append(e.codes, sheetCode)
		_, m = api.json("GET", "/api/v1/invites?school_id=sch-1&class=7%D0%91&status=open", inv, "")
		open := m["invites"].([]any)
		if len(open) != 1 {
			t.Fatalf("sheet code not listed: %v", m)
		}
		sheetID := open[0].(map[string]any)["id"].(string)
		for i, want := range []int{204, 204} {
			if code, _, b := api.do("DELETE", "/api/v1/invites/"+sheetID, inv, ""); code != want {
				t.Errorf("revoke #%d: %d %s", i, code, b)
			}
		}
		if code, _, _ := api.do("DELETE", "/api/v1/invites/no-such-invite", inv, ""); code != 404 {
			t.Errorf("revoke unknown: %d", code)
		}

		// A parent redeems the rotated code in the browser; the revoked ones are refused.
		br := newBrowser(t)
		tried := map[string]bool{}
		res := e.esiaLogin(t, br, "parent-no-match", nil, func(body string, resp *http.Response) *http.Response {
			switch {
			case title(body) == "Выберите роль":
				lid := regexp.MustCompile(`login=([0-9a-f-]+)`).FindStringSubmatch(body)[1]
				r, _ := br.Get(e.h.URL + "/link/code?role=parent&login=" + lid)
				return r
			case strings.Contains(body, `name="role" value="parent"`):
				for _, c := range []string{first["code"].(string), sheetCode, second["code"].(string)} {
					if !tried[c] {
						tried[c] = true
						return e.post(t, br, "/link/code", body, url.Values{"role": {"parent"}, "code": {c}})
					}
				}
			case title(body) == "Код принят":
				lid := regexp.MustCompile(`resume\?login=([0-9a-f-]+)`).FindStringSubmatch(body)[1]
				r, _ := br.Get(e.h.URL + "/oauth2/authorize/resume?login=" + lid)
				return r
			case strings.Contains(body, `action="/consent"`):
				return e.post(t, br, "/consent", body, url.Values{"decision": {"accept"}})
			}
			t.Fatalf("unexpected page: %.2000s", body)
			return nil
		})
		want := []string{"Выберите роль", "Введите пригласительный код", "Введите пригласительный код", "Введите пригласительный код", "Код принят", "Согласие на обработку персональных данных"}
		if !slices.Equal(res.pages, want) {
			t.Errorf("pages %v\nwant  %v", res.pages, want)
		}
		tok, claims := e.tokens(t, res)
		if tok.RefreshToken == "" || studentIDs(claims) != "s-4/sch-1/parent" {
			t.Fatalf("after redeeming: refresh %q, claims %+v", tok.RefreshToken, claims)
		}
		_, m = api.json("GET", "/api/v1/invites?school_id=sch-1&class=5%D0%90&status=used", inv, "")
		if used := m["invites"].([]any); len(used) != 1 || used[0].(map[string]any)["id"] != second["id"] {
			t.Errorf("used codes: %v", m)
		}
		if code, m := api.json("DELETE", "/api/v1/invites/"+second["id"].(string), inv, ""); code != 409 {
			t.Errorf("revoking a used code: %d %v", code, m)
		}

		// Who is linked: the parent, by code.
		code, m = api.json("GET", "/api/v1/students/s-4/links", read, "")
		links, _ := m["links"].([]any)
		if code != 200 || m["student_id"] != "s-4" || len(links) != 1 {
			t.Fatalf("links: %d %v", code, m)
		}
		link := links[0].(map[string]any)
		if link["account"] != claims.Sub || link["relation"] != "parent" || link["method"] != "code" {
			t.Errorf("link %v, sub %s", link, claims.Sub)
		}
		if code, _ := api.json("GET", "/api/v1/students/s-404/links", read, ""); code != 404 {
			t.Errorf("links of an unknown student: %d", code)
		}

		// A code link to a card that also names the parent's SNILS would come back as a SNILS
		// link at the next login: DELETE refuses it until the card no longer names him.
		rtok := ccToken(t, e.h.URL, "kiasuo", "secret-secret-secret", "roster:write")
		card := `{"school_id":"sch-1","class":"5А","family_name":"Петров","given_name":"Максим","middle_name":"Сергеевич","birthdate":"` + day("2015-03-14") + `"`
		if code, m := api.json("PUT", "/api/v1/students/s-4", rtok, card+`,"guardians":[{"snils":"345-678-901 23","name":"Петров Сергей Николаевич"}]}`); code != 200 {
			t.Fatalf("put s-4 with the parent's SNILS: %d %v", code, m)
		}
		if code, m := api.json("DELETE", "/api/v1/links/"+link["id"].(string), write, ""); code != 409 || m["error"] != "snils_link" {
			t.Errorf("ending a code link the card's SNILS would remake: %d %v", code, m)
		}
		if code, m := api.json("PUT", "/api/v1/students/s-4", rtok, card+`}`); code != 200 {
			t.Fatalf("put s-4 back: %d %v", code, m)
		}

		// DELETE ends the link and the parent's refresh token.
		tok, err := e.rp.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
		if err != nil {
			t.Fatalf("refresh before the link ended: %v", err)
		}
		if code, _, b := api.do("DELETE", "/api/v1/links/"+link["id"].(string), write, ""); code != 204 {
			t.Fatalf("end link: %d %s", code, b)
		}
		if code, _, _ := api.do("DELETE", "/api/v1/links/"+link["id"].(string), write, ""); code != 404 {
			t.Errorf("end link again: %d", code)
		}
		var re *oauth2.RetrieveError
		if _, err := e.rp.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
			t.Errorf("refresh after the link ended: %v", err)
		}
		if _, m := api.json("GET", "/api/v1/students/s-4/links", read, ""); len(m["links"].([]any)) != 0 {
			t.Errorf("links after DELETE: %v", m)
		}

		// The feed: each change once, in order, without personal data.
		code, raw2 := func() (int, []byte) { c, _, b := api.do("GET", "/api/v1/events?limit=2", events, ""); return c, b }()
		var page struct {
			Events []struct {
				ID        string         `json:"id"`
				Type      string         `json:"type"`
				StudentID string         `json:"student_id"`
				Account   string         `json:"account"`
				Data      map[string]any `json:"data"`
			} `json:"events"`
			Next string `json:"next"`
		}
		if err := json.Unmarshal(raw2, &page); code != 200 || err != nil || len(page.Events) != 2 {
			t.Fatalf("events: %d %s", code, raw2)
		}
		all := page.Events
		for {
			code, _, b := api.do("GET", "/api/v1/events?after="+page.Next, events, "")
			page.Events = nil
			if err := json.Unmarshal(b, &page); code != 200 || err != nil {
				t.Fatalf("events after: %d %s", code, b)
			}
			if len(page.Events) == 0 {
				break
			}
			all = append(all, page.Events...)
		}
		var types []string
		for _, ev := range all {
			types = append(types, ev.Type)
		}
		if !slices.Equal(types, []string{"invite.redeemed", "link.created", "link.revoked"}) {
			t.Errorf("event types %v", types)
		}
		for _, ev := range all {
			if ev.StudentID != "s-4" || ev.Account != claims.Sub {
				t.Errorf("event %+v", ev)
			}
		}
		if all[1].Data["method"] != "code" || all[2].Data["link_id"] != link["id"] || all[0].Data["invite_id"] != second["id"] {
			t.Errorf("event data %+v", all)
		}
		if b := string(raw2); strings.Contains(b, "Петров") || strings.Contains(b, "Максим") {
			t.Errorf("personal data in the feed: %s", b)
		}
		for _, q := range []string{"?after=abc", "?after=-1", "?limit=0", "?limit=1001", "?cursor=1", "?after=1&after=2"} {
			if code, m := api.json("GET", "/api/v1/events"+q, events, ""); code != 400 || field(m) == "" {
				t.Errorf("events%s: %d %v", q, code, m)
			}
		}

		// Every call audited with the client as the operator, those that reach no handler too.
		undescribed := apiCaller{t, e.h.URL, nil} // outside the description on purpose
		if code, _, _ := undescribed.do("GET", "/api/v1/no-such-call", inv, ""); code != 404 {
			t.Errorf("an unknown API address: %d", code)
		}
		if code, _, _ := undescribed.do("PATCH", "/api/v1/invites", inv, "{}"); code != 405 {
			t.Errorf("an unknown API method: %d", code)
		}
		audit, err := s.AuditEvents(ctx, 500)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]bool{}
		for _, a := range audit {
			got[a.Actor+" "+a.Action] = true
			if a.Action == "api.call" {
				var d struct {
					Method string `json:"method"`
					Status int    `json:"status"`
				}
				_ = json.Unmarshal([]byte(a.Details), &d)
				got[fmt.Sprintf("%s %s %d", a.Actor, a.Target, d.Status)] = true
			}
		}
		for _, w := range []string{"api:teacher-app unrouted 404", "api:teacher-app unrouted 405", "api:teacher-app invites.issue", "api:teacher-app invites.rotate", "api:teacher-app invites.revoke", "api:diary-links link.revoke",
			// every call, answered, refused or a no-op
			"api:teacher-app api_invites_list 200", "api:teacher-app api_invites_issue 409", "api:teacher-app api_invites_issue 400",
			"api:teacher-app api_invite_revoke 404", "api:teacher-app api_invite_revoke 204", "api:teacher-app api_invites_sheet 201",
			"api:diary-links api_student_links 200", "api:diary-links api_student_links 404", "api:diary-links api_link_end 404",
			"api:diary-links api_events 200", "api:diary-links api_events 400", "api:diary-links api_events 403"} {
			if !got[w] {
				t.Errorf("no audit line %q", w)
			}
		}

		// The API's scopes never come through a person's login.
		resp, err := newBrowser(t).Get(e.rp.conf.AuthCodeURL("s-machine", oauth2.SetAuthURLParam("scope", "openid invites:write"),
			oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); !strings.Contains(loc, "error=invalid_scope") {
			t.Errorf("an authorization request for invites:write: %d %s", resp.StatusCode, loc)
		}

		// A link the card's SNILS makes cannot be ended here: the next login would make it again.
		other := newBrowser(t)
		e.esiaLogin(t, other, "parent-two-kids", nil, e.acceptAll(t, other))
		_, m = api.json("GET", "/api/v1/students/s-1/links", read, "")
		if ls, _ := m["links"].([]any); len(ls) != 1 || ls[0].(map[string]any)["method"] != "snils" {
			t.Fatalf("links of s-1: %v", m)
		} else if code, m := api.json("DELETE", "/api/v1/links/"+ls[0].(map[string]any)["id"].(string), write, ""); code != 409 || m["error"] != "snils_link" {
			t.Errorf("ending a SNILS link: %d %v", code, m)
		}

		// A cursor no answer gave (beyond the newest event) is refused, not taken as "nothing new".
		_, m = api.json("GET", "/api/v1/events?limit=1000", events, "")
		latest := m["next"].(string)
		if code, m := api.json("GET", "/api/v1/events?after=99999999", events, ""); code != 400 || field(m) != "after" {
			t.Errorf("a cursor from the future: %d %v", code, m)
		}

		// Retention: a cursor older than what was kept is told so, 0 included.
		if _, err := s.PruneEvents(ctx, -1); err != nil { // everything recorded so far
			t.Fatal(err)
		}
		for _, old := range []string{all[0].ID, "0"} {
			if code, m := api.json("GET", "/api/v1/events?after="+old, events, ""); code != 410 || m["error"] != "cursor_expired" {
				t.Errorf("pruned cursor %s: %d %v", old, code, m)
			}
		}
		if code, m := api.json("GET", "/api/v1/events?after="+latest, events, ""); code != 200 || m["next"] != latest {
			t.Errorf("the newest cursor after pruning: %d %v", code, m)
		}
		if code, m := api.json("GET", "/api/v1/events", events, ""); code != 200 || len(m["events"].([]any)) != 0 || m["next"] != latest {
			t.Errorf("from the start after pruning: %d %v (next must be %s, a cursor that works)", code, m, latest)
		}
	})
}

// TestConcurrentInviteIssue: fifty class teachers' diaries issue, then rotate, a class's codes
// at the same moment: one issue succeeds (the rest 409) and, after the rotations, each student
// has exactly one open code — on PostgreSQL too, where each transaction sees its own snapshot.
func TestConcurrentInviteIssue(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		h := newHarness(t, s)
		h.client("teacher-app", "teacher-secret-secret", "invites:write")
		if err := s.UpsertSchool(ctx, "sch-c", "Школа"); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			if _, err := s.UpsertStudent(ctx, &storage.Student{ID: fmt.Sprintf("c-%d", i), SchoolID: "sch-c", Class: "8Т", FamilyName: "Тестов", GivenName: "Тест", Birthdate: "2012-01-01", Active: true}, nil); err != nil {
				t.Fatal(err)
			}
		}
		tok := ccToken(t, h.URL, "teacher-app", "teacher-secret-secret", "invites:write")
		api := apiCaller{t, h.URL, nil}
		burst := func(body string) map[int]int {
			var mu sync.Mutex
			codes := map[int]int{}
			var wg sync.WaitGroup
			for range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					code, _, _ := api.do("POST", "/api/v1/invites", tok, body)
					mu.Lock()
					codes[code]++
					mu.Unlock()
				}()
			}
			wg.Wait()
			return codes
		}
		open := func() map[string]int {
			rows, err := s.ListInvites(ctx, storage.InviteFilter{SchoolID: "sch-c"})
			if err != nil {
				t.Fatal(err)
			}
			n := map[string]int{}
			for _, r := range rows {
				if r.Status(time.Now()) == "open" {
					n[r.StudentID]++
				}
			}
			return n
		}
		if got := burst(`{"school_id":"sch-c","class":"8Т","role":"parent"}`); got[201] != 1 || got[409] != 49 {
			t.Errorf("50 issues at once: %v, want one 201 and 49 409", got)
		}
		if got := burst(`{"school_id":"sch-c","class":"8Т","role":"parent","rotate":true}`); got[201] != 50 {
			t.Errorf("50 rotations at once: %v", got)
		}
		// Batches of the same new cards in opposite orders, at once: no deadlock, no 500.
		h.client("roster-app", "roster-secret-secret", "roster:write")
		rtok := ccToken(t, h.URL, "roster-app", "roster-secret-secret", "roster:write")
		var up, down []string
		for i := range 40 {
			card := fmt.Sprintf(`{"student_id":"d-%02d","school_id":"sch-c","class":"9Т","family_name":"Тестов","given_name":"Тест","birthdate":"2012-01-01"}`, i)
			up, down = append(up, card), append([]string{card}, down...)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		codes := map[int]int{}
		for i := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := "[" + strings.Join([][]string{up, down}[i%2], ",") + "]"
				code, _, _ := api.do("POST", "/api/v1/students/batch", rtok, body)
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		if codes[200] != 6 {
			t.Errorf("six batches of the same cards in opposite orders: %v", codes)
		}
		for id, n := range open() {
			if n != 1 {
				t.Errorf("student %s has %d open codes after concurrent rotations, want 1", id, n)
			}
		}
	})
}

// TestEndOfARightRacesRefreshes: the account's tokens end (as DELETE /api/v1/links/{id}, a
// disable or a forget end them) while 50 refreshes of its refresh token run: no token issued by
// a refresh that raced the end may work after it.
func TestEndOfARightRacesRefreshes(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		ctx := context.Background()
		h := newHarness(t, s)
		h.client("kiasuo", "secret-secret-secret", "openid", "profile", "offline_access")
		r := newRP(t, h, "kiasuo", "secret-secret-secret", "openid", "profile", "offline_access")
		for round := range 4 {
			tok, idt := r.loginAndExchange(t, newBrowser(t))
			var mu sync.Mutex
			var issued []*oauth2.Token
			var wg sync.WaitGroup
			for range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if nt, err := r.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil {
						mu.Lock()
						issued = append(issued, nt)
						mu.Unlock()
					}
				}()
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := s.RevokeTokensOf(ctx, idt.Subject); err != nil {
					t.Error(err)
				}
			}()
			wg.Wait()
			for _, nt := range issued {
				if _, err := r.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: nt.RefreshToken}).Token(); err == nil {
					t.Errorf("round %d: a refresh token issued while the account's tokens ended still works", round)
				}
				req, _ := http.NewRequest("GET", h.URL+"/oauth2/userinfo", nil)
				req.Header.Set("Authorization", "Bearer "+nt.AccessToken)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK {
						t.Errorf("round %d: an access token issued while the account's tokens ended still works", round)
					}
				}
			}
		}
	})
}
