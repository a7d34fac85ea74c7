package broker_test

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/esia-broker/esia-broker/provider"
	"github.com/esia-broker/esia-broker/storage"
)

func (e *linkEnv) get(t *testing.T, br *browser, path string) (int, string) {
	t.Helper()
	resp, err := br.Get(e.h.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

func (e *linkEnv) postPage(t *testing.T, br *browser, path, page string, v url.Values) (int, string) {
	t.Helper()
	resp := e.post(t, br, path, page, v)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode, string(b)
}

// childLogin runs the RP's authorization through «Вход для детей до 14 лет».
func (e *linkEnv) childLogin(t *testing.T, login, password string) (*http.Response, string, string) {
	t.Helper()
	return e.childLoginIn(t, newBrowser(t), login, password)
}

// childLoginIn is childLogin in the browser br.
func (e *linkEnv) childLoginIn(t *testing.T, br *browser, login, password string) (*http.Response, string, string) {
	t.Helper()
	verifier := oauth2.GenerateVerifier()
	_, start := e.get(t, br, strings.TrimPrefix(e.rp.conf.AuthCodeURL("state-child-1", oauth2.S256ChallengeOption(verifier), oidc.Nonce("nonce-child")), e.h.URL))
	m := regexp.MustCompile(`href="(/child/login\?login=[^"]+)"`).FindStringSubmatch(start)
	if m == nil {
		t.Fatalf("no «Вход для детей до 14 лет» on the start page: %s", start)
	}
	_, form := e.get(t, br, m[1])
	resp := e.post(t, br, "/child/login", form, url.Values{"login_request": {formField("login_request").FindStringSubmatch(form)[1]}, "login": {login}, "password": {password}})
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b), verifier
}

func TestChildrenAndActivationKeys(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		e := newLinkEnv(t, s, "ESIA_BROKER_ACTIVATION_CLIENT_ID=mobile", "ESIA_BROKER_DEV=true", "ESIA_BROKER_CHILDREN_ARGON2_MEMORY_KIB=8192", "ESIA_BROKER_ACTIVATION_KEY_TTL=5m")
		ctx := context.Background()
		mobile := e.h.client("mobile", "", "openid", "profile", "students", "offline_access")
		mobile.GrantTypes = []string{provider.GrantTypeActivationKey, "refresh_token"}
		if err := s.UpdateClient(ctx, mobile); err != nil {
			t.Fatal(err)
		}
		parent := newBrowser(t)
		e.esiaLogin(t, parent, "parent-two-kids", nil, e.acceptAll(t, parent))

		_, page := e.get(t, parent, "/account")
		if !strings.Contains(page, "Как входят дети до 14 лет") || !strings.Contains(page, `name="student" value="s-1"`) || !strings.Contains(page, "Создать учётную запись") {
			t.Fatalf("account page: %s", page)
		}
		code, page2 := e.postPage(t, parent, "/account/child", page, url.Values{"action": {"create"}, "student": {"s-1"}, "login": {"Alex.Ivanov"}, "password": {"qwerty123"}})
		if code != 400 || !strings.Contains(page2, "слишком простой") {
			t.Errorf("common password: %d", code)
		}
		code, page2 = e.postPage(t, parent, "/account/child", page, url.Values{"action": {"create"}, "student": {"s-1"}, "login": {"Alex.Ivanov"}, "password": {"correct-horse"}})
		if code != 200 || !strings.Contains(page2, "Логин ребёнка: alex.ivanov") || !strings.Contains(page2, "Сменить пароль") {
			t.Fatalf("create: %d %s", code, page2)
		}

		t.Run("the child logs in and gets its own card", func(t *testing.T) {
			resp, body, _ := e.childLogin(t, "alex.ivanov", "wrong-password")
			if resp.StatusCode != 401 || !strings.Contains(body, "Неверный логин или пароль") {
				t.Errorf("wrong password: %d", resp.StatusCode)
			}
			child := newBrowser(t)
			resp, body, verifier := e.childLoginIn(t, child, "ALEX.IVANOV", "correct-horse")
			if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("child login: %d %s", resp.StatusCode, body)
			}
			// The child's own account page shows its card, and no code to enter (a sub-account
			// links nothing).
			if code, page := e.get(t, child, "/account"); code != 200 || !strings.Contains(page, "Я учусь") || !strings.Contains(page, "Иванов Алексей Игоревич") ||
				strings.Contains(page, "/link/code") || strings.Contains(page, "не привязана") || !strings.Contains(page, "создал родитель") {
				t.Errorf("the child's account page: %d %s", code, page)
			}
			for _, path := range []string{"/link/code?role=parent", "/link/code?role=student", "/link/role"} {
				if code, page := e.get(t, child, path); code != http.StatusForbidden || !strings.Contains(page, "Код вводит родитель") {
					t.Errorf("a sub-account at %s: %d", path, code)
				}
			}
			_, c := e.tokens(t, loginResult{final: resp, verifier: verifier})
			parentID := mustAccountID(t, s, "1000300001")
			if c.Sub == parentID || studentIDs(c) != "s-1/sch-1/self" || c.StudentID != "s-1" || len(c.Roles) != 1 || c.Roles[0] != "student" || len(c.AMR) != 1 || c.AMR[0] != "pwd" || c.Name != "Иванов Алексей Игоревич" {
				t.Errorf("child claims %+v", c)
			}
		})
		t.Run("the parent resets the password", func(t *testing.T) {
			_, page := e.get(t, parent, "/account")
			code, body := e.postPage(t, parent, "/account/child", page, url.Values{"action": {"reset"}, "student": {"s-1"}, "password": {"new-secret-42"}})
			if code != 200 || !strings.Contains(body, "Пароль изменён") {
				t.Fatalf("reset: %d", code)
			}
			if resp, _, _ := e.childLogin(t, "alex.ivanov", "correct-horse"); resp.StatusCode != 401 {
				t.Errorf("old password after reset: %d", resp.StatusCode)
			}
			if resp, _, _ := e.childLogin(t, "alex.ivanov", "new-secret-42"); resp.StatusCode != http.StatusSeeOther && resp.StatusCode != http.StatusFound {
				t.Errorf("new password: %d", resp.StatusCode)
			}
		})

		t.Run("activation key: once, not after expiry, device revocation ends the refresh token", func(t *testing.T) {
			newKey := func() string {
				_, page := e.get(t, parent, "/account")
				code, body := e.postPage(t, parent, "/account/key", page, url.Values{})
				k := regexp.MustCompile(`[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}-[0-9A-Z]{4}`).FindString(body)
				if code != 200 || k == "" {
					t.Fatalf("key page: %d %s", code, body)
				}
				return k
			}
			redeem := func(key string) (int, map[string]any) {
				return postForm(t, e.h.URL+"/oauth2/token", url.Values{"grant_type": {provider.GrantTypeActivationKey}, "activation_key": {key}, "client_id": {"mobile"}, "scope": {"openid students"}}, "", "")
			}
			key := newKey()
			code, tok := redeem(strings.ToLower(key))
			if code != 200 || tok["refresh_token"] == nil || tok["access_token"] == nil {
				t.Fatalf("redeem: %d %v", code, tok)
			}
			claims, _ := jwtPayload(tok["access_token"].(string))
			if amr, _ := claims["amr"].([]any); len(amr) != 1 || amr[0] != "key" || claims["sub"] != mustAccountID(t, s, "1000300001") || claims["students"] == nil {
				t.Errorf("access token claims %v", claims)
			}
			if code, m := redeem(key); code != 400 || m["error"] != "invalid_grant" {
				t.Errorf("second use: %d %v", code, m)
			}
			code, fresh := postForm(t, e.h.URL+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}, "client_id": {"mobile"}}, "", "")
			if code != 200 {
				t.Fatalf("refresh of the app's token: %d %v", code, fresh)
			}
			// Expiry.
			old := newKey()
			s.SetClock(func() time.Time { return time.Now().Add(10 * time.Minute) })
			if code, _ := redeem(old); code != 400 {
				t.Errorf("expired key: %d", code)
			}
			s.SetClock(time.Now)
			// The device shows on the account page; revoking it kills the refresh token.
			_, page := e.get(t, parent, "/account")
			dev := formField("device").FindStringSubmatch(page)
			if dev == nil || !strings.Contains(page, "Подключённые устройства") || !strings.Contains(page, "mobile: подключено") {
				t.Fatalf("devices: %s", page)
			}
			if code, body := e.postPage(t, parent, "/account/devices/revoke", page, url.Values{"device": {dev[1]}}); code != 200 || !strings.Contains(body, "Устройство отключено") {
				t.Errorf("revoke: %d", code)
			}
			if code, m := postForm(t, e.h.URL+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {fresh["refresh_token"].(string)}, "client_id": {"mobile"}}, "", ""); code == 200 {
				t.Errorf("refresh after device revocation: %v", m)
			}
			// Wrong keys are limited per client and IP.
			var last int
			for range 10 {
				last, _ = redeem("AAAA-BBBB-CCCC-DDDD")
			}
			if c2, m := redeem(newKey()); c2 != 400 || !strings.Contains(m["error_description"].(string), "Too many") {
				t.Errorf("a good key after 10 wrong ones: %d %v (last %d)", c2, m, last)
			}
		})

		t.Run("revoking the parent's link disables the child", func(t *testing.T) {
			links, _ := s.Links(ctx, mustAccountID(t, s, "1000300001"), false)
			for _, l := range links {
				s.RevokeLink(ctx, l.ID)
			}
			resp, body, _ := e.childLogin(t, "alex.ivanov", "new-secret-42")
			if resp.StatusCode != 403 || !strings.Contains(body, "отключён") {
				t.Errorf("child after link revocation: %d", resp.StatusCode)
			}
		})
	})
}
