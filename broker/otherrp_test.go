package broker_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	zclient "github.com/zitadel/oidc/v3/pkg/client"
	zrp "github.com/zitadel/oidc/v3/pkg/client/rp"
	"github.com/zitadel/oidc/v3/pkg/client/rs"
	httphelper "github.com/zitadel/oidc/v3/pkg/http"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"golang.org/x/oauth2"

	"github.com/esia-broker/esia-broker/storage"
)

// The tests in this file drive the broker with github.com/zitadel/oidc/v3 — an OpenID Connect
// relying-party library from another project, not the go-oidc the broker's other tests (and the
// broker itself) use — as a diary built on it would (issue 16).

// zitadelRP is a diary on zitadel/oidc's relying party.
type zitadelRP struct {
	t     *testing.T
	h     *harness
	party zrp.RelyingParty
	nonce string
}

func newZitadelRP(t *testing.T, h *harness, clientID, secret string, scopes []string, opts ...zrp.Option) *zitadelRP {
	t.Helper()
	z := &zitadelRP{t: t, h: h}
	opts = append(opts, zrp.WithVerifierOpts(zrp.WithNonce(func(context.Context) string { return z.nonce })))
	party, err := zrp.NewRelyingPartyOIDC(t.Context(), h.URL, clientID, secret, rpRedirect, scopes, opts...)
	if err != nil {
		t.Fatalf("zitadel relying party: %v", err)
	}
	z.party = party
	return z
}

// param is an authorization request parameter for zrp.AuthURL.
func param(k, v string) zrp.AuthURLOpt {
	return func() []oauth2.AuthCodeOption { return []oauth2.AuthCodeOption{oauth2.SetAuthURLParam(k, v)} }
}

// authorize runs an authorization request in br and returns the broker's redirect to the diary
// and the PKCE verifier.
func (z *zitadelRP) authorize(br *browser, extra ...zrp.AuthURLOpt) (*url.URL, string) {
	z.t.Helper()
	verifier := oauth2.GenerateVerifier()
	z.nonce = "n-" + oauth2.GenerateVerifier()[:16]
	opts := append([]zrp.AuthURLOpt{zrp.WithCodeChallenge(oidc.NewSHACodeChallenge(verifier)), param("nonce", z.nonce)}, extra...)
	state := "s-" + oauth2.GenerateVerifier()[:16]
	back := z.h.login(br, zrp.AuthURL(state, z.party, opts...))
	if got := back.Query().Get("state"); got != state {
		z.t.Fatalf("state %q, want %q (%s)", got, state, back)
	}
	// RFC 9207: the authorization response names its issuer (item 6).
	if iss := back.Query().Get("iss"); iss != z.h.URL {
		z.t.Errorf("authorization response iss %q, want %q", iss, z.h.URL)
	}
	return back, verifier
}

// login authorizes in br and exchanges the code; the library verifies the ID token (signature
// from the JWKS, iss, aud, azp, exp, iat, nonce).
func (z *zitadelRP) login(br *browser, exchange ...zrp.CodeExchangeOpt) *oidc.Tokens[*oidc.IDTokenClaims] {
	z.t.Helper()
	back, verifier := z.authorize(br)
	code := back.Query().Get("code")
	if code == "" {
		z.t.Fatalf("no code: %s", back)
	}
	tokens, err := zrp.CodeExchange[*oidc.IDTokenClaims](z.t.Context(), code, z.party, append(exchange, zrp.WithCodeVerifier(verifier))...)
	if err != nil {
		z.t.Fatalf("code exchange: %v", err)
	}
	return tokens
}

// formResourceServer is a zitadel resource server that authenticates with client_secret_post.
type formResourceServer struct {
	rs.ResourceServer
	id, secret string
}

func (f formResourceServer) AuthFn() (any, error) {
	return httphelper.FormAuthorization(func(v url.Values) {
		v.Set("client_id", f.id)
		v.Set("client_secret", f.secret)
	}), nil
}

// TestZitadelRelyingParty drives items 1-7 of issue 16 with zitadel/oidc: login with PKCE and
// a verified ID token carrying sid, iss in the authorization response, userinfo, refresh,
// introspection by HTTP Basic and by client_secret_post with each token's own type and expiry,
// a refused revocation of another client's token, consent that covers a subset, and
// RP-initiated logout POSTed from the diary's server.
func TestZitadelRelyingParty(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		h := newHarness(t, s)
		h.client("kiasuo", "secret-secret-secret", "openid", "profile", "offline_access")
		h.client("asiou", "asiou-secret-secret", "openid", "profile", "offline_access")
		ctx := t.Context()
		z := newZitadelRP(t, h, "kiasuo", "secret-secret-secret", []string{"openid", "profile", "offline_access"})

		disc, err := zclient.Discover(ctx, h.URL, http.DefaultClient)
		if err != nil {
			t.Fatal(err)
		}
		if !disc.BackChannelLogoutSupported || !disc.BackChannelLogoutSessionSupported || len(disc.IntrospectionEndpointAuthMethodsSupported) < 2 {
			t.Errorf("discovery: backchannel %v/%v, introspection auth methods %v", disc.BackChannelLogoutSupported, disc.BackChannelLogoutSessionSupported, disc.IntrospectionEndpointAuthMethodsSupported)
		}

		br := newBrowser(t)
		tokens := z.login(br)
		sid, _ := tokens.IDTokenClaims.Claims["sid"].(string)
		if tokens.IDTokenClaims.Subject == "" || len(sid) < 16 || tokens.RefreshToken == "" {
			t.Fatalf("ID token sub %q sid %q, refresh token %v", tokens.IDTokenClaims.Subject, sid, tokens.RefreshToken != "")
		}
		info, err := zrp.Userinfo[*oidc.UserInfo](ctx, tokens.AccessToken, "Bearer", tokens.IDTokenClaims.Subject, z.party)
		if err != nil || info.FamilyName != "Иванова" {
			t.Errorf("userinfo: %v %+v", err, info)
		}

		// Items 2 and 3: introspection with HTTP Basic and with client_secret_post; a refresh
		// token reports its own type and expiry.
		basic, err := rs.NewResourceServerClientCredentials(ctx, h.URL, "kiasuo", "secret-secret-secret")
		if err != nil {
			t.Fatal(err)
		}
		for name, server := range map[string]rs.ResourceServer{"basic": basic, "post": formResourceServer{basic, "kiasuo", "secret-secret-secret"}} {
			at, err := rs.Introspect[*oidc.IntrospectionResponse](ctx, server, tokens.AccessToken)
			if err != nil || !at.Active || at.Subject != tokens.IDTokenClaims.Subject || at.TokenType != "access_token" && at.TokenType != "Bearer" {
				t.Errorf("%s: introspect the access token: %v %+v", name, err, at)
			}
			if err == nil && time.Until(at.Expiration.AsTime()) > 16*time.Minute {
				t.Errorf("%s: access token exp %s", name, at.Expiration.AsTime())
			}
			rt, err := rs.Introspect[*oidc.IntrospectionResponse](ctx, server, tokens.RefreshToken)
			if err != nil || !rt.Active || rt.TokenType != "refresh_token" || time.Until(rt.Expiration.AsTime()) < 24*time.Hour {
				t.Errorf("%s: introspect the refresh token: %v active %v type %q exp %s", name, err, rt.Active, rt.TokenType, rt.Expiration.AsTime())
			}
		}
		wrong, _ := rs.NewResourceServerClientCredentials(ctx, h.URL, "kiasuo", "not-the-secret")
		if _, err := rs.Introspect[*oidc.IntrospectionResponse](ctx, wrong, tokens.AccessToken); err == nil || !strings.Contains(err.Error(), "invalid_client") {
			t.Errorf("introspection with a wrong secret: %v", err)
		}

		// Refresh, verified by the library. A refreshed ID token carries no nonce (OpenID
		// Connect Core §12.2), and a zitadel diary expects none outside a login.
		z.nonce = ""
		refreshed, err := zrp.RefreshTokens[*oidc.IDTokenClaims](ctx, z.party, tokens.RefreshToken, "", "")
		if err != nil || refreshed.AccessToken == "" || refreshed.RefreshToken == "" || refreshed.RefreshToken == tokens.RefreshToken {
			t.Fatalf("refresh: %v", err)
		}

		// Item 5: another client's token is refused, and stays active.
		other := newZitadelRP(t, h, "asiou", "asiou-secret-secret", []string{"openid"})
		if err := zrp.RevokeToken(ctx, other.party, refreshed.RefreshToken, "refresh_token"); err == nil {
			t.Error("asiou revoked kiasuo's refresh token without an error")
		}
		if rt, err := rs.Introspect[*oidc.IntrospectionResponse](ctx, basic, refreshed.RefreshToken); err != nil || !rt.Active {
			t.Errorf("after another client's revocation: %v active %v", err, rt.Active)
		}

		// Item 7: consent to openid+profile+offline_access covers openid alone, without asking.
		subset := newZitadelRP(t, h, "kiasuo", "secret-secret-secret", []string{"openid"})
		back, _ := subset.authorize(br, zrp.WithPrompt("none"))
		if back.Query().Get("code") == "" {
			t.Errorf("prompt=none for a subset of the consent: %s", back.Query().Get("error"))
		}

		// Item 1: the diary's server ends the session by POST with the ID token; the browser
		// must log in again.
		if _, err := zrp.EndSession(ctx, z.party, tokens.IDToken, "", "", "", nil); err != nil {
			t.Fatalf("end session by POST from the diary's server: %v", err)
		}
		back, _ = subset.authorize(br, zrp.WithPrompt("none"))
		if back.Query().Get("error") != "login_required" {
			t.Errorf("after the diary's logout, prompt=none answered %s", back)
		}
		// The diary revokes its own refresh token: it stops working.
		if err := zrp.RevokeToken(ctx, z.party, refreshed.RefreshToken, "refresh_token"); err != nil {
			t.Errorf("revoke own token: %v", err)
		}
		if rt, err := rs.Introspect[*oidc.IntrospectionResponse](ctx, basic, refreshed.RefreshToken); err != nil || rt.Active {
			t.Errorf("a revoked refresh token: %v active %v", err, rt.Active)
		}
	})
}

// TestZitadelPrivateKeyJWT: a diary registered for private_key_jwt authenticates with assertions
// zitadel/oidc signs (audience: the issuer, as RFC 7523 and FAPI 2 have it) at the token,
// introspection and revocation endpoints; a secret, a foreign key and a replayed assertion are
// refused (item 9).
func TestZitadelPrivateKeyJWT(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		h := newHarness(t, s)
		ctx := t.Context()
		key, keyPEM, jwks := rsaClientKey(t, "diary-key-1")
		c := h.client("pkj", "", "openid", "profile", "offline_access")
		c.Public, c.TokenEndpointAuthMethod, c.JWKS = false, "private_key_jwt", jwks
		if err := s.UpdateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
		_ = key
		z := newZitadelRP(t, h, "pkj", "", []string{"openid", "profile", "offline_access"}, zrp.WithJWTProfile(zrp.SignerFromKeyAndKeyID(keyPEM, "diary-key-1")))
		assertion := func() string {
			a, err := zclient.SignedJWTProfileAssertion("pkj", []string{h.URL}, time.Minute, z.party.Signer())
			if err != nil {
				t.Fatal(err)
			}
			return a
		}
		br := newBrowser(t)
		first := assertion()
		tokens := z.login(br, zrp.WithClientAssertionJWT(first))
		if tokens.RefreshToken == "" {
			t.Fatal("no refresh token")
		}
		// The same assertion again (a fresh code): refused, its jti is spent.
		back, verifier := z.authorize(br)
		if _, err := zrp.CodeExchange[*oidc.IDTokenClaims](ctx, back.Query().Get("code"), z.party, zrp.WithCodeVerifier(verifier), zrp.WithClientAssertionJWT(first)); err == nil {
			t.Error("a replayed client assertion was accepted")
		}
		// A key the client did not register.
		_, otherPEM, _ := rsaClientKey(t, "diary-key-1")
		foreign := newZitadelRP(t, h, "pkj", "", []string{"openid"}, zrp.WithJWTProfile(zrp.SignerFromKeyAndKeyID(otherPEM, "diary-key-1")))
		fa, _ := zclient.SignedJWTProfileAssertion("pkj", []string{h.URL}, time.Minute, foreign.party.Signer())
		back, verifier = z.authorize(br)
		if _, err := zrp.CodeExchange[*oidc.IDTokenClaims](ctx, back.Query().Get("code"), z.party, zrp.WithCodeVerifier(verifier), zrp.WithClientAssertionJWT(fa)); err == nil || !strings.Contains(err.Error(), "invalid_client") {
			t.Errorf("an assertion signed with another key: %v", err)
		}
		// A secret instead of an assertion.
		if code, body := postForm(t, h.URL+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tokens.RefreshToken}}, "pkj", "any-secret"); code != http.StatusUnauthorized || body["error"] != "invalid_client" {
			t.Errorf("a secret for a private_key_jwt client: %d %v", code, body)
		}
		// Refresh (the library signs a new assertion), introspection and revocation.
		z.nonce = ""
		refreshed, err := zrp.RefreshTokens[*oidc.IDTokenClaims](ctx, z.party, tokens.RefreshToken, "", "")
		if err != nil {
			t.Fatalf("refresh with private_key_jwt: %v", err)
		}
		server, err := rs.NewResourceServerJWTProfile(ctx, h.URL, "pkj", "diary-key-1", keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		if rt, err := rs.Introspect[*oidc.IntrospectionResponse](ctx, server, refreshed.RefreshToken); err != nil || !rt.Active || rt.ClientID != "pkj" {
			t.Errorf("introspection with private_key_jwt: %v %+v", err, rt)
		}
		if err := zrp.RevokeToken(ctx, z.party, refreshed.RefreshToken, "refresh_token"); err != nil {
			t.Errorf("revocation with private_key_jwt: %v", err)
		}
		if rt, err := rs.Introspect[*oidc.IntrospectionResponse](ctx, server, refreshed.RefreshToken); err != nil || rt.Active {
			t.Errorf("after revocation: %v active %v", err, rt.Active)
		}
	})
}

// rsaClientKey returns a diary's RSA key as zitadel reads it (PKCS#1 PEM) and its public JWK Set.
func rsaClientKey(t *testing.T, kid string) (*rsa.PrivateKey, []byte, string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return key, keyPEM, string(set)
}

// TestPushedAuthorizationRequests: a diary pushes its request (RFC 9126) and zitadel/oidc
// exchanges the code; a client that requires PAR is refused a plain request; a request_uri
// taken by 50 browsers at once starts one login (item 10).
func TestPushedAuthorizationRequests(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		h := newHarness(t, s)
		ctx := t.Context()
		c := h.client("kiasuo", "secret-secret-secret", "openid", "profile")
		c.RequirePAR = true
		if err := s.UpdateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
		z := newZitadelRP(t, h, "kiasuo", "secret-secret-secret", []string{"openid", "profile"})
		disc, err := zclient.Discover(ctx, h.URL, http.DefaultClient)
		if err != nil {
			t.Fatal(err)
		}
		var meta map[string]any
		_, raw := getBody(t, http.DefaultClient, h.URL+"/.well-known/openid-configuration")
		if err := json.Unmarshal([]byte(raw), &meta); err != nil || meta["pushed_authorization_request_endpoint"] != h.URL+"/oauth2/par" {
			t.Errorf("discovery: PAR endpoint %v", meta["pushed_authorization_request_endpoint"])
		}

		// A plain request from a client that must push: no login starts.
		br := newBrowser(t)
		resp, err := br.Get(zrp.AuthURL("state-plain-1", z.party, zrp.WithCodeChallenge(oidc.NewSHACodeChallenge(oauth2.GenerateVerifier()))))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if loginLink.Match(body) {
			t.Error("a client that requires PAR started a login without it")
		}

		push := func(verifier, nonce string) string {
			t.Helper()
			v := url.Values{"response_type": {"code"}, "client_id": {"kiasuo"}, "redirect_uri": {rpRedirect}, "scope": {"openid profile"},
				"state": {"state-pushed-1"}, "nonce": {nonce}, "code_challenge": {oidc.NewSHACodeChallenge(verifier)}, "code_challenge_method": {"S256"}}
			code, out := postForm(t, h.URL+"/oauth2/par", v, "kiasuo", "secret-secret-secret")
			uri, _ := out["request_uri"].(string)
			if code != http.StatusCreated || !strings.HasPrefix(uri, "urn:ietf:params:oauth:request_uri:") {
				t.Fatalf("PAR: %d %v", code, out)
			}
			return uri
		}
		authorizeURL := func(uri string) string {
			return h.URL + "/oauth2/authorize?" + url.Values{"client_id": {"kiasuo"}, "request_uri": {uri}}.Encode()
		}
		verifier := oauth2.GenerateVerifier()
		z.nonce = "nonce-pushed-1"
		back := h.login(br, authorizeURL(push(verifier, z.nonce)))
		if back.Query().Get("iss") != h.URL || back.Query().Get("state") != "state-pushed-1" {
			t.Errorf("pushed login came back as %s", back)
		}
		if _, err := zrp.CodeExchange[*oidc.IDTokenClaims](ctx, back.Query().Get("code"), z.party, zrp.WithCodeVerifier(verifier)); err != nil {
			t.Fatalf("exchange after PAR: %v", err)
		}

		// The browser cannot add to or change a pushed request: its nonce, state, redirect_uri,
		// scope and code_challenge are dropped, and a request object is refused.
		verifier = oauth2.GenerateVerifier()
		z.nonce = "nonce-pushed-3"
		tampered := authorizeURL(push(verifier, z.nonce)) + "&" + url.Values{"nonce": {"EVIL"}, "state": {"EVIL"}, "redirect_uri": {"http://127.0.0.1:9999/cb"},
			"scope": {"openid profile students"}, "code_challenge": {oidc.NewSHACodeChallenge("attacker-verifier-attacker-verifier-attacker")}}.Encode()
		back = h.login(br, tampered)
		if back.Host != mustParse(t, rpRedirect).Host || back.Path != mustParse(t, rpRedirect).Path || back.Query().Get("state") != "state-pushed-1" {
			t.Errorf("a tampered pushed login came back as %s", back)
		}
		if _, err := zrp.CodeExchange[*oidc.IDTokenClaims](ctx, back.Query().Get("code"), z.party, zrp.WithCodeVerifier(verifier)); err != nil {
			t.Errorf("exchange after a tampered PAR (the pushed nonce and challenge must hold): %v", err)
		}
		// Pushed without a nonce: one the browser adds does not reach the ID token.
		verifier = oauth2.GenerateVerifier()
		v := url.Values{"response_type": {"code"}, "client_id": {"kiasuo"}, "redirect_uri": {rpRedirect}, "scope": {"openid profile"},
			"state": {"state-pushed-5"}, "code_challenge": {oidc.NewSHACodeChallenge(verifier)}, "code_challenge_method": {"S256"}}
		code, out := postForm(t, h.URL+"/oauth2/par", v, "kiasuo", "secret-secret-secret")
		if code != http.StatusCreated {
			t.Fatalf("PAR without nonce: %d %v", code, out)
		}
		back = h.login(br, authorizeURL(out["request_uri"].(string))+"&nonce=ADDED-BY-BROWSER&prompt=none")
		code, out = postForm(t, h.URL+"/oauth2/token", url.Values{"grant_type": {"authorization_code"}, "code": {back.Query().Get("code")},
			"redirect_uri": {rpRedirect}, "code_verifier": {verifier}}, "kiasuo", "secret-secret-secret")
		idt, _ := out["id_token"].(string)
		if parts := strings.Split(idt, "."); code != http.StatusOK || len(parts) != 3 {
			t.Errorf("exchange: %d %v", code, out)
		} else if payload, _ := base64.RawURLEncoding.DecodeString(parts[1]); strings.Contains(string(payload), "ADDED-BY-BROWSER") {
			t.Errorf("a nonce the browser added reached the ID token: %s", payload)
		}
		unsigned := "eyJhbGciOiJub25lIn0." + base64.RawURLEncoding.EncodeToString([]byte(`{"nonce":"EVIL","redirect_uri":"http://127.0.0.1:9999/cb"}`)) + "."
		for _, u := range []string{authorizeURL(push(oauth2.GenerateVerifier(), "n-4")) + "&request=" + unsigned,
			h.URL + "/oauth2/authorize?" + url.Values{"client_id": {"kiasuo"}, "response_type": {"code"}, "request": {unsigned}}.Encode()} {
			resp, err := br.Get(u)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if loc := resp.Header.Get("Location"); strings.Contains(loc, "code=") || loginLink.Match(b) {
				t.Errorf("a request object was taken: %d %s", resp.StatusCode, loc)
			}
		}
		if code, out := postForm(t, h.URL+"/oauth2/par", url.Values{"response_type": {"code"}, "client_id": {"kiasuo"}, "redirect_uri": {rpRedirect},
			"scope": {"openid"}, "request": {unsigned}, "code_challenge": {oidc.NewSHACodeChallenge(verifier)}, "code_challenge_method": {"S256"}}, "kiasuo", "secret-secret-secret"); code != http.StatusBadRequest {
			t.Errorf("PAR with a request object: %d %v", code, out)
		}

		// One request_uri, 50 browsers at once: one login starts.
		uri := push(oauth2.GenerateVerifier(), "nonce-pushed-2")
		var started atomic.Int32
		var wg sync.WaitGroup
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := newBrowser(t).Get(authorizeURL(uri))
				if err != nil {
					t.Error(err)
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if loginLink.Match(b) {
					started.Add(1)
				}
			}()
		}
		wg.Wait()
		if n := started.Load(); n != 1 {
			t.Errorf("one request_uri started %d logins", n)
		}
		_ = disc
	})
}

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestClientAssertionRefusals: every failed private_key_jwt authentication is 401
// invalid_client — at revocation too, where fosite answered 200 without revoking — an assertion
// lives at most an hour, its jti stays spent when the grant it came with is refused, and one
// request carries one authentication method.
func TestClientAssertionRefusals(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		h := newHarness(t, s)
		ctx := t.Context()
		key, _, withUse := rsaClientKey(t, "k1")
		// Registered without "use": a signing key all the same.
		jwks := strings.Replace(withUse, `"use":"sig",`, "", 1)
		if jwks == withUse {
			t.Fatalf("no use in %s", withUse)
		}
		c := h.client("pkj", "", "openid", "profile")
		c.Public, c.TokenEndpointAuthMethod, c.JWKS = false, "private_key_jwt", jwks
		if err := s.UpdateClient(ctx, c); err != nil {
			t.Fatal(err)
		}
		h.client("sec", "sec-secret-secret", "openid", "profile")
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		signWith := func(exp, iat int64, extra map[string]any) string {
			n++
			claims := map[string]any{"iss": "pkj", "sub": "pkj", "aud": h.URL, "jti": fmt.Sprintf("jti-%d-%d", n, time.Now().UnixNano()), "exp": exp, "iat": iat}
			for k, v := range extra {
				claims[k] = v
			}
			b, _ := json.Marshal(claims)
			jws, err := signer.Sign(b)
			if err != nil {
				t.Fatal(err)
			}
			out, _ := jws.CompactSerialize()
			return out
		}
		sign := func(exp, iat int64) string { return signWith(exp, iat, nil) }
		now := time.Now().Unix()
		form := func(assertion string, v url.Values) url.Values {
			v.Set("client_id", "pkj")
			v.Set("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
			v.Set("client_assertion", assertion)
			return v
		}
		cc := func(assertion string) (int, map[string]any) {
			return postForm(t, h.URL+"/oauth2/token", form(assertion, url.Values{"grant_type": {"client_credentials"}, "scope": {"openid"}}), "", "")
		}
		code, tok := cc(sign(now+60, now))
		access, _ := tok["access_token"].(string)
		if code != http.StatusOK || access == "" {
			t.Fatalf("a good assertion: %d %v", code, tok)
		}
		for name, a := range map[string]string{
			"expired":              sign(now-600, now-700),
			"issued in the future": sign(now+900, now+600),
			"two hours":            sign(now+7200, now),
			"year 10000":           sign(253402300800, now),
			"int64 max":            sign(math.MaxInt64, now),
			// A case-insensitive reader of the claims would take the second for exp.
			"exp twice": signWith(now+315360000, now, map[string]any{"Exp": now + 60}),
			"EXP twice": signWith(now+315360000, now, map[string]any{"EXP": now + 60, "eXp": now + 60}),
		} {
			for _, endpoint := range []string{"/oauth2/token", "/oauth2/par", "/oauth2/revoke", "/oauth2/introspect"} {
				v := url.Values{"grant_type": {"client_credentials"}, "scope": {"openid"}, "token": {access}, "response_type": {"code"},
					"redirect_uri": {rpRedirect}, "code_challenge": {oidc.NewSHACodeChallenge("v-v-v-v-v-v-v-v-v-v-v-v-v-v-v-v-v-v-v-v-v-v")}, "code_challenge_method": {"S256"}}
				code, out := postForm(t, h.URL+endpoint, form(a, v), "", "")
				if endpoint == "/oauth2/introspect" {
					if code == http.StatusOK && out["active"] == true {
						t.Errorf("%s assertion at %s: %d %v", name, endpoint, code, out)
					}
					continue
				}
				if code != http.StatusUnauthorized || out["error"] != "invalid_client" {
					t.Errorf("%s assertion at %s: %d %v, want 401 invalid_client", name, endpoint, code, out)
				}
			}
		}
		// A replayed assertion at revocation: 401, and the token is still active.
		a := sign(now+60, now)
		if code, out := postForm(t, h.URL+"/oauth2/introspect", form(a, url.Values{"token": {access}}), "", ""); code != http.StatusOK || out["active"] != true {
			t.Fatalf("introspect: %d %v", code, out)
		}
		if code, out := postForm(t, h.URL+"/oauth2/revoke", form(a, url.Values{"token": {access}}), "", ""); code != http.StatusUnauthorized || out["error"] != "invalid_client" {
			t.Errorf("revocation with a replayed assertion: %d %v", code, out)
		}
		if code, out := postForm(t, h.URL+"/oauth2/introspect", form(sign(now+60, now), url.Values{"token": {access}}), "", ""); code != http.StatusOK || out["active"] != true {
			t.Errorf("the token after a refused revocation: %d %v", code, out)
		}

		// A refused grant does not give the assertion back.
		for _, g := range []url.Values{{"grant_type": {"authorization_code"}, "code": {"ory_ac_bogus.bogus"}, "redirect_uri": {rpRedirect}},
			{"grant_type": {"refresh_token"}, "refresh_token": {"ory_rt_bogus.bogus"}}} {
			a := sign(now+60, now)
			if code, _ := postForm(t, h.URL+"/oauth2/token", form(a, g), "", ""); code == http.StatusOK {
				t.Fatalf("a bogus %s was accepted", g.Get("grant_type"))
			}
			if code, out := cc(a); code != http.StatusUnauthorized || out["error"] != "invalid_client" {
				t.Errorf("the assertion of a refused %s, used again: %d %v", g.Get("grant_type"), code, out)
			}
		}

		// One method per request: a secret of one client and an assertion of another.
		v := form(sign(now+60, now), url.Values{"grant_type": {"client_credentials"}, "scope": {"openid"}})
		if code, out := postForm(t, h.URL+"/oauth2/token", v, "sec", "sec-secret-secret"); code != http.StatusBadRequest || out["error"] != "invalid_request" {
			t.Errorf("Basic and an assertion together: %d %v", code, out)
		}
	})
}

// TestPromptConsent: prompt=consent, advertised in discovery, shows the consent page again to a
// person who has consented already; without it the code is issued at once.
func TestPromptConsent(t *testing.T) {
	forEachStore(t, func(t *testing.T, s *storage.Store) {
		h := newHarness(t, s)
		h.client("kiasuo", "secret-secret-secret", "openid", "profile")
		r := newRP(t, h, "kiasuo", "secret-secret-secret", "openid", "profile")
		br := newBrowser(t)
		r.loginAndExchange(t, br)
		ask := func(extra ...oauth2.AuthCodeOption) (int, string) {
			opts := append([]oauth2.AuthCodeOption{oauth2.S256ChallengeOption(oauth2.GenerateVerifier()), oauth2.SetAuthURLParam("nonce", "n-prompt")}, extra...)
			resp, err := br.Get(r.conf.AuthCodeURL("state-prompt", opts...))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			return resp.StatusCode, string(b) + resp.Header.Get("Location")
		}
		if _, body := ask(); !strings.Contains(body, "code=") {
			t.Errorf("a second login without prompt did not go straight back: %.300s", body)
		}
		if code, body := ask(oauth2.SetAuthURLParam("prompt", "consent")); code != http.StatusOK || !consentForm.MatchString(body) {
			t.Errorf("prompt=consent: %d, no consent page: %.300s", code, body)
		}
	})
}

// TestOnlyFormBodies: the OAuth endpoints read application/x-www-form-urlencoded bodies only —
// fosite would read a multipart body after the broker's checks of the form, so a nonce or a
// request object sent that way beside a pushed request_uri got in.
func TestOnlyFormBodies(t *testing.T) {
	h := newHarness(t, openSQLite(t))
	h.client("kiasuo", "secret-secret-secret", "openid", "profile")
	for _, path := range []string{"/oauth2/authorize", "/oauth2/par", "/oauth2/token", "/oauth2/revoke", "/oauth2/introspect"} {
		var body strings.Builder
		mw := multipart.NewWriter(&body)
		for k, v := range map[string]string{"client_id": "kiasuo", "client_secret": "secret-secret-secret", "response_type": "code", "grant_type": "client_credentials",
			"redirect_uri": rpRedirect, "scope": "openid", "nonce": "EVIL", "token": "x", "request_uri": "urn:ietf:params:oauth:request_uri:x"} {
			_ = mw.WriteField(k, v)
		}
		mw.Close()
		resp, err := http.Post(h.URL+path, mw.FormDataContentType(), strings.NewReader(body.String()))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || resp.Header.Get("Location") != "" {
			t.Errorf("multipart POST to %s: %d %.200s", path, resp.StatusCode, b)
		}
	}
}
