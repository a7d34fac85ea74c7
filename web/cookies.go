package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
)

// RandomToken is 256 random bits, base64url: session ids, browser ids, nonces.
func RandomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// HashToken is the stored form of a token (hex SHA-256): the database never holds the token.
func HashToken(t string) string {
	s := sha256.Sum256([]byte(t))
	return hex.EncodeToString(s[:])
}

// CookieName gives a cookie its __Host- prefix outside dev (secure cookies): the browser then
// accepts it only from this host, over https, for path / — a sibling subdomain cannot plant it.
func (k *Kit) CookieName(base string) string {
	if k.cfg.SecureCookies() {
		return "__Host-" + base
	}
	return base
}

// SetCookie sets an HTTP-only, SameSite=Lax cookie for path /, secure outside dev.
func (k *Kit) SetCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name: k.CookieName(name), Value: value, Path: "/", HttpOnly: true, Secure: k.cfg.SecureCookies(),
		SameSite: http.SameSiteLaxMode, MaxAge: int(maxAge.Seconds()),
	})
}

// ClearCookie removes the cookie name.
func (k *Kit) ClearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: k.CookieName(name), Value: "", Path: "/", HttpOnly: true, Secure: k.cfg.SecureCookies(), SameSite: http.SameSiteLaxMode, MaxAge: -1})
}

// BrowserMAC authenticates a browser id: only ids this broker issued carry a valid one.
func (k *Kit) BrowserMAC(id string) string {
	m := hmac.New(sha256.New, k.cookieKey)
	m.Write([]byte("browser\x00" + id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

// Browser returns the browser id of the request's cookie when this broker issued it, or "".
func (k *Kit) Browser(r *http.Request) string {
	c, err := r.Cookie(k.CookieName(k.cfg.Session.BrowserCookieName))
	if err != nil {
		return ""
	}
	id, mac, ok := strings.Cut(c.Value, ".")
	if !ok || len(id) != 43 || !hmac.Equal([]byte(mac), []byte(k.BrowserMAC(id))) {
		return ""
	}
	return c.Value
}

// BrowserID returns the browser-binding id, issuing a new one when the request has none that
// this broker issued. Login requests and upstream flows are bound to its hash, and CSRF tokens
// are derived from it.
func (k *Kit) BrowserID(w http.ResponseWriter, r *http.Request) string {
	if v := k.Browser(r); v != "" {
		return v
	}
	return k.RenewBrowser(w, r)
}

// RenewBrowser issues a new browser id (at every login and logout), so that an id known
// before the login is worth nothing after it.
func (k *Kit) RenewBrowser(w http.ResponseWriter, r *http.Request) string {
	v := k.NewBrowserValue()
	k.SetBrowser(w, r, v)
	return v
}

// NewBrowserValue makes a browser id with its MAC.
func (k *Kit) NewBrowserValue() string {
	id := RandomToken()
	return id + "." + k.BrowserMAC(id)
}

// SetBrowser sends browser id v to the browser and lets the rest of this request see it.
func (k *Kit) SetBrowser(w http.ResponseWriter, r *http.Request, v string) {
	k.SetCookie(w, k.cfg.Session.BrowserCookieName, v, 0)
	// Let later code in this request see it too.
	name := k.CookieName(k.cfg.Session.BrowserCookieName)
	cookies := r.Cookies()
	r.Header.Del("Cookie")
	for _, c := range cookies {
		if c.Name != name {
			r.AddCookie(c)
		}
	}
	r.AddCookie(&http.Cookie{Name: name, Value: v})
}

// CSRFToken is the form token for this browser: an HMAC of its browser id.
func (k *Kit) CSRFToken(browser string) string {
	m := hmac.New(sha256.New, k.cookieKey)
	m.Write([]byte("csrf\x00" + browser))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// CheckCSRF tells whether the form carries this browser's CSRF token.
func (k *Kit) CheckCSRF(r *http.Request) bool {
	browser := k.Browser(r)
	if browser == "" {
		return false
	}
	return hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(k.CSRFToken(browser)))
}

// SameBrowser tells whether the request comes from the browser whose id hashes to want.
func (k *Kit) SameBrowser(r *http.Request, want string) bool {
	browser := k.Browser(r)
	return browser != "" && want != "" && HashToken(browser) == want
}

// SessionCookie returns the raw browser session id from its cookie.
func (k *Kit) SessionCookie(r *http.Request) string {
	c, err := r.Cookie(k.CookieName(k.cfg.Session.CookieName))
	if err != nil {
		return ""
	}
	return c.Value
}

// knownDeviceCookie marks a browser in which a child's login succeeded (OWASP's device cookie):
// from it the child is not slowed down when strangers guess the login from many sources.
const knownDeviceCookie = "esia_broker_known"

// deviceMAC authenticates a device cookie for one login.
func (k *Kit) deviceMAC(login, nonce string) string {
	m := hmac.New(sha256.New, k.cookieKey)
	m.Write([]byte("known\x00" + login + "\x00" + nonce))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

// KnownDevice tells whether the request carries a device cookie for login (normalised).
func (k *Kit) KnownDevice(r *http.Request, login string) bool {
	c, err := r.Cookie(k.CookieName(knownDeviceCookie))
	if err != nil || login == "" {
		return false
	}
	nonce, mac, ok := strings.Cut(c.Value, ".")
	return ok && len(nonce) == 43 && hmac.Equal([]byte(mac), []byte(k.deviceMAC(login, nonce)))
}

// RememberDevice sets the device cookie for login, for a year.
func (k *Kit) RememberDevice(w http.ResponseWriter, login string) {
	nonce := RandomToken()
	k.SetCookie(w, knownDeviceCookie, nonce+"."+k.deviceMAC(login, nonce), 365*24*time.Hour)
}
