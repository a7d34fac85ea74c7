// Package esiatest is an emulator of ESIA for tests and the dev server. It speaks ESIA's
// protocol as the public facts and real ТЕСИА tokens show it (docs/DESIGN.md §4, docs/ESIA.md),
// strictly: GOST client secrets over the exact string ESIA signs (standard or URL-safe
// base64, padded or not, as ESIA takes them), certificate hashes, the timestamp window,
// redirect URIs, scopes, single-use codes, JWT tokens with ESIA's header and claim types
// (urn:esia:sbj_id a number, no kid), the person resources with Bearer and scope checks, kid
// fields only with their kid_* scopes, ESIA's error codes as ESIA sends them (a bad client
// secret or certificate hash is access_denied with ESIA-007053), and ESIA's single sign-on
// session: a returning browser is answered without the persona page until /idp/ext/Logout.
package esiatest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"html/template"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/esia-broker/esia-broker/esia"
	"github.com/esia-broker/esia-broker/esia/gost"
)

//go:embed personas.json
var defaultPersonas []byte

// Persona is an ESIA account the emulator can log in as.
type Persona struct {
	ID         string         `json:"id"`
	Label      string         `json:"label"`
	OID        string         `json:"oid"`
	LastName   string         `json:"lastName"`
	FirstName  string         `json:"firstName"`
	MiddleName string         `json:"middleName"`
	BirthDate  string         `json:"birthDate"`
	Gender     string         `json:"gender"`
	SNILS      string         `json:"snils"`
	Trusted    bool           `json:"trusted"`
	Contacts   []esia.Contact `json:"contacts"`
	Kids       []esia.Kid     `json:"kids"`
}

// DefaultPersonas are the dev personas: parents with and without SNILS matches, an unconfirmed
// account, a student of 15, a parent of three children in two schools.
func DefaultPersonas() []Persona {
	p, err := ParsePersonas(defaultPersonas)
	if err != nil {
		panic("esiatest: embedded personas: " + err.Error())
	}
	return p
}

// ParsePersonas reads a personas file (a JSON array) and checks it.
func ParsePersonas(b []byte) ([]Persona, error) {
	var ps []Persona
	if err := json.Unmarshal(b, &ps); err != nil {
		return nil, fmt.Errorf("personas: %w", err)
	}
	seen := map[string]bool{}
	for _, p := range ps {
		if p.ID == "" || p.OID == "" || seen[p.ID] {
			return nil, fmt.Errorf("personas: persona %q needs a unique id and an oid", p.ID)
		}
		seen[p.ID] = true
		if p.SNILS != "" && !ValidSNILS(p.SNILS) {
			return nil, fmt.Errorf("personas: persona %q has an invalid SNILS", p.ID)
		}
		if _, err := time.Parse("02.01.2006", p.BirthDate); err != nil {
			return nil, fmt.Errorf("personas: persona %q: birthDate must be DD.MM.YYYY", p.ID)
		}
	}
	return ps, nil
}

// Client is an information system registered at the emulated ESIA.
type Client struct {
	ID           string
	CertDER      []byte
	RedirectURIs []string
	Scopes       []string
}

// Options configure the emulator.
type Options struct {
	// Issuer is the iss of issued tokens; esia.DefaultIssuer when empty.
	Issuer   string
	Personas []Persona
	Clients  []Client
	// RandomPopulation > 0 answers every authorization at once as a persona drawn at random
	// from a generated population of that size (load tests).
	RandomPopulation int
	// InOrderFirst makes the first RandomPopulation authorizations take every member once, in
	// order, before the random draws: a load test logs everyone in once, then measures
	// returning users.
	InOrderFirst bool
	// SkipSignatureChecks skips verifying client secrets (load tests measure the broker only).
	SkipSignatureChecks bool
	// TimestampWindow is how far a request's timestamp may be from now; 5m when zero.
	TimestampWindow time.Duration
	TokenLifetime   time.Duration
	Now             func() time.Time
	// TokenAlg is RS256 (default) or GOST3410_2012_256: how issued JWTs are signed.
	TokenAlg string
}

type clientReg struct {
	Client
	pub  *gost.PublicKey
	hash string
}

type grant struct {
	clientID    string
	redirectURI string
	scopes      []string
	persona     *Persona
	expires     time.Time
	accessType  string
	authTime    time.Time // when the person authenticated (earlier than the grant with SSO)
}

// ssoSession is ESIA's own session in a browser.
type ssoSession struct {
	persona  *Persona
	authTime time.Time
}

type pending struct {
	clientID, redirectURI, state, accessType string
	scopes                                   []string
	expires                                  time.Time
}

// Server is the emulated ESIA.
type Server struct {
	opts    Options
	key     *rsa.PrivateKey
	gostKey *gost.PrivateKey
	clients map[string]*clientReg
	byID    map[string]*Persona
	byOID   map[string]*Persona
	page    *template.Template

	mu       sync.Mutex
	drawn    int // population members handed out in order (InOrderFirst)
	pendings map[string]*pending
	codes    map[string]*grant
	tokens   map[string]*grant
	refresh  map[string]*grant
	sso      map[string]*ssoSession // ESIA's own browser sessions, by cookie value
}

// SSOCookie is the emulator's single sign-on cookie (ESIA's own session in a browser).
const SSOCookie = "esia_emulator_sso"

// New makes an emulator.
func New(opts Options) (*Server, error) {
	if opts.Issuer == "" {
		opts.Issuer = esia.DefaultIssuer
	}
	if opts.TimestampWindow <= 0 {
		opts.TimestampWindow = 5 * time.Minute
	}
	if opts.TokenLifetime <= 0 {
		opts.TokenLifetime = time.Hour
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Personas == nil {
		opts.Personas = DefaultPersonas()
	}
	if opts.TokenAlg == "" {
		opts.TokenAlg = "RS256"
	}
	if opts.TokenAlg != "RS256" && opts.TokenAlg != esia.AlgGOST {
		return nil, fmt.Errorf("esiatest: token alg must be RS256 or %s", esia.AlgGOST)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, fmt.Errorf("esiatest: %w", err)
	}
	gk, err := gost.GenerateKey(gost.CurveCryptoProA(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("esiatest: %w", err)
	}
	s := &Server{opts: opts, key: key, gostKey: gk, clients: map[string]*clientReg{}, byID: map[string]*Persona{}, byOID: map[string]*Persona{},
		pendings: map[string]*pending{}, codes: map[string]*grant{}, tokens: map[string]*grant{}, refresh: map[string]*grant{}, sso: map[string]*ssoSession{}}
	for i := range opts.Personas {
		p := &opts.Personas[i]
		s.byID[p.ID], s.byOID[p.OID] = p, p
	}
	for _, c := range opts.Clients {
		if err := s.Register(c); err != nil {
			return nil, err
		}
	}
	s.page = template.Must(template.New("page").Parse(personaPage))
	return s, nil
}

// Register adds (or replaces) a client.
func (s *Server) Register(c Client) error {
	cert, err := gost.ParseCertificate(c.CertDER)
	if err != nil {
		return fmt.Errorf("esiatest: client %s certificate: %w", c.ID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clients[c.ID] = &clientReg{Client: c, pub: cert.PublicKey, hash: gost.CertificateHash(c.CertDER)}
	return nil
}

// TokenVerifier checks tokens the emulator signs (its RSA key).
func (s *Server) TokenVerifier() *esia.TokenVerifier {
	v := &esia.TokenVerifier{}
	if s.opts.TokenAlg == esia.AlgGOST {
		v.AddGOST(&s.gostKey.PublicKey)
	} else {
		v.AddRSA(&s.key.PublicKey)
	}
	return v
}

// TokenCertificatePEM is a self-signed certificate of the key the emulator signs tokens with:
// what the broker's upstream.esia.verify_cert_files needs when the emulator runs in its own
// process.
func (s *Server) TokenCertificatePEM() ([]byte, error) {
	from, to := time.Now().Add(-time.Hour), time.Now().AddDate(1, 0, 0)
	var der []byte
	var err error
	if s.opts.TokenAlg == esia.AlgGOST {
		der, err = gost.CreateSelfSignedCertificate(s.gostKey, "ESIA emulator", from, to)
	} else {
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ESIA emulator"}, NotBefore: from, NotAfter: to}
		der, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &s.key.PublicKey, s.key)
	}
	if err != nil {
		return nil, fmt.Errorf("esiatest: token certificate: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// Handler serves ESIA's paths (/aas/oauth2/v2/ac, /aas/oauth2/v3/te, /rs/prns/…, /idp/ext/Logout).
func (s *Server) Handler() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("GET /aas/oauth2/v2/ac", s.authorize)
	// The persona page's style is a file of its own: a page served under a strict CSP (the dev
	// server mounts the emulator behind the broker's) may not use inline styles.
	m.HandleFunc("GET /aas/oauth2/v2/emulator.css", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		_, _ = io.WriteString(w, personaCSS)
	})
	m.HandleFunc("POST /aas/oauth2/v2/ac", s.choose)
	m.HandleFunc("POST /aas/oauth2/v3/te", s.token)
	m.HandleFunc("GET /rs/prns/{oid}", s.person)
	m.HandleFunc("GET /rs/prns/{oid}/ctts", s.contacts)
	m.HandleFunc("GET /rs/prns/{oid}/kids", s.kids)
	m.HandleFunc("GET /idp/ext/Logout", s.logout)
	return m
}

type esiaErr struct {
	code, oauth, msg string
}

func (e *esiaErr) Error() string { return e.code + ": " + e.msg }

func errCode(code, oauth, msg string) *esiaErr { return &esiaErr{code: code, oauth: oauth, msg: msg} }

// checkSigned verifies what /ac and /te share: known client, certificate hash, timestamp,
// redirect URI, scopes, and the client secret over the exact string ESIA signs.
func (s *Server) checkSigned(q url.Values, code string) (*clientReg, []string, *esiaErr) {
	required := []string{"client_id", "client_secret", "client_certificate_hash", "redirect_uri", "scope", "state", "timestamp"}
	for _, k := range required {
		if q.Get(k) == "" {
			return nil, nil, errCode(esia.CodeMissingParameter, "invalid_request", "missing parameter "+k)
		}
	}
	s.mu.Lock()
	c := s.clients[q.Get("client_id")]
	s.mu.Unlock()
	if c == nil {
		return nil, nil, errCode(esia.CodeCertificateMismatch, "invalid_client", "no certificate is registered for this client")
	}
	if !strings.EqualFold(q.Get("client_certificate_hash"), c.hash) {
		// ESIA answers a certificate hash that is not the registered certificate's as it answers
		// a bad client_secret: access_denied with ESIA-007053.
		return nil, nil, errCode(esia.CodeClientSecret, "access_denied", "client_secret or client_certificate_hash does not match the registered certificate")
	}
	ts, err := time.Parse(esia.TimestampLayout, q.Get("timestamp"))
	if err != nil {
		return nil, nil, errCode(esia.CodeRequestTime, "invalid_request", "bad timestamp format")
	}
	if d := s.opts.Now().Sub(ts); d > s.opts.TimestampWindow || d < -s.opts.TimestampWindow {
		return nil, nil, errCode(esia.CodeRequestTime, "invalid_request", "request time outside the allowed window")
	}
	if !slices.Contains(c.RedirectURIs, q.Get("redirect_uri")) {
		return nil, nil, errCode(esia.CodeRedirectURI, "invalid_request", "redirect_uri is not registered")
	}
	scopes := strings.Fields(q.Get("scope"))
	for _, sc := range scopes {
		if !slices.Contains(c.Scopes, sc) {
			return nil, nil, errCode(esia.CodeBadScope, "invalid_scope", "scope "+sc+" is not allowed")
		}
	}
	if !s.opts.SkipSignatureChecks {
		sig, ok := decodeSecret(q.Get("client_secret"))
		msg := esia.SecretMessage(q.Get("client_id"), q.Get("scope"), q.Get("scope_org"), q.Get("timestamp"), q.Get("state"), q.Get("redirect_uri"), code)
		if !ok || !c.pub.VerifyMessage([]byte(msg), sig) {
			return nil, nil, errCode(esia.CodeClientSecret, "access_denied", "client_secret does not verify against the registered certificate")
		}
	}
	return c, scopes, nil
}

// decodeSecret reads a client_secret in standard or URL-safe base64, padded or not, as ESIA
// does. (A '+' of standard base64 sent unescaped in a query arrives as a space.)
func decodeSecret(v string) ([]byte, bool) {
	v = strings.ReplaceAll(v, " ", "+")
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.StdEncoding} {
		if b, err := enc.DecodeString(v); err == nil {
			return b, true
		}
	}
	return nil, false
}

func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("response_type") != "code" {
		s.authError(w, r, q, errCode(esia.CodeMissingParameter, "invalid_request", "response_type must be code"))
		return
	}
	c, scopes, e := s.checkSigned(q, "")
	if e != nil {
		s.authError(w, r, q, e)
		return
	}
	p := &pending{clientID: c.ID, redirectURI: q.Get("redirect_uri"), state: q.Get("state"), accessType: q.Get("access_type"), scopes: scopes, expires: s.opts.Now().Add(15 * time.Minute)}
	if s.opts.RandomPopulation > 0 {
		s.redirectWithCode(w, r, p, s.randomPersona(), s.opts.Now())
		return
	}
	if sess := s.ssoSession(r); sess != nil {
		// ESIA's single sign-on: a browser that logged in before is answered at once, and the ID
		// token's auth_time says when it really authenticated.
		s.redirectWithCode(w, r, p, sess.persona, sess.authTime)
		return
	}
	id := randomID()
	s.mu.Lock()
	s.pendings[id] = p
	s.mu.Unlock()
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = s.page.Execute(w, map[string]any{"Request": id, "Personas": s.opts.Personas})
}

// authError redirects to a registered redirect URI, or shows a page when it is not trusted.
func (s *Server) authError(w http.ResponseWriter, r *http.Request, q url.Values, e *esiaErr) {
	s.mu.Lock()
	c := s.clients[q.Get("client_id")]
	s.mu.Unlock()
	if c == nil || e.code == esia.CodeRedirectURI || !slices.Contains(c.RedirectURIs, q.Get("redirect_uri")) {
		http.Error(w, e.Error(), http.StatusBadRequest)
		return
	}
	back, _ := url.Parse(q.Get("redirect_uri"))
	v := back.Query()
	v.Set("error", e.oauth)
	v.Set("error_description", e.Error())
	v.Set("state", q.Get("state"))
	back.RawQuery = v.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

func (s *Server) choose(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	p := s.pendings[r.PostForm.Get("request")]
	delete(s.pendings, r.PostForm.Get("request"))
	s.mu.Unlock()
	if p == nil || s.opts.Now().After(p.expires) {
		http.Error(w, "ESIA-007011: the login request expired; start again", http.StatusBadRequest)
		return
	}
	if r.PostForm.Get("cancel") != "" {
		back, _ := url.Parse(p.redirectURI)
		v := back.Query()
		v.Set("error", "access_denied")
		v.Set("error_description", "ESIA-007004: the user refused to grant access")
		v.Set("state", p.state)
		back.RawQuery = v.Encode()
		http.Redirect(w, r, back.String(), http.StatusFound)
		return
	}
	persona := s.byID[r.PostForm.Get("persona")]
	if persona == nil {
		http.Error(w, "unknown persona", http.StatusBadRequest)
		return
	}
	sid := randomID()
	now := s.opts.Now()
	s.mu.Lock()
	s.sso[sid] = &ssoSession{persona: persona, authTime: now}
	s.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: SSOCookie, Value: sid, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode})
	s.redirectWithCode(w, r, p, persona, now)
}

// ssoSession is the browser's ESIA session, or nil.
func (s *Server) ssoSession(r *http.Request) *ssoSession {
	c, err := r.Cookie(SSOCookie)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sso[c.Value]
}

func (s *Server) redirectWithCode(w http.ResponseWriter, r *http.Request, p *pending, persona *Persona, authTime time.Time) {
	code := randomID()
	s.mu.Lock()
	s.codes[code] = &grant{clientID: p.clientID, redirectURI: p.redirectURI, scopes: p.scopes, persona: persona, expires: s.opts.Now().Add(5 * time.Minute), accessType: p.accessType, authTime: authTime}
	s.mu.Unlock()
	back, _ := url.Parse(p.redirectURI)
	v := back.Query()
	v.Set("code", code)
	v.Set("state", p.state)
	back.RawQuery = v.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

func tokenError(w http.ResponseWriter, e *esiaErr) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": e.oauth, "error_description": e.Error()})
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		tokenError(w, errCode(esia.CodeMissingParameter, "invalid_request", "the request must be form-encoded"))
		return
	}
	if err := r.ParseForm(); err != nil {
		tokenError(w, errCode(esia.CodeMissingParameter, "invalid_request", "bad form"))
		return
	}
	f := r.PostForm
	var g *grant
	switch f.Get("grant_type") {
	case "authorization_code":
		code := f.Get("code")
		if code == "" {
			tokenError(w, errCode(esia.CodeMissingParameter, "invalid_request", "missing parameter code"))
			return
		}
		c, _, e := s.checkSigned(f, code)
		if e != nil {
			tokenError(w, e)
			return
		}
		s.mu.Lock()
		g = s.codes[code]
		delete(s.codes, code) // single use, whatever happens next
		s.mu.Unlock()
		if g == nil || s.opts.Now().After(g.expires) || g.clientID != c.ID {
			tokenError(w, errCode(esia.CodeCodeInvalid, "invalid_grant", "authorization code is invalid or expired"))
			return
		}
		if g.redirectURI != f.Get("redirect_uri") {
			tokenError(w, errCode(esia.CodeRedirectURI, "invalid_grant", "redirect_uri differs from the authorization request"))
			return
		}
	case "refresh_token":
		c, _, e := s.checkSigned(f, "")
		if e != nil {
			tokenError(w, e)
			return
		}
		s.mu.Lock()
		g = s.refresh[f.Get("refresh_token")]
		delete(s.refresh, f.Get("refresh_token"))
		s.mu.Unlock()
		if g == nil || g.clientID != c.ID {
			tokenError(w, errCode(esia.CodeCodeInvalid, "invalid_grant", "refresh token is invalid"))
			return
		}
	case "":
		tokenError(w, errCode(esia.CodeMissingParameter, "invalid_request", "missing parameter grant_type"))
		return
	default:
		tokenError(w, errCode(esia.CodeMissingParameter, "unsupported_grant_type", "unsupported grant_type"))
		return
	}
	now := s.opts.Now()
	exp := now.Add(s.opts.TokenLifetime)
	scopeClaim := make([]string, 0, len(g.scopes))
	for _, sc := range g.scopes {
		scopeClaim = append(scopeClaim, sc+"?oid="+g.persona.OID)
	}
	sid := randomID()
	at, err := s.sign(map[string]any{
		"nbf": now.Unix(), "scope": strings.Join(scopeClaim, " "), "iss": s.opts.Issuer,
		"urn:esia:sid": sid, "urn:esia:sbj_id": json.Number(g.persona.OID), "exp": exp.Unix(), "iat": now.Unix(), "client_id": g.clientID,
	})
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	idt, _ := s.sign(map[string]any{
		"aud": g.clientID, "sub": json.Number(g.persona.OID), "nbf": now.Unix(), "amr": "PWD", "urn:esia:amd": "PWD",
		"auth_time": g.authTime.Unix(), "iss": s.opts.Issuer, "urn:esia:sid": sid, "exp": exp.Unix(), "iat": now.Unix(),
		"urn:esia:sbj": map[string]any{"urn:esia:sbj:typ": "P", "urn:esia:sbj:is_tru": g.persona.Trusted, "urn:esia:sbj:oid": json.Number(g.persona.OID)},
	})
	resp := map[string]any{"access_token": at, "id_token": idt, "state": f.Get("state"), "token_type": "Bearer", "expires_in": int(s.opts.TokenLifetime.Seconds())}
	tg := *g
	tg.expires = exp
	s.mu.Lock()
	s.tokens[at] = &tg
	if g.accessType == "offline" {
		rt := randomID()
		s.refresh[rt] = &tg
		resp["refresh_token"] = rt
	}
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(resp)
}

func (s *Server) sign(claims map[string]any) (string, error) {
	// ESIA's header, as real tokens carry it: ver, typ, sbt (access or id) and alg, no kid.
	sbt := "access"
	if _, ok := claims["aud"]; ok {
		sbt = "id"
	}
	h, _ := json.Marshal(map[string]any{"ver": 1, "typ": "JWT", "sbt": sbt, "alg": s.opts.TokenAlg})
	c, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	if s.opts.TokenAlg == esia.AlgGOST {
		sig, err := s.gostKey.SignMessage(rand.Reader, []byte(input))
		if err != nil {
			return "", err
		}
		return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
	}
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, sum[:])
	if err != nil {
		return "", err
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// bearer returns the grant of the request's access token, or writes 401/403.
func (s *Server) bearer(w http.ResponseWriter, r *http.Request, need ...string) *grant {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	g := s.tokens[tok]
	s.mu.Unlock()
	if !ok || g == nil || s.opts.Now().After(g.expires) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(map[string]string{"code": "ESIA-005011", "message": "access token is invalid or expired"})
		return nil
	}
	if g.persona.OID != r.PathValue("oid") {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_ = json.NewEncoder(w).Encode(map[string]string{"code": "ESIA-005012", "message": "the token does not grant access to this person"})
		return nil
	}
	if len(need) > 0 && !slices.ContainsFunc(need, func(sc string) bool { return slices.Contains(g.scopes, sc) }) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_ = json.NewEncoder(w).Encode(map[string]string{"code": "ESIA-005013", "message": "scope not granted"})
		return nil
	}
	return g
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) person(w http.ResponseWriter, r *http.Request) {
	g := s.bearer(w, r)
	if g == nil {
		return
	}
	p, has := g.persona, func(sc string) bool { return slices.Contains(g.scopes, sc) }
	out := map[string]any{"trusted": p.Trusted, "status": "REGISTERED", "verifying": false, "updatedOn": 1700000000, "citizenship": "RUS"}
	if has("fullname") {
		out["firstName"], out["lastName"], out["middleName"] = p.FirstName, p.LastName, p.MiddleName
	}
	if has("birthdate") {
		out["birthDate"] = p.BirthDate
	}
	if has("gender") {
		out["gender"] = p.Gender
	}
	if has("snils") && p.SNILS != "" {
		out["snils"] = p.SNILS
	}
	writeJSON(w, out)
}

func (s *Server) contacts(w http.ResponseWriter, r *http.Request) {
	g := s.bearer(w, r, "email", "mobile", "contacts")
	if g == nil {
		return
	}
	writeJSON(w, map[string]any{"stateFacts": []string{"hasSize"}, "size": len(g.persona.Contacts), "elements": g.persona.Contacts})
}

func (s *Server) kids(w http.ResponseWriter, r *http.Request) {
	g := s.bearer(w, r, "kid_fullname", "kid_birthdate", "kid_gender", "kid_snils")
	if g == nil {
		return
	}
	has := func(sc string) bool { return slices.Contains(g.scopes, sc) }
	out := make([]map[string]any, 0, len(g.persona.Kids))
	for _, k := range g.persona.Kids {
		m := map[string]any{"id": jsonID(k.ID)}
		if has("kid_fullname") {
			m["firstName"], m["lastName"], m["middleName"] = k.FirstName, k.LastName, k.MiddleName
		}
		if has("kid_birthdate") {
			m["birthDate"] = k.BirthDate
		}
		if has("kid_snils") && k.SNILS != "" {
			m["snils"] = k.SNILS
		}
		if has("kid_gender") && k.Gender != "" {
			m["gender"] = k.Gender
		}
		out = append(out, m)
	}
	writeJSON(w, map[string]any{"size": len(out), "elements": out})
}

// jsonID writes an id as ESIA does: a number when it is all digits, else a string.
func jsonID(id esia.ID) any {
	if id != "" && strings.Trim(string(id), "0123456789") == "" {
		return json.Number(id)
	}
	return string(id)
}

// logout is /idp/ext/Logout: it ends the browser's ESIA session and returns to redirect_url.
// ESIA's guide does not say how ESIA checks the return address; the emulator takes one on the
// origin of a registered redirect URI (so it is no open redirect), and without one answers a page.
func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	s.mu.Lock()
	c := s.clients[q.Get("client_id")]
	s.mu.Unlock()
	if c == nil {
		http.Error(w, "ESIA-007014: client_id is required", http.StatusBadRequest)
		return
	}
	back := q.Get("redirect_url")
	if back != "" && !slices.ContainsFunc(c.RedirectURIs, func(u string) bool { return sameOrigin(u, back) }) {
		http.Error(w, "ESIA-007023: redirect_url is not on the system's registered addresses", http.StatusBadRequest)
		return
	}
	if ck, err := r.Cookie(SSOCookie); err == nil {
		s.mu.Lock()
		delete(s.sso, ck.Value)
		s.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: SSOCookie, Value: "", Path: "/", HttpOnly: true, MaxAge: -1})
	if back == "" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("Вы вышли из Госуслуг (эмулятор ЕСИА)."))
		return
	}
	http.Redirect(w, r, back, http.StatusFound)
}

// sameOrigin tells whether two absolute URLs share scheme, host and port.
func sameOrigin(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	return err1 == nil && err2 == nil && ua.Scheme != "" && ua.Host != "" && strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Host, ub.Host)
}

// Sessions counts the open ESIA sessions (tests check that logout ends them).
func (s *Server) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sso)
}

func randomID() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

var (
	lastNamesM   = []string{"Иванов", "Смирнов", "Кузнецов", "Попов", "Васильев", "Петров", "Соколов", "Михайлов", "Новиков", "Фёдоров"}
	firstNamesM  = []string{"Александр", "Сергей", "Дмитрий", "Андрей", "Алексей", "Максим", "Иван", "Михаил"}
	middleNamesM = []string{"Александрович", "Сергеевич", "Дмитриевич", "Андреевич", "Иванович", "Михайлович"}
)

// PopulationPersona returns member i of the generated population: a confirmed adult with a
// valid SNILS that depends only on i, so a load test can build a matching roster.
func PopulationPersona(i int) Persona {
	n := 100000000 + i*7 + 1
	return Persona{
		ID: fmt.Sprintf("pop-%d", i), OID: fmt.Sprintf("%d", 2000000000+i),
		LastName: lastNamesM[i%len(lastNamesM)], FirstName: firstNamesM[(i/7)%len(firstNamesM)], MiddleName: middleNamesM[(i/11)%len(middleNamesM)],
		BirthDate: fmt.Sprintf("%02d.%02d.%d", 1+i%28, 1+i%12, 1975+i%20), Gender: "M", SNILS: FormatSNILS(n), Trusted: true,
	}
}

func (s *Server) randomPersona() *Persona {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := mrand.IntN(s.opts.RandomPopulation)
	if s.opts.InOrderFirst && s.drawn < s.opts.RandomPopulation {
		i = s.drawn
		s.drawn++
	}
	oid := fmt.Sprintf("%d", 2000000000+i)
	if p, ok := s.byOID[oid]; ok {
		return p
	}
	p := PopulationPersona(i)
	s.byOID[p.OID] = &p
	return &p
}

const personaCSS = `body{font:16px/1.5 system-ui,sans-serif;margin:0;background:#eef2f7;color:#0b1f33}main{max-width:560px;margin:16px auto;background:#fff;padding:20px;border-radius:8px}
button{display:block;width:100%;text-align:left;margin:8px 0;padding:12px;border:1px solid #0d4cd3;border-radius:6px;background:#fff;color:#0d4cd3;font-size:1rem;cursor:pointer}
button:focus{outline:3px solid #0b1f33;outline-offset:2px}.cancel{border-color:#999;color:#333}.note{color:#555;font-size:.9rem}`

const personaPage = `<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Госуслуги (эмулятор ЕСИА)</title>
<link rel="stylesheet" href="emulator.css"></head>
<body><main><h1>Вход через Госуслуги</h1>
<p class="note">Это эмулятор ЕСИА для разработки и тестов. Выберите, кем войти.</p>
<form method="post">
<input type="hidden" name="request" value="{{.Request}}">
{{range .Personas}}<button type="submit" name="persona" value="{{.ID}}">{{.Label}}</button>
{{end}}<button class="cancel" type="submit" name="cancel" value="1">Отмена — вернуться без входа</button>
</form></main></body></html>`
