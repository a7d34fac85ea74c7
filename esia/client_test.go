package esia_test

import (
	"context"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/esia-broker/esia-broker/esia"
	"github.com/esia-broker/esia-broker/esia/esiatest"
	"github.com/esia-broker/esia-broker/esia/gost"
)

const redirect = "https://broker.example/esia/callback"

var scopes = []string{"openid", "fullname", "birthdate", "gender", "snils", "email", "kid_fullname", "kid_birthdate", "kid_snils"}

type env struct {
	emu    *esiatest.Server
	srv    *httptest.Server
	key    *gost.PrivateKey
	cert   []byte
	signer *esia.KeySigner
}

func newEnv(t *testing.T, opts esiatest.Options) *env {
	t.Helper()
	key, cert, err := esiatest.NewClientCredentials("ESIA_BROKER_TEST")
	if err != nil {
		t.Fatal(err)
	}
	opts.Clients = append(opts.Clients, esiatest.Client{ID: "ESIA_BROKER_TEST", CertDER: cert, RedirectURIs: []string{redirect}, Scopes: scopes})
	emu, err := esiatest.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(emu.Handler())
	t.Cleanup(srv.Close)
	signer, err := esia.NewKeySigner(key, cert)
	if err != nil {
		t.Fatal(err)
	}
	return &env{emu: emu, srv: srv, key: key, cert: cert, signer: signer}
}

func (e *env) client(t *testing.T, mod func(c *esia.Config)) *esia.Client {
	t.Helper()
	cfg := esia.Config{BaseURL: e.srv.URL, ClientID: "ESIA_BROKER_TEST", RedirectURI: redirect, Scopes: scopes, Verifier: e.emu.TokenVerifier(), Timeout: 2 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	c, err := esia.New(cfg, e.signer)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// authorize follows an authorization URL through the persona page and returns the redirect back.
func authorize(t *testing.T, authURL, persona string) url.Values {
	t.Helper()
	resp, err := noRedirect.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusFound {
		u, _ := url.Parse(resp.Header.Get("Location"))
		return u.Query()
	}
	if resp.StatusCode != http.StatusOK {
		return url.Values{"status": {resp.Status}, "body": {string(body)}}
	}
	m := regexp.MustCompile(`name="request" value="([^"]+)"`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no persona form: %s", body)
	}
	form := url.Values{"request": {string(m[1])}}
	if persona == "" {
		form.Set("cancel", "1")
	} else {
		form.Set("persona", persona)
	}
	resp, err = noRedirect.PostForm(authURL, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	u, _ := url.Parse(resp.Header.Get("Location"))
	return u.Query()
}

func TestFullFlowAgainstEmulator(t *testing.T) {
	e := newEnv(t, esiatest.Options{})
	c := e.client(t, nil)
	ctx := context.Background()
	state := uuid.NewString()
	au, err := c.AuthURL(ctx, state)
	if err != nil {
		t.Fatal(err)
	}
	back := authorize(t, au, "parent-two-kids")
	if back.Get("state") != state || back.Get("code") == "" {
		t.Fatalf("callback = %v", back)
	}
	tok, err := c.Exchange(ctx, back.Get("code"))
	if err != nil {
		t.Fatalf("exchange: %v", err)
	}
	if tok.Claims.OID != "1000300001" || !strings.Contains(strings.Join(tok.Claims.Scopes, " "), "snils") {
		t.Errorf("claims = %+v", tok.Claims)
	}
	p, err := c.Person(ctx, tok.AccessToken, tok.Claims.OID)
	if err != nil {
		t.Fatal(err)
	}
	if p.LastName != "Иванова" || p.SNILS != "112-233-445 95" || !p.Trusted || esia.ISOBirthDate(p.BirthDate) != "1985-03-04" {
		t.Errorf("person = %+v", p)
	}
	kids, err := c.Kids(ctx, tok.AccessToken, tok.Claims.OID)
	if err != nil || len(kids) != 2 || kids[0].SNILS == "" {
		t.Errorf("kids = %+v, %v", kids, err)
	}
	ctts, err := c.Contacts(ctx, tok.AccessToken, tok.Claims.OID)
	if err != nil || len(ctts) != 2 || ctts[0].Type != "EML" {
		t.Errorf("contacts = %+v, %v", ctts, err)
	}
	if _, err := c.Person(ctx, tok.AccessToken, "1000300002"); esia.ErrorCode(err) == "" && err == nil {
		t.Error("the token read another person")
	}
	// The code is single use.
	if _, err := c.Exchange(ctx, back.Get("code")); esia.ErrorCode(err) != esia.CodeCodeInvalid {
		t.Errorf("second exchange: %v, want %s", err, esia.CodeCodeInvalid)
	}
}

func TestGOSTSignedTokens(t *testing.T) {
	e := newEnv(t, esiatest.Options{TokenAlg: esia.AlgGOST})
	c := e.client(t, nil)
	au, _ := c.AuthURL(context.Background(), uuid.NewString())
	q := authorize(t, au, "student-15")
	tok, err := c.Exchange(context.Background(), q.Get("code"))
	if err != nil {
		t.Fatalf("GOST-signed token rejected: %v", err)
	}
	hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok.AccessToken, ".")[0])
	if !strings.Contains(string(hdr), `"alg":"GOST3410_2012_256"`) || tok.Claims.OID != "1000300004" {
		t.Errorf("header %s, claims %+v", hdr, tok.Claims)
	}
	rsaOnly := e.client(t, func(cfg *esia.Config) {
		other, _ := esiatest.New(esiatest.Options{})
		cfg.Verifier = other.TokenVerifier()
	})
	if _, err := rsaOnly.VerifyAccessToken(tok.AccessToken); err == nil {
		t.Error("a GOST token verified against an RSA-only verifier")
	}
}

// TestTokenCertificatePEM: the certificate the emulator publishes for a broker in another
// process verifies its tokens, for both algorithms, and another emulator's does not.
func TestTokenCertificatePEM(t *testing.T) {
	for _, alg := range []string{"RS256", esia.AlgGOST} {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, esiatest.Options{TokenAlg: alg})
			own, err := e.emu.TokenCertificatePEM()
			if err != nil {
				t.Fatal(err)
			}
			other, _ := esiatest.New(esiatest.Options{TokenAlg: alg})
			foreign, err := other.TokenCertificatePEM()
			if err != nil {
				t.Fatal(err)
			}
			au, _ := e.client(t, nil).AuthURL(context.Background(), uuid.NewString())
			tok, err := e.client(t, nil).Exchange(context.Background(), authorize(t, au, "student-15").Get("code"))
			if err != nil {
				t.Fatal(err)
			}
			for _, tc := range []struct {
				name string
				pem  []byte
				ok   bool
			}{{"own certificate", own, true}, {"another emulator's", foreign, false}} {
				v, err := esia.NewTokenVerifier(tc.pem)
				if err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				c := e.client(t, func(cfg *esia.Config) { cfg.Verifier = v })
				if _, err := c.VerifyAccessToken(tok.AccessToken); (err == nil) != tc.ok {
					t.Errorf("%s: verify error %v, want ok=%v", tc.name, err, tc.ok)
				}
			}
		})
	}
}

func TestProtocolErrors(t *testing.T) {
	e := newEnv(t, esiatest.Options{})
	ctx := context.Background()
	other, otherCert, _ := esiatest.NewClientCredentials("OTHER")
	wrongKey, _ := esia.NewKeySigner(other, otherCert)

	t.Run("timestamp outside window", func(t *testing.T) {
		c := e.client(t, func(cfg *esia.Config) { cfg.Now = func() time.Time { return time.Now().Add(-time.Hour) } })
		au, _ := c.AuthURL(ctx, uuid.NewString())
		if q := authorize(t, au, "x"); !strings.HasPrefix(q.Get("error_description"), esia.CodeRequestTime) {
			t.Errorf("got %v", q)
		}
	})
	t.Run("scope not allowed", func(t *testing.T) {
		c := e.client(t, func(cfg *esia.Config) { cfg.Scopes = []string{"openid", "inn"} })
		au, _ := c.AuthURL(ctx, uuid.NewString())
		if q := authorize(t, au, "x"); !strings.HasPrefix(q.Get("error_description"), esia.CodeBadScope) {
			t.Errorf("got %v", q)
		}
	})
	t.Run("unregistered redirect uri gets no redirect", func(t *testing.T) {
		c := e.client(t, func(cfg *esia.Config) { cfg.RedirectURI = "https://evil.example/cb" })
		au, _ := c.AuthURL(ctx, uuid.NewString())
		if q := authorize(t, au, "x"); !strings.Contains(q.Get("body"), esia.CodeRedirectURI) {
			t.Errorf("got %v", q)
		}
	})
	t.Run("certificate hash of another certificate", func(t *testing.T) {
		c, _ := esia.New(esia.Config{BaseURL: e.srv.URL, ClientID: "ESIA_BROKER_TEST", RedirectURI: redirect, Scopes: scopes}, wrongKey)
		au, _ := c.AuthURL(ctx, uuid.NewString())
		// ESIA answers it on the redirect, as access_denied with ESIA-007053, like a bad secret.
		q := authorize(t, au, "x")
		err := esia.CallbackError(q)
		if q.Get("error") != "access_denied" || esia.ErrorCode(err) != esia.CodeClientSecret || esia.Classify(err) != esia.ClassConfiguration {
			t.Errorf("got %v", q)
		}
	})
	t.Run("secret signed by another key", func(t *testing.T) {
		c, _ := esia.New(esia.Config{BaseURL: e.srv.URL, ClientID: "ESIA_BROKER_TEST", RedirectURI: redirect, Scopes: scopes}, forgedSigner{wrongKey, e.signer.CertificateHash()})
		au, _ := c.AuthURL(ctx, uuid.NewString())
		if q := authorize(t, au, "x"); q.Get("error") != "access_denied" || !strings.HasPrefix(q.Get("error_description"), esia.CodeClientSecret) {
			t.Errorf("got %v", q)
		}
	})
	t.Run("user cancels", func(t *testing.T) {
		c := e.client(t, nil)
		au, _ := c.AuthURL(ctx, uuid.NewString())
		q := authorize(t, au, "")
		var ee *esia.Error
		if err := esia.CallbackError(q); !errors.As(err, &ee) || ee.OAuthError != "access_denied" {
			t.Errorf("got %v", q)
		}
	})
	t.Run("JSON token request", func(t *testing.T) {
		resp, err := http.Post(e.srv.URL+"/aas/oauth2/v3/te", "application/json", strings.NewReader(`{"grant_type":"authorization_code"}`))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(body), esia.CodeMissingParameter) {
			t.Errorf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("token signature from another key", func(t *testing.T) {
		other, _ := esiatest.New(esiatest.Options{})
		c := e.client(t, func(cfg *esia.Config) { cfg.Verifier = other.TokenVerifier() })
		au, _ := c.AuthURL(ctx, uuid.NewString())
		q := authorize(t, au, "parent-no-match")
		if _, err := c.Exchange(ctx, q.Get("code")); err == nil || !strings.Contains(err.Error(), "signature") {
			t.Errorf("exchange with the wrong verifier: %v", err)
		}
	})
	t.Run("token from another issuer or client", func(t *testing.T) {
		for name, mod := range map[string]func(*esia.Config){
			"issuer":  func(cfg *esia.Config) { cfg.Issuer = "http://esia-portal1.test.gosuslugi.ru/" },
			"expired": func(cfg *esia.Config) { cfg.Now = func() time.Time { return time.Now().Add(3 * time.Hour) } },
		} {
			c := e.client(t, nil)
			au, _ := c.AuthURL(ctx, uuid.NewString())
			q := authorize(t, au, "parent-no-match")
			checker := e.client(t, mod)
			tok, err := c.Exchange(ctx, q.Get("code"))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := checker.VerifyAccessToken(tok.AccessToken); err == nil {
				t.Errorf("%s: token accepted", name)
			}
		}
	})
}

type forgedSigner struct {
	esia.Signer
	hash string
}

func (f forgedSigner) CertificateHash() string { return f.hash }

// fakeESIA answers the token endpoint and the person resource with whatever a test needs.
func fakeESIA(t *testing.T, h http.HandlerFunc) *esia.Client {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	key, cert, _ := esiatest.NewClientCredentials("X")
	s, _ := esia.NewKeySigner(key, cert)
	c, err := esia.New(esia.Config{BaseURL: srv.URL, ClientID: "X", RedirectURI: redirect, Scopes: []string{"openid"}, Timeout: 300 * time.Millisecond}, s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestUnreliableESIA(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    error
		result  string // esia.Result, the metric label
	}{
		{"500", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "oops", 500) }, esia.ErrUnavailable, "http_5xx"},
		{"garbage", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("<html>not json")) }, esia.ErrBadResponse, "bad_response"},
		{"slow", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
		}, esia.ErrUnavailable, "timeout"},
		{"reset", func(w http.ResponseWriter, _ *http.Request) {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
		}, esia.ErrUnavailable, "connection"},
		{"state not echoed", func(w http.ResponseWriter, _ *http.Request) {
			w.Write([]byte(`{"access_token":"a.b.c","state":"00000000-0000-4000-8000-000000000000"}`))
		}, esia.ErrStateMismatch, "bad_response"},
		{"huge", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte(strings.Repeat("x", 2<<20))) }, esia.ErrBadResponse, "bad_response"},
		{"an ESIA error", func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(400)
			w.Write([]byte(`{"error":"invalid_grant","error_description":"ESIA-007011: expired"}`))
		}, nil, "esia_error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := fakeESIA(t, tc.handler)
			start := time.Now()
			_, err := c.Exchange(ctx, "code")
			if (tc.want != nil && !errors.Is(err, tc.want)) || (tc.want == nil && err == nil) {
				t.Errorf("exchange: %v, want %v", err, tc.want)
			}
			if got := esia.Result(err); got != tc.result {
				t.Errorf("Result(%v) = %q, want %q", err, got, tc.result)
			}
			if time.Since(start) > 1500*time.Millisecond {
				t.Errorf("took %s: the timeout did not bound the wait", time.Since(start))
			}
		})
	}
	t.Run("a text/plain error keeps its ESIA code", func(t *testing.T) {
		c := fakeESIA(t, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte("ESIA-007053: client_secret сформирован некорректно\n"))
		})
		_, err := c.Exchange(ctx, "code")
		if esia.ErrorCode(err) != esia.CodeClientSecret || esia.Classify(err) != esia.ClassConfiguration {
			t.Errorf("exchange: %v, want %s", err, esia.CodeClientSecret)
		}
		_, err = c.Person(ctx, "tok", "1")
		if esia.ErrorCode(err) != esia.CodeClientSecret {
			t.Errorf("person: %v, want %s", err, esia.CodeClientSecret)
		}
	})
	t.Run("person is retried once after a failure", func(t *testing.T) {
		calls := 0
		c := fakeESIA(t, func(w http.ResponseWriter, _ *http.Request) {
			calls++
			if calls == 1 {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return
			}
			w.Write([]byte(`{"firstName":"Мария","trusted":true}`))
		})
		p, err := c.Person(ctx, "tok", "1")
		if err != nil || p.FirstName != "Мария" || calls != 2 {
			t.Errorf("person = %+v, %v after %d calls", p, err, calls)
		}
	})
	t.Run("exchange is never retried", func(t *testing.T) {
		calls := 0
		c := fakeESIA(t, func(w http.ResponseWriter, _ *http.Request) {
			calls++
			http.Error(w, "busy", http.StatusServiceUnavailable)
		})
		_, _ = c.Exchange(ctx, "code")
		if calls != 1 {
			t.Errorf("exchange called ESIA %d times", calls)
		}
	})
}

// TestAuthURLVerifiesWithOpenSSL: the client_secret of the URL is a signature OpenSSL verifies
// over client_id + scope + scope_org + timestamp + state + redirect_uri, and the certificate
// hash equals OpenSSL's Streebog-256 of the certificate.
func TestAuthURLVerifiesWithOpenSSL(t *testing.T) {
	if out, err := exec.Command("openssl", "engine", "gost").CombinedOutput(); err != nil || !strings.Contains(string(out), "gost") {
		msg := "!!! OpenSSL's gost engine is not available: GOST cross-check NOT RUN"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	run := func(args ...string) string {
		cmd := exec.Command("openssl", args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	run("genpkey", "-engine", "gost", "-algorithm", "gost2012_256", "-pkeyopt", "paramset:A", "-out", "key.pem")
	run("req", "-engine", "gost", "-new", "-x509", "-key", "key.pem", "-md_gost12_256", "-subj", "/CN=ESIA_BROKER", "-days", "1", "-out", "cert.pem")
	run("x509", "-engine", "gost", "-in", "cert.pem", "-pubkey", "-noout", "-out", "pub.pem")
	keyPEM, _ := os.ReadFile(filepath.Join(dir, "key.pem"))
	certPEM, _ := os.ReadFile(filepath.Join(dir, "cert.pem"))
	key, err := gost.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(certPEM)
	signer, err := esia.NewKeySigner(key, blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	c, err := esia.New(esia.Config{BaseURL: esia.TestURL, ClientID: "ESIA_BROKER", RedirectURI: redirect, Scopes: []string{"openid", "fullname"}, ScopeOrg: ""}, signer)
	if err != nil {
		t.Fatal(err)
	}
	state := uuid.NewString()
	au, err := c.AuthURL(context.Background(), state)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(au)
	q := u.Query()
	if !strings.HasPrefix(au, esia.TestURL+"/aas/oauth2/v2/ac?") || q.Get("state") != state || q.Get("response_type") != "code" || q.Get("access_type") != "online" {
		t.Fatalf("URL = %s", au)
	}
	if _, err := time.Parse(esia.TimestampLayout, q.Get("timestamp")); err != nil {
		t.Errorf("timestamp %q: %v", q.Get("timestamp"), err)
	}
	msg := "ESIA_BROKER" + "openid fullname" + "" + q.Get("timestamp") + state + redirect
	sig, err := base64.RawURLEncoding.DecodeString(q.Get("client_secret"))
	if err != nil || len(sig) != 64 {
		t.Fatalf("client_secret is not 64 bytes of base64url: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "msg"), []byte(msg), 0o600)
	os.WriteFile(filepath.Join(dir, "sig"), sig, 0o600)
	if out := run("dgst", "-engine", "gost", "-md_gost12_256", "-verify", "pub.pem", "-signature", "sig", "msg"); !strings.Contains(out, "Verified OK") {
		t.Errorf("OpenSSL: %s", out)
	}
	run("x509", "-in", "cert.pem", "-outform", "DER", "-out", "cert.der")
	lines := strings.Split(strings.TrimSpace(run("dgst", "-engine", "gost", "-md_gost12_256", "-r", "cert.der")), "\n")
	want := strings.ToUpper(strings.Fields(lines[len(lines)-1])[0])
	if q.Get("client_certificate_hash") != want {
		t.Errorf("certificate hash %s, OpenSSL %s", q.Get("client_certificate_hash"), want)
	}
}

func TestCommandSignerWithOpenSSL(t *testing.T) {
	if out, err := exec.Command("openssl", "engine", "gost").CombinedOutput(); err != nil || !strings.Contains(string(out), "gost") {
		if os.Getenv("CI") == "true" {
			t.Fatal("OpenSSL's gost engine is not available")
		}
		t.Skip("!!! OpenSSL's gost engine is not available: NOT RUN")
	}
	dir := t.TempDir()
	key, cert, _ := esiatest.NewClientCredentials("CMD")
	der, _ := gost.MarshalPKCS8PrivateKey(key)
	kp := filepath.Join(dir, "key.pem")
	os.WriteFile(kp, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
	s := &esia.CommandSigner{Argv: []string{"openssl", "dgst", "-engine", "gost", "-md_gost12_256", "-sign", kp}, Hash: gost.CertificateHash(cert)}
	msg := []byte("client_id" + "openid" + "2026.11.22 10:00:00 +0000")
	sig, err := s.Sign(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	if !key.VerifyMessage(msg, sig) {
		t.Error("the command signer's signature does not verify")
	}
	rev := &esia.CommandSigner{Argv: s.Argv, Reverse: true}
	sig2, _ := rev.Sign(context.Background(), msg)
	if key.VerifyMessage(msg, sig2) || !key.VerifyMessage(msg, gost.ReverseBytes(sig2)) {
		t.Error("Reverse did not reverse")
	}
	bad := &esia.CommandSigner{Argv: []string{"false"}}
	if _, err := bad.Sign(context.Background(), msg); err == nil {
		t.Error("a failing command signed")
	}
}

// TestRandomPopulation: the load-test population answers at once; with InOrderFirst the first
// draws take every member once, in order, and later draws stay inside the population.
func TestRandomPopulation(t *testing.T) {
	e := newEnv(t, esiatest.Options{RandomPopulation: 3, InOrderFirst: true})
	c := e.client(t, nil)
	var got []string
	for range 9 {
		au, _ := c.AuthURL(context.Background(), uuid.NewString())
		q := authorize(t, au, "")
		tok, err := c.Exchange(context.Background(), q.Get("code"))
		if err != nil {
			t.Fatalf("exchange: %v (callback %v)", err, q)
		}
		got = append(got, tok.Claims.OID)
	}
	if strings.Join(got[:3], ",") != "2000000000,2000000001,2000000002" {
		t.Errorf("first draws %v, want every member once in order", got[:3])
	}
	for _, oid := range got[3:] {
		if oid < "2000000000" || oid > "2000000002" {
			t.Errorf("draw %s outside the population of 3", oid)
		}
	}
	if !esiatest.ValidSNILS(esiatest.PopulationPersona(2).SNILS) {
		t.Error("population member without a valid SNILS")
	}
}
