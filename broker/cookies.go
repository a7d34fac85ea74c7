package broker

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"time"
)

const browserCookie = "esia_broker_browser"

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

func (b *Broker) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name: name, Value: value, Path: "/", HttpOnly: true, Secure: b.cfg.SecureCookies(),
		SameSite: http.SameSiteLaxMode, MaxAge: int(maxAge.Seconds()),
	})
}

func (b *Broker) clearCookie(w http.ResponseWriter, name string) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: "", Path: "/", HttpOnly: true, Secure: b.cfg.SecureCookies(), SameSite: http.SameSiteLaxMode, MaxAge: -1})
}

// browserID returns the browser-binding cookie's value, setting a new one when absent. Login
// requests and upstream flows are bound to its hash, and CSRF tokens are derived from it.
func (b *Broker) browserID(w http.ResponseWriter, r *http.Request) string {
	if c, err := r.Cookie(browserCookie); err == nil && len(c.Value) == 43 {
		return c.Value
	}
	v := randomToken()
	b.setCookie(w, browserCookie, v, 0)
	// Let later code in this request see it too.
	r.AddCookie(&http.Cookie{Name: browserCookie, Value: v})
	return v
}

// csrfToken is the form token for this browser: an HMAC of its browser id.
func (b *Broker) csrfToken(browser string) string {
	m := hmac.New(sha256.New, b.cookieKey)
	m.Write([]byte("csrf\x00" + browser))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (b *Broker) checkCSRF(r *http.Request) bool {
	c, err := r.Cookie(browserCookie)
	if err != nil || c.Value == "" {
		return false
	}
	return hmac.Equal([]byte(r.PostFormValue("csrf")), []byte(b.csrfToken(c.Value)))
}

// sessionCookie returns the raw browser session id from its cookie.
func (b *Broker) sessionCookie(r *http.Request) string {
	c, err := r.Cookie(b.cfg.Session.CookieName)
	if err != nil {
		return ""
	}
	return c.Value
}

// randReader reads crypto/rand.
type randReader struct{}

func (randReader) Read(p []byte) (int, error) { return rand.Read(p) }
