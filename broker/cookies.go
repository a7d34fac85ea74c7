package broker

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

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashToken(t string) string {
	s := sha256.Sum256([]byte(t))
	return hex.EncodeToString(s[:])
}

// cookieName gives a cookie its __Host- prefix outside dev (secure cookies): the browser then
// accepts it only from this host, over https, for path / — a sibling subdomain cannot plant it.
func (b *Broker) cookieName(base string) string {
	if b.cfg.SecureCookies() {
		return "__Host-" + base
	}
	return base
}

func (b *Broker) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name: b.cookieName(name), Value: value, Path: "/", HttpOnly: true, Secure: b.cfg.SecureCookies(),
		SameSite: http.SameSiteLaxMode, MaxAge: int(maxAge.Seconds()),
	})
}

func (b *Broker) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: b.cookieName(name), Value: "", Path: "/", HttpOnly: true, Secure: b.cfg.SecureCookies(), SameSite: http.SameSiteLaxMode, MaxAge: -1})
}

// browserMAC authenticates a browser id: only ids this broker issued carry a valid one.
func (b *Broker) browserMAC(id string) string {
	m := hmac.New(sha256.New, b.cookieKey)
	m.Write([]byte("browser\x00" + id))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

// browser returns the browser id of the request's cookie when this broker issued it, or "".
func (b *Broker) browser(r *http.Request) string {
	c, err := r.Cookie(b.cookieName(b.cfg.Session.BrowserCookieName))
	if err != nil {
		return ""
	}
	id, mac, ok := strings.Cut(c.Value, ".")
	if !ok || len(id) != 43 || !hmac.Equal([]byte(mac), []byte(b.browserMAC(id))) {
		return ""
	}
	return c.Value
}

// browserID returns the browser-binding id, issuing a new one when the request has none that
// this broker issued. Login requests and upstream flows are bound to its hash, and CSRF tokens
// are derived from it.
func (b *Broker) browserID(w http.ResponseWriter, r *http.Request) string {
	if v := b.browser(r); v != "" {
		return v
	}
	return b.renewBrowser(w, r)
}

// renewBrowser issues a new browser id (at every login and logout), so that an id known
// before the login is worth nothing after it.
func (b *Broker) renewBrowser(w http.ResponseWriter, r *http.Request) string {
	v := b.newBrowserValue()
	b.setBrowser(w, r, v)
	return v
}

// newBrowserValue makes a browser id with its MAC.
func (b *Broker) newBrowserValue() string {
	id := randomToken()
	return id + "." + b.browserMAC(id)
}

// setBrowser sends browser id v to the browser and lets the rest of this request see it.
func (b *Broker) setBrowser(w http.ResponseWriter, r *http.Request, v string) {
	b.setCookie(w, b.cfg.Session.BrowserCookieName, v, 0)
	// Let later code in this request see it too.
	name := b.cookieName(b.cfg.Session.BrowserCookieName)
	cookies := r.Cookies()
	r.Header.Del("Cookie")
	for _, c := range cookies {
		if c.Name != name {
			r.AddCookie(c)
		}
	}
	r.AddCookie(&http.Cookie{Name: name, Value: v})
}

// csrfToken is the form token for this browser: an HMAC of its browser id.
func (b *Broker) csrfToken(browser string) string {
	m := hmac.New(sha256.New, b.cookieKey)
	m.Write([]byte("csrf\x00" + browser))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (b *Broker) checkCSRF(r *http.Request) bool {
	browser := b.browser(r)
	if browser == "" {
		return false
	}
	return hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(b.csrfToken(browser)))
}

// sameBrowser tells whether the request comes from the browser whose id hashes to want.
func (b *Broker) sameBrowser(r *http.Request, want string) bool {
	browser := b.browser(r)
	return browser != "" && want != "" && hashToken(browser) == want
}

// sessionCookie returns the raw browser session id from its cookie.
func (b *Broker) sessionCookie(r *http.Request) string {
	c, err := r.Cookie(b.cookieName(b.cfg.Session.CookieName))
	if err != nil {
		return ""
	}
	return c.Value
}

// randReader reads crypto/rand.
type randReader struct{}

func (randReader) Read(p []byte) (int, error) { return rand.Read(p) }

// knownDeviceCookie marks a browser in which a child's login succeeded (OWASP's device cookie):
// from it the child is not slowed down when strangers guess the login from many sources.
const knownDeviceCookie = "esia_broker_known"

// deviceMAC authenticates a device cookie for one login.
func (b *Broker) deviceMAC(login, nonce string) string {
	m := hmac.New(sha256.New, b.cookieKey)
	m.Write([]byte("known\x00" + login + "\x00" + nonce))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

// knownDevice tells whether the request carries a device cookie for login (normalised).
func (b *Broker) knownDevice(r *http.Request, login string) bool {
	c, err := r.Cookie(b.cookieName(knownDeviceCookie))
	if err != nil || login == "" {
		return false
	}
	nonce, mac, ok := strings.Cut(c.Value, ".")
	return ok && len(nonce) == 43 && hmac.Equal([]byte(mac), []byte(b.deviceMAC(login, nonce)))
}

// rememberDevice sets the device cookie for login, for a year.
func (b *Broker) rememberDevice(w http.ResponseWriter, login string) {
	nonce := randomToken()
	b.setCookie(w, knownDeviceCookie, nonce+"."+b.deviceMAC(login, nonce), 365*24*time.Hour)
}
