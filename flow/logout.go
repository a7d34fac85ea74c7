package flow

import (
	"context"
	"crypto/hmac"
	"encoding/base64"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/esia-broker/esia-broker/pages"
	"github.com/esia-broker/esia-broker/provider"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/upstream"
	"github.com/esia-broker/esia-broker/web"
)

// logout is RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0). With a valid
// id_token_hint the session ends at once; without one the person confirms with a form.
func (f *Flow) logout(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if err := r.ParseForm(); err != nil {
		f.RenderError(w, r, pages.BadLogoutRequest)
		return
	}
	hint := r.Form.Get("id_token_hint")
	postLogout := r.Form.Get("post_logout_redirect_uri")
	clientID := r.Form.Get("client_id")
	var hintSub, hintSID string
	if hint != "" {
		claims, err := f.provider.DecodeIDToken(ctx, hint)
		if err != nil {
			f.RenderError(w, r, pages.LogoutHintRefused(err))
			return
		}
		hintSub, _ = claims["sub"].(string)
		hintSID, _ = claims["sid"].(string)
		aud := provider.Audiences(claims["aud"])
		if clientID == "" && len(aud) == 1 {
			clientID = aud[0]
		} else if clientID != "" && !slices.Contains(aud, clientID) {
			f.RenderError(w, r, pages.LogoutHintRefused(nil))
			return
		}
		// The account the token names, from the sub its diary saw (tokens.subject).
		hintSub = f.provider.HintAccount(ctx, hintSub, hintSID, clientID)
	}
	if postLogout != "" {
		if _, err := f.postLogoutRedirect(ctx, clientID, postLogout, ""); err != nil {
			f.RenderError(w, r, err)
			return
		}
	}
	bs, _, err := f.CurrentSession(ctx, r)
	if err != nil {
		f.RenderError(w, r, err)
		return
	}
	confirmed := hint != "" && (bs == nil || bs.AccountID == hintSub)
	if r.Method == http.MethodPost && r.PostForm.Get("csrf") == "" && hint != "" {
		// RP-Initiated Logout by POST (RP-Initiated Logout 1.0 §2): a form from the diary's page
		// or a request from the diary's server. The ID token, which this broker signed, names the
		// person and the session (sid): that session ends wherever the request comes from.
		n, err := f.store.DeleteBrowserSessionsBySID(ctx, hintSID, hintSub)
		if err != nil {
			f.RenderError(w, r, err)
			return
		}
		if n > 0 {
			if err := f.store.Audit(ctx, "account:"+hintSub, "logout", clientID, map[string]any{"by": "sid"}); err != nil {
				f.RenderError(w, r, err)
				return
			}
		}
		if bs == nil || bs.AccountID != hintSub {
			// No session of that person in this browser (the diary's server, or another person
			// here): nothing else to end.
			f.finishLogout(w, r, logoutReturn{ClientID: clientID, URI: postLogout, State: r.Form.Get("state")})
			return
		}
		confirmed = true
	} else if r.Method == http.MethodPost {
		if !f.CheckCSRF(r) {
			f.RenderError(w, r, pages.LogoutFormExpired)
			return
		}
		confirmed = true
	}
	if !confirmed && bs != nil {
		browser := f.BrowserID(w, r)
		hidden := map[string]string{}
		for _, k := range []string{"post_logout_redirect_uri", "state", "client_id"} {
			if v := r.Form.Get(k); v != "" {
				hidden[k] = v
			}
		}
		f.Render(w, r, http.StatusOK, &pages.Logout{CSRF: f.CSRFToken(browser), Hidden: hidden})
		return
	}
	if bs != nil {
		if err := f.store.DeleteBrowserSession(ctx, bs.IDHash); err != nil {
			f.RenderError(w, r, err)
			return
		}
		if err := f.store.Audit(ctx, "account:"+bs.AccountID, "logout", clientID, nil); err != nil {
			f.RenderError(w, r, err)
			return
		}
	}
	f.ClearCookie(w, f.cfg.Session.CookieName)
	f.ClearCookie(w, f.cfg.Session.BrowserCookieName)
	back := logoutReturn{ClientID: clientID, URI: postLogout, State: r.Form.Get("state"), At: time.Now()}
	if bs != nil {
		back.Sub, back.SID, back.MAC = bs.AccountID, bs.SID, f.BrowserMAC("frontchannel\x00"+bs.AccountID+"\x00"+bs.SID)
	}
	if to := f.upstreamLogoutURL(); to != "" {
		// ESIA keeps a session of its own: end it too, then come back to /oauth2/logout/done,
		// which finishes where the relying party asked.
		f.SetCookie(w, logoutCookie, back.encode(), logoutPending)
		http.Redirect(w, r, to, http.StatusFound)
		return
	}
	f.finishLogout(w, r, back)
}

// logoutCookie carries where a logout ends while the browser visits ESIA's logout. It stays
// until the browser is back from ESIA: while it is there, ESIA's session may still be open, and
// the next ESIA login from this browser goes through ESIA's logout first.
const logoutCookie = "esia_broker_logout"

// logoutPending is how long a logout whose ESIA step did not complete is remembered.
const logoutPending = 24 * time.Hour

// logoutReturn is where a logout ends: a relying party's registered post-logout URI with its
// state, or (URI empty) the broker's «Вы вышли» page; or, with Login set, the login request to
// continue once ESIA's session has ended.
type logoutReturn struct {
	ClientID, URI, State string
	Login, Connector     string
	// Sub and SID name the browser session that ended, for the diaries' front-channel logout
	// frames; MAC authenticates them (the cookie that carries them through ESIA's logout is the
	// browser's).
	Sub, SID, MAC string
	// At is when the logout began: a login in this browser before the logout completes must
	// have authenticated at the upstream after it.
	At time.Time
}

func (l logoutReturn) encode() string {
	v := url.Values{"c": {l.ClientID}, "u": {l.URI}, "s": {l.State}, "l": {l.Login}, "n": {l.Connector}, "t": {strconv.FormatInt(l.At.Unix(), 10)},
		"a": {l.Sub}, "i": {l.SID}, "m": {l.MAC}}
	return base64.RawURLEncoding.EncodeToString([]byte(v.Encode()))
}

// mustEndUpstreamSession tells whether a trip upstream for lr must not reuse the upstream's
// own session: a logout of this browser is still pending, or the relying party asked for a
// fresh login.
func (f *Flow) mustEndUpstreamSession(r *http.Request, lr *storage.LoginRequest) bool {
	if _, err := r.Cookie(f.CookieName(logoutCookie)); err == nil {
		return true
	}
	q, _ := url.ParseQuery(lr.AuthorizeQuery)
	return slices.Contains(strings.Fields(q.Get("prompt")), "login") || q.Has("max_age")
}

func decodeLogoutReturn(s string) (logoutReturn, bool) {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) > 4096 {
		return logoutReturn{}, false
	}
	v, err := url.ParseQuery(string(b))
	if err != nil {
		return logoutReturn{}, false
	}
	at, _ := strconv.ParseInt(v.Get("t"), 10, 64)
	return logoutReturn{ClientID: v.Get("c"), URI: v.Get("u"), State: v.Get("s"), Login: v.Get("l"), Connector: v.Get("n"), At: time.Unix(at, 0),
		Sub: v.Get("a"), SID: v.Get("i"), MAC: v.Get("m")}, true
}

// upstreamLogoutURL is where to end the upstream's own session (ESIA's), coming back to
// /oauth2/logout/done; "" when no upstream keeps one.
func (f *Flow) upstreamLogoutURL() string {
	for _, c := range f.connOrder {
		if lo, ok := c.(upstream.Logout); ok {
			if u := lo.UpstreamLogoutURL(f.provider.Issuer() + "/oauth2/logout/done"); u != "" {
				return u
			}
		}
	}
	return ""
}

// postLogoutRedirect checks a post-logout redirect URI against the client's registration and
// returns it with state added.
func (f *Flow) postLogoutRedirect(ctx context.Context, clientID, uri, state string) (string, error) {
	client, err := f.store.Client(ctx, clientID)
	if err != nil || !slices.Contains(client.PostLogoutRedirectURIs, uri) {
		return "", pages.UnregisteredReturn
	}
	u, err := url.Parse(uri)
	if err != nil {
		return "", pages.BrokenReturn(err)
	}
	if state != "" {
		q := u.Query()
		q.Set("state", state)
		u.RawQuery = q.Encode()
	}
	return u.String(), nil
}

// finishLogout sends the browser where the logout was asked to end. When diaries the person
// used registered a frontchannel_logout_uri (Front-Channel Logout 1.0), the «Вы вышли» page
// loads each in a hidden frame, with iss and sid, and then goes on to the diary's return
// address, if one was asked for.
func (f *Flow) finishLogout(w http.ResponseWriter, r *http.Request, back logoutReturn) {
	to := ""
	if back.URI != "" {
		var err error
		if to, err = f.postLogoutRedirect(r.Context(), back.ClientID, back.URI, back.State); err != nil {
			f.RenderError(w, r, err)
			return
		}
	}
	frames, origins, err := f.frontchannelFrames(r.Context(), back)
	if err != nil {
		f.Logger(r.Context()).Warn("front-channel logout frames left out", "err", err)
	}
	if len(frames) == 0 && to != "" {
		http.Redirect(w, r, to, http.StatusFound)
		return
	}
	if len(frames) > 0 {
		w.Header().Set("Content-Security-Policy", web.ContentSecurityPolicy+"; frame-src "+strings.Join(origins, " "))
	}
	f.Render(w, r, http.StatusOK, &pages.LoggedOut{Frame: pages.Frame{Refresh: to}, Frames: frames, ReturnURI: to})
}

// frontchannelFrames returns the front-channel logout URIs, with iss and sid, of the diaries
// the ended session gave codes to, and their origins.
func (f *Flow) frontchannelFrames(ctx context.Context, back logoutReturn) ([]string, []string, error) {
	if back.SID == "" || !hmac.Equal([]byte(back.MAC), []byte(f.BrowserMAC("frontchannel\x00"+back.Sub+"\x00"+back.SID))) {
		return nil, nil, nil
	}
	uris, err := f.store.FrontchannelLogoutURIs(ctx, back.Sub, back.SID)
	if err != nil {
		return nil, nil, err
	}
	var frames, origins []string
	for _, raw := range uris {
		u, err := url.Parse(raw)
		if err != nil || u.Host == "" {
			continue
		}
		q := u.Query()
		q.Set("iss", f.provider.Issuer())
		q.Set("sid", back.SID)
		u.RawQuery = q.Encode()
		frames = append(frames, u.String())
		if o := u.Scheme + "://" + u.Host; !slices.Contains(origins, o) {
			origins = append(origins, o)
		}
	}
	return frames, origins, nil
}

// logoutDone is where ESIA's logout comes back. The return address is checked again against
// the client's registration: the cookie only says which one was asked for.
func (f *Flow) logoutDone(w http.ResponseWriter, r *http.Request) {
	c, err := r.Cookie(f.CookieName(logoutCookie))
	if err != nil {
		// No logout under way in this browser: say «Вы вышли» only when nobody is logged in.
		if bs, _, err := f.CurrentSession(r.Context(), r); err == nil && bs != nil {
			http.Redirect(w, r, "/account", http.StatusFound)
			return
		}
		f.Render(w, r, http.StatusOK, &pages.LoggedOut{})
		return
	}
	back, _ := decodeLogoutReturn(c.Value)
	f.ClearCookie(w, logoutCookie)
	if back.Login != "" {
		// ESIA's session has ended: continue the login that had to wait for it.
		if _, ok := f.connectors[back.Connector]; ok {
			http.Redirect(w, r, "/login/"+url.PathEscape(back.Connector)+"?"+url.Values{"login": {back.Login}, "fresh": {"1"}}.Encode(), http.StatusFound)
			return
		}
		back = logoutReturn{}
	}
	f.finishLogout(w, r, back)
}
