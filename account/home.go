package account

import (
	"net/http"
	"net/url"
	"time"

	"github.com/esia-broker/esia-broker/pages"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/web"
	"github.com/google/uuid"
)

// home is the broker's own start page («/»), where the address on an invite slip leads: the
// region's name, «Войти через Госуслуги» (then the account page, where codes are entered and
// children managed), «Вход для детей до 14 лет», and the region's diaries.
func (h *Handler) home(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	clients, err := h.store.Clients(ctx)
	if err != nil {
		h.RenderError(w, r, err)
		return
	}
	var diaries []pages.Diary
	for _, c := range clients {
		if c.HomeURL != "" && c.Name != "" {
			diaries = append(diaries, pages.Diary{Name: c.Name, URL: c.HomeURL})
		}
	}
	links := make([]pages.Connector, 0, len(h.flow.Connectors()))
	for _, c := range h.flow.Connectors() {
		links = append(links, pages.Connector{ID: c.ID(), Name: c.DisplayName()})
	}
	msg := ""
	if bs, a, err := h.flow.CurrentSession(ctx, r); err == nil && bs != nil {
		msg = pages.LoggedInAs(storage.FullName(a.FamilyName, a.GivenName, a.MiddleName))
	}
	h.Render(w, r, http.StatusOK, &pages.Home{Frame: pages.Frame{Title: h.cfg.Region.Name}, Connectors: links, ChildLogin: h.cfg.Children.PasswordAccounts,
		Diaries: diaries, CSRF: h.CSRFToken(h.BrowserID(w, r)), Message: msg})
}

// accountLogin starts a login from the start page, without a diary's authorization request: it
// ends on the account page (ESIA), or back on the start page (a child's login).
func (h *Handler) accountLogin(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	id := r.PostFormValue("connector")
	_, known := h.flow.Connector(id)
	if !known && !(id == "child" && h.cfg.Children.PasswordAccounts) {
		h.RenderError(w, r, pages.NoSuchConnectorHere)
		return
	}
	lr := &storage.LoginRequest{ID: uuid.NewString(), BrowserHash: web.HashToken(h.BrowserID(w, r)), ExpiresAt: time.Now().Add(h.cfg.Session.LoginTimeout)}
	if err := h.store.CreateLoginRequest(ctx, lr); err != nil {
		h.RenderError(w, r, err)
		return
	}
	to := "/login/" + url.PathEscape(id) + "?login=" + url.QueryEscape(lr.ID)
	if id == "child" {
		to = "/child/login?login=" + url.QueryEscape(lr.ID)
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// accountPage is the personal page: children, their sub-accounts, the mobile app.
func (h *Handler) accountPage(w http.ResponseWriter, r *http.Request, account *storage.Account) {
	h.renderAccount(w, r, account, http.StatusOK, "", "")
}
