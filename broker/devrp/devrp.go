// Package devrp is the demo relying party that `esia-broker dev` mounts at /demo: a real OIDC
// client (go-oidc + x/oauth2) that starts a login and shows the verified ID token's claims.
package devrp

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"net/http"
	"net/url"
	"regexp"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/gorilla/mux"
	"golang.org/x/oauth2"
)

// ClientID is the demo RP's registered client id.
const ClientID = "demo-diary"

// RP is the demo relying party. Its provider is discovered on first use, since it runs inside
// the server it discovers.
type RP struct {
	issuer string
	secret string

	mu       sync.Mutex
	provider *oidc.Provider
}

// New makes the demo RP for the broker at issuer, registered with secret.
func New(issuer, secret string) *RP { return &RP{issuer: issuer, secret: secret} }

// RedirectURI is where the broker sends the demo RP's codes.
func (d *RP) RedirectURI() string { return d.issuer + "/demo/callback" }

// PostLogoutURI is where the broker returns after logout.
func (d *RP) PostLogoutURI() string { return d.issuer + "/demo/" }

// Mount adds the demo's routes under /demo.
func (d *RP) Mount(r *mux.Router) {
	r.HandleFunc("/demo/", d.home).Methods(http.MethodGet)
	r.HandleFunc("/demo/login", d.login).Methods(http.MethodGet)
	r.HandleFunc("/demo/callback", d.callback).Methods(http.MethodGet)
}

func (d *RP) config(ctx context.Context) (*oidc.Provider, *oauth2.Config, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.provider == nil {
		p, err := oidc.NewProvider(ctx, d.issuer)
		if err != nil {
			return nil, nil, err
		}
		d.provider = p
	}
	return d.provider, &oauth2.Config{ClientID: ClientID, ClientSecret: d.secret, Endpoint: d.provider.Endpoint(), RedirectURL: d.RedirectURI(),
		Scopes: []string{oidc.ScopeOpenID, "profile", oidc.ScopeOfflineAccess, "students", "esia"}}, nil
}

var page = template.Must(template.New("demo").Parse(`<!doctype html>
<html lang="ru"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Демо-дневник</title><link rel="stylesheet" href="/static/style.css"><link rel="icon" href="/static/favicon.svg"></head>
<body><header class="top"><span class="brand">Демо-дневник (проверяющая сторона)</span></header>
<main class="card"><h1>Демо-дневник</h1>
{{if .Error}}<p class="error" role="alert">{{.Error}}</p>{{end}}
{{if .Claims}}<p>Вход выполнен. Утверждения ID-токена (проверен подписью):</p><pre>{{.Claims}}</pre>
<p><a class="button" href="{{.Logout}}">Выйти</a></p>{{end}}
<p><a class="button primary" href="/demo/login">Войти</a></p>
<p><a class="button" href="/demo/login?pick=1">Войти с выбором ребёнка</a></p>
</main></body></html>`))

type view struct{ Error, Claims, Logout string }

func (d *RP) home(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = page.Execute(w, view{})
}

func random() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func setTemp(w http.ResponseWriter, name, v string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: v, Path: "/demo/", HttpOnly: true, SameSite: http.SameSiteLaxMode, MaxAge: 600})
}

func (d *RP) login(w http.ResponseWriter, r *http.Request) {
	_, conf, err := d.config(r.Context())
	if err != nil {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusBadGateway)
		_ = page.Execute(w, view{Error: "Не удалось получить настройки брокера. Попробуйте позже."})
		return
	}
	state, nonce, verifier := random(), random(), oauth2.GenerateVerifier()
	setTemp(w, "demo_state", state)
	setTemp(w, "demo_nonce", nonce)
	setTemp(w, "demo_verifier", verifier)
	opts := []oauth2.AuthCodeOption{oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)}
	if r.URL.Query().Get("pick") == "1" {
		opts = append(opts, oauth2.SetAuthURLParam("prompt", "select_account"))
	}
	http.Redirect(w, r, conf.AuthCodeURL(state, opts...), http.StatusFound)
}

func cookie(r *http.Request, name string) string {
	c, err := r.Cookie(name)
	if err != nil {
		return ""
	}
	return c.Value
}

func (d *RP) callback(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	show := func(v view) { _ = page.Execute(w, v) }
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		// A diary speaks to parents in Russian: the OAuth error code decides the text, the
		// broker's English error_description is for developers and is not shown.
		show(view{Error: errorText(e)})
		return
	}
	if q.Get("state") == "" || q.Get("state") != cookie(r, "demo_state") {
		show(view{Error: "Параметр state не совпадает: начните вход заново."})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	p, conf, err := d.config(ctx)
	if err != nil {
		show(view{Error: "Не удалось получить настройки брокера."})
		return
	}
	tok, err := conf.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(cookie(r, "demo_verifier")))
	if err != nil {
		show(view{Error: "Обмен кода на токены не удался."})
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := p.Verifier(&oidc.Config{ClientID: ClientID, SupportedSigningAlgs: []string{"RS256", "ES256"}}).Verify(ctx, raw)
	if err != nil || idt.Nonce != cookie(r, "demo_nonce") {
		show(view{Error: "ID-токен не прошёл проверку."})
		return
	}
	var claims map[string]any
	_ = idt.Claims(&claims)
	pretty, _ := json.MarshalIndent(claims, "", "  ")
	logout := d.issuer + "/oauth2/logout?" + url.Values{"id_token_hint": {raw}, "post_logout_redirect_uri": {d.PostLogoutURI()}}.Encode()
	show(view{Claims: string(pretty), Logout: logout})
}

// errorText is the Russian text a diary shows for an OAuth error code (RFC 6749 §4.1.2.1,
// OpenID Connect Core §3.1.2.6).
func errorText(code string) string {
	switch code {
	case "access_denied":
		return "Вход отменён: вы отменили вход или не дали согласие на обработку данных."
	case "login_required", "consent_required", "interaction_required", "account_selection_required":
		return "Нужно войти заново: нажмите «Войти»."
	case "server_error", "temporarily_unavailable":
		return "Сервис входа временно недоступен. Попробуйте позже."
	}
	if !regexp.MustCompile(`^[a-z_]{1,40}$`).MatchString(code) {
		code = "неизвестный" // the query is anyone's: no free text onto the page
	}
	return "Вход не удался. Попробуйте ещё раз; если ошибка повторится, сообщите в поддержку (код ошибки: " + code + ")."
}
