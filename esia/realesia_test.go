package esia_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esia-broker/esia-broker/esia"
	"github.com/esia-broker/esia-broker/esia/esiatest"
	"github.com/esia-broker/esia-broker/esia/gost"
)

func TestIssuerFor(t *testing.T) {
	for _, tc := range []struct{ base, want string }{
		{esia.ProductionURL, esia.DefaultIssuer},
		{esia.TestURL, esia.TestIssuer},
		{esia.TestURL + "/", esia.TestIssuer},
		{"https://ESIA-PORTAL1.TEST.GOSUSLUGI.RU", esia.TestIssuer},
		{"http://127.0.0.1:8080/_esia", esia.DefaultIssuer},
	} {
		if got := esia.IssuerFor(tc.base); got != tc.want {
			t.Errorf("IssuerFor(%q) = %q, want %q", tc.base, got, tc.want)
		}
	}
}

// realShapedToken is an access token shaped as ТЕСИА issues them (header ver/typ/sbt/alg, no
// kid; urn:esia:sbj_id a JSON number; iat and exp an hour apart), GOST-signed by key.
func realShapedToken(t *testing.T, key *gost.PrivateKey, iss, clientID string, oid int64, now time.Time) string {
	t.Helper()
	h := `{"ver":1,"typ":"JWT","sbt":"access","alg":"GOST3410_2012_256"}`
	c := fmt.Sprintf(`{"nbf":%d,"scope":"fullname?oid=%d openid birthdate?oid=%d","iss":%q,"urn:esia:sid":"f3a8f2d1-a8c2-4a8a-9d2e-%012d","urn:esia:sbj_id":%d,"exp":%d,"iat":%d,"client_id":%q}`,
		now.Unix(), oid, oid, iss, oid, oid, now.Add(time.Hour).Unix(), now.Unix(), clientID)
	input := base64.RawURLEncoding.EncodeToString([]byte(h)) + "." + base64.RawURLEncoding.EncodeToString([]byte(c))
	sig, err := key.SignMessage(rand.Reader, []byte(input))
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// TestTESIAToken: with base URL test and no issuer configured, a token shaped like ТЕСИА's is
// accepted (its iss is the test host's); the production client refuses it, and the other way
// round. ESIA's certificate is given as DER, as ESIA hands it out.
func TestTESIAToken(t *testing.T) {
	esiaKey, esiaCertDER, err := esiatest.NewClientCredentials("ESIA test")
	if err != nil {
		t.Fatal(err)
	}
	v, err := esia.NewTokenVerifier(esiaCertDER)
	if err != nil {
		t.Fatalf("DER certificate: %v", err)
	}
	if cs := v.Certificates(); len(cs) != 1 || cs[0].Subject != "CN=ESIA test" || cs[0].Alg != esia.AlgGOST || cs[0].NotAfter.Before(time.Now()) {
		t.Errorf("certificates = %+v", cs)
	}
	key, cert, _ := esiatest.NewClientCredentials("ESIA_BROKER")
	signer, _ := esia.NewKeySigner(key, cert)
	now := time.Now()
	client := func(base string) *esia.Client {
		c, err := esia.New(esia.Config{BaseURL: base, ClientID: "ESIA_BROKER", RedirectURI: redirect, Scopes: []string{"openid"}, Verifier: v}, signer)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	test, prod := client(esia.TestURL), client(esia.ProductionURL)
	testTok := realShapedToken(t, esiaKey, esia.TestIssuer, "ESIA_BROKER", 1000299353, now)
	prodTok := realShapedToken(t, esiaKey, esia.DefaultIssuer, "ESIA_BROKER", 1000299353, now)
	claims, err := test.VerifyAccessToken(testTok)
	if err != nil {
		t.Fatalf("ТЕСИА's token refused by the test-environment client: %v", err)
	}
	if claims.OID != "1000299353" || claims.Issuer != esia.TestIssuer || strings.Join(claims.Scopes, " ") != "fullname openid birthdate" {
		t.Errorf("claims = %+v", claims)
	}
	if _, err := prod.VerifyAccessToken(testTok); err == nil || !strings.Contains(err.Error(), "iss") {
		t.Errorf("production client took ТЕСИА's token: %v", err)
	}
	if _, err := test.VerifyAccessToken(prodTok); err == nil {
		t.Error("test client took production's token")
	}
	if _, err := prod.VerifyAccessToken(prodTok); err != nil {
		t.Errorf("production token: %v", err)
	}
	// An explicit issuer overrides the environment's.
	c, _ := esia.New(esia.Config{BaseURL: esia.TestURL, Issuer: esia.DefaultIssuer, ClientID: "ESIA_BROKER", RedirectURI: redirect, Scopes: []string{"openid"}, Verifier: v}, signer)
	if _, err := c.VerifyAccessToken(prodTok); err != nil {
		t.Errorf("overridden issuer: %v", err)
	}
}

// rewrite sends every request to target, keeping the path: the client believes it talks to
// ТЕСИА's host.
type rewrite struct{ target *url.URL }

func (r rewrite) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	req.URL.Scheme, req.URL.Host = r.target.Scheme, r.target.Host
	return http.DefaultTransport.RoundTrip(req)
}

// TestExchangeOnTESIA: the whole exchange with base URL test, against an emulator that issues
// tokens as ТЕСИА does; before the fix the issuer stayed production's and every exchange failed.
func TestExchangeOnTESIA(t *testing.T) {
	for _, tc := range []struct {
		emulatorIss string
		ok          bool
	}{{esia.TestIssuer, true}, {esia.DefaultIssuer, false}} {
		e := newEnv(t, esiatest.Options{Issuer: tc.emulatorIss, TokenAlg: esia.AlgGOST})
		target, _ := url.Parse(e.srv.URL)
		c := e.client(t, func(cfg *esia.Config) {
			cfg.BaseURL = esia.TestURL
			cfg.HTTPClient = &http.Client{Transport: rewrite{target}}
		})
		au, err := c.AuthURL(context.Background(), uuid.NewString())
		if err != nil {
			t.Fatal(err)
		}
		au = strings.Replace(au, esia.TestURL, e.srv.URL, 1)
		_, err = c.Exchange(context.Background(), authorize(t, au, "parent-two-kids").Get("code"))
		if (err == nil) != tc.ok {
			t.Errorf("emulator iss %s: exchange error %v, want ok=%v", tc.emulatorIss, err, tc.ok)
		}
	}
}

func TestIDStringOrNumber(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want esia.ID
		bad  bool
	}{
		{in: `"1000300001"`, want: "1000300001"},
		{in: `1000300001`, want: "1000300001"},
		{in: `90071992547409931234`, want: "90071992547409931234"}, // beyond float64's exact integers
		{in: `null`, want: ""},
		{in: `1.5`, bad: true},
		{in: `-3`, bad: true},
		{in: `1e9`, bad: true},
		{in: `true`, bad: true},
		{in: `{"a":1}`, bad: true},
	} {
		var got esia.ID
		err := json.Unmarshal([]byte(tc.in), &got)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("%s: %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

// TestResourcesWithNumericIDs: ESIA answering ids as numbers (or strings) does not fail the
// person, contacts or kids call.
func TestResourcesWithNumericIDs(t *testing.T) {
	for _, numeric := range []bool{true, false} {
		id := func(s string) string {
			if numeric {
				return s
			}
			return `"` + s + `"`
		}
		c := fakeESIA(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			switch {
			case strings.HasSuffix(r.URL.Path, "/kids"):
				fmt.Fprintf(w, `{"stateFacts":["hasSize"],"size":2,"elements":[{"id":%s,"firstName":"Маша","birthDate":"01.09.2015"},{"id":%s,"firstName":"Петя"}]}`, id("1000400001"), id("1000400002"))
			case strings.HasSuffix(r.URL.Path, "/ctts"):
				fmt.Fprintf(w, `{"size":1,"elements":[{"id":%s,"type":"EML","value":"a@example.org","vrfStu":"VERIFIED"}]}`, id("14215"))
			default:
				fmt.Fprintf(w, `{"oid":%s,"firstName":"Анна","trusted":true}`, id("1000300001"))
			}
		})
		ctx := context.Background()
		kids, err := c.Kids(ctx, "tok", "1000300001")
		if err != nil || len(kids) != 2 || kids[0].ID != "1000400001" || kids[1].ID != "1000400002" {
			t.Errorf("numeric=%v: kids %+v, %v", numeric, kids, err)
		}
		ctts, err := c.Contacts(ctx, "tok", "1000300001")
		if err != nil || len(ctts) != 1 || ctts[0].ID != "14215" {
			t.Errorf("numeric=%v: contacts %+v, %v", numeric, ctts, err)
		}
		p, err := c.Person(ctx, "tok", "1000300001")
		if err != nil || p.OID != "1000300001" {
			t.Errorf("numeric=%v: person %+v, %v", numeric, p, err)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want esia.Class
	}{
		{esia.NewError("access_denied", "ESIA-007004: refused", 0), esia.ClassCancelled},
		{esia.NewError("access_denied", "ESIA-007053: client_secret", 0), esia.ClassConfiguration},
		{esia.NewError("access_denied", "", 0), esia.ClassCancelled},
		{esia.NewError("access_denied", "ESIA-007055: unconfirmed", 0), esia.ClassUnconfirmed},
		{esia.NewError("unauthorized_client", "ESIA-007005: method", 400), esia.ClassConfiguration},
		{esia.NewError("invalid_client", "", 401), esia.ClassConfiguration},
		{esia.NewError("invalid_grant", "ESIA-007011: code", 400), esia.ClassExpired},
		{esia.NewError("invalid_request", "ESIA-007015: time", 400), esia.ClassConfiguration},
		{esia.NewError("temporarily_unavailable", "ESIA-007008", 0), esia.ClassUnavailable},
		{esia.NewError("whatever", "ESIA-123456: new", 0), esia.ClassUnknown},
		{fmt.Errorf("%w: down", esia.ErrUnavailable), esia.ClassUnavailable},
		{errors.New("other"), esia.ClassUnknown},
	} {
		if got := esia.Classify(tc.err); got != tc.want {
			t.Errorf("Classify(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	seen := map[string]bool{}
	for _, c := range esia.Codes() {
		if seen[c.Code] || !strings.HasPrefix(c.Code, "ESIA-") || c.Meaning == "" || (c.Class == esia.ClassConfiguration) != (c.Operator != "") {
			t.Errorf("code table entry %+v: duplicate, or a configuration error without an operator hint (or the reverse)", c)
		}
		seen[c.Code] = true
	}
}

// TestEmulatorLikeESIA checks the emulator's behaviour where it matters against what real ESIA
// does: secrets in any base64, the token header, kid fields only with their scopes.
func TestEmulatorLikeESIA(t *testing.T) {
	e := newEnv(t, esiatest.Options{TokenAlg: esia.AlgGOST})
	ctx := context.Background()
	t.Run("client_secret in standard or URL-safe base64, padded or not", func(t *testing.T) {
		for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.StdEncoding, base64.RawStdEncoding} {
			c := e.client(t, nil)
			au, _ := c.AuthURL(ctx, uuid.NewString())
			u, _ := url.Parse(au)
			q := u.Query()
			sig, err := base64.RawURLEncoding.DecodeString(q.Get("client_secret"))
			if err != nil {
				t.Fatal(err)
			}
			q.Set("client_secret", enc.EncodeToString(sig))
			u.RawQuery = q.Encode()
			if back := authorize(t, u.String(), "student-15"); back.Get("code") == "" {
				t.Errorf("%v: %v", enc, back)
			}
		}
	})
	t.Run("token header and claim types", func(t *testing.T) {
		c := e.client(t, nil)
		au, _ := c.AuthURL(ctx, uuid.NewString())
		tok, err := c.Exchange(ctx, authorize(t, au, "student-15").Get("code"))
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(tok.AccessToken, ".")
		hb, _ := base64.RawURLEncoding.DecodeString(parts[0])
		var h map[string]any
		json.Unmarshal(hb, &h)
		if h["ver"] != float64(1) || h["typ"] != "JWT" || h["sbt"] != "access" || h["alg"] != esia.AlgGOST || h["kid"] != nil {
			t.Errorf("header %s", hb)
		}
		cb, _ := base64.RawURLEncoding.DecodeString(parts[1])
		var claims map[string]any
		json.Unmarshal(cb, &claims)
		if _, ok := claims["urn:esia:sbj_id"].(float64); !ok {
			t.Errorf("urn:esia:sbj_id is not a number: %s", cb)
		}
		if claims["exp"].(float64)-claims["iat"].(float64) != 3600 || !strings.Contains(claims["scope"].(string), "?oid=") {
			t.Errorf("claims %s", cb)
		}
	})
	t.Run("kid fields only with their kid_ scopes", func(t *testing.T) {
		for _, tc := range []struct {
			scopes []string
			want   func(k esia.Kid) bool
		}{
			{[]string{"openid", "kid_fullname"}, func(k esia.Kid) bool {
				return k.FirstName != "" && k.BirthDate == "" && k.Gender == "" && k.SNILS == ""
			}},
			{[]string{"openid", "kid_gender"}, func(k esia.Kid) bool { return k.FirstName == "" && k.Gender != "" }},
			{[]string{"openid", "kid_birthdate", "kid_snils"}, func(k esia.Kid) bool { return k.BirthDate != "" && k.SNILS != "" && k.Gender == "" }},
		} {
			ee := newEnv(t, esiatest.Options{})
			ee.emu.Register(esiatest.Client{ID: "ESIA_BROKER_TEST", CertDER: ee.cert, RedirectURIs: []string{redirect}, Scopes: tc.scopes})
			c := ee.client(t, func(cfg *esia.Config) { cfg.Scopes = tc.scopes })
			au, _ := c.AuthURL(ctx, uuid.NewString())
			tok, err := c.Exchange(ctx, authorize(t, au, "parent-two-kids").Get("code"))
			if err != nil {
				t.Fatal(err)
			}
			kids, err := c.Kids(ctx, tok.AccessToken, tok.Claims.OID)
			if err != nil || len(kids) == 0 {
				t.Fatalf("%v: kids %v, %v", tc.scopes, kids, err)
			}
			for _, k := range kids {
				if k.ID == "" || !tc.want(k) {
					t.Errorf("%v: kid %+v", tc.scopes, k)
				}
			}
		}
	})
}

// TestEmulatorSingleSignOn: ESIA remembers a browser; a second login from it skips the persona
// page until /idp/ext/Logout ends the session; Logout returns only to a registered origin.
func TestEmulatorSingleSignOn(t *testing.T) {
	e := newEnv(t, esiatest.Options{})
	e.emu.Register(esiatest.Client{ID: "ESIA_BROKER_TEST", CertDER: e.cert, RedirectURIs: []string{redirect, "https://broker.example/oauth2/logout/done"}, Scopes: scopes})
	c := e.client(t, nil)
	ctx := context.Background()
	jar := newJar(t)
	br := &http.Client{Jar: jar, CheckRedirect: noRedirect.CheckRedirect}
	page := func() (int, string) {
		au, _ := c.AuthURL(ctx, uuid.NewString())
		resp, err := br.Get(au)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusFound {
			u, _ := url.Parse(resp.Header.Get("Location"))
			return resp.StatusCode, u.Query().Get("code")
		}
		return resp.StatusCode, ""
	}
	if st, _ := page(); st != http.StatusOK {
		t.Fatalf("first visit: %d, want the persona page", st)
	}
	au, _ := c.AuthURL(ctx, uuid.NewString())
	q := authorizeWith(t, br, au, "parent-two-kids")
	if q.Get("code") == "" {
		t.Fatalf("login: %v", q)
	}
	st, code := page()
	if st != http.StatusFound || code == "" {
		t.Fatalf("returning browser: %d, want an immediate redirect with a code", st)
	}
	tok, err := c.Exchange(ctx, code)
	if err != nil || tok.Claims.OID != "1000300001" {
		t.Fatalf("single sign-on code: %v, %+v", err, tok)
	}
	resp, err := br.Get(c.LogoutURL("https://evil.example/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || e.emu.Sessions() != 1 {
		t.Errorf("logout to an unregistered URL: %d, sessions %d", resp.StatusCode, e.emu.Sessions())
	}
	resp, err = br.Get(c.LogoutURL("https://broker.example/oauth2/logout/done"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://broker.example/oauth2/logout/done" || e.emu.Sessions() != 0 {
		t.Errorf("logout: %d → %s, sessions %d", resp.StatusCode, resp.Header.Get("Location"), e.emu.Sessions())
	}
	if st, _ := page(); st != http.StatusOK {
		t.Errorf("after logout: %d, want the persona page again", st)
	}
}

func newJar(t *testing.T) http.CookieJar {
	t.Helper()
	j, err := cookiejarNew()
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// authorizeWith answers the persona page in browser br and returns the redirect's query.
func authorizeWith(t *testing.T, br *http.Client, authURL, persona string) url.Values {
	t.Helper()
	resp, err := br.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(resp)
	m := requestField.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no persona form: %s", body)
	}
	resp, err = br.PostForm(authURL, url.Values{"request": {m[1]}, "persona": {persona}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	u, _ := url.Parse(resp.Header.Get("Location"))
	return u.Query()
}

var requestField = regexp.MustCompile(`name="request" value="([^"]+)"`)

func readAll(resp *http.Response) string {
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func cookiejarNew() (http.CookieJar, error) { return cookiejar.New(nil) }

// TestErrorCodesDocumented keeps docs/ESIA.md's table equal to the code table the broker acts on.
func TestErrorCodesDocumented(t *testing.T) {
	b, err := os.ReadFile("../docs/ESIA.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	shown := map[esia.Class]string{esia.ClassCancelled: "«Вход отменён»", esia.ClassUnconfirmed: "«Учётная запись Госуслуг не подтверждена»",
		esia.ClassExpired: "«Время входа истекло»", esia.ClassConfiguration: "«Сервис временно недоступен»", esia.ClassUnavailable: "«Госуслуги не отвечают»"}
	for _, c := range esia.Codes() {
		row := regexp.MustCompile(`(?m)^\| ` + c.Code + ` \| ` + "`" + regexp.QuoteMeta(c.OAuthError) + "`" + ` \|.*$`).FindString(doc)
		if row == "" || !strings.Contains(row, shown[c.Class]) || !strings.Contains(row, c.Meaning) {
			t.Errorf("docs/ESIA.md has no row for %s (%s) saying %s: %q", c.Code, c.OAuthError, shown[c.Class], row)
		}
	}
	if n := len(regexp.MustCompile(`(?m)^\| ESIA-\d{6} \|`).FindAllString(doc, -1)); n != len(esia.Codes()) {
		t.Errorf("docs/ESIA.md lists %d codes, the broker knows %d", n, len(esia.Codes()))
	}
}
