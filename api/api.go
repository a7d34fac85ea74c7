package api

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/provider"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/web"
	"github.com/gorilla/mux"
)

func apiError(w http.ResponseWriter, status int, code, desc string) {
	web.WriteJSON(w, status, map[string]string{"error": code, "error_description": desc})
}

// requireScope authenticates an API call by its bearer access token, which must carry scope;
// it returns the client the token was issued to.
func (a *Handler) requireScope(w http.ResponseWriter, r *http.Request, scope string) (string, bool) {
	token := provider.BearerToken(r)
	if token == "" {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		apiError(w, http.StatusUnauthorized, "invalid_token", "A bearer access token is required in the Authorization header.")
		return "", false
	}
	ar, err := a.provider.AccessToken(r.Context(), token)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		apiError(w, http.StatusUnauthorized, "invalid_token", "The access token is not active.")
		return "", false
	}
	clientID := ar.GetClient().GetID()
	if call, ok := r.Context().Value(apiCallKey{}).(*apiCall); ok {
		call.client = clientID // audited, answered or refused
	}
	// A machine's token only: one a person's login gave (its subject the account) is no API
	// credential, whatever scopes it carries; and the client must still hold the scope now.
	sess, ok := ar.GetSession().(*provider.Session)
	current, err := a.store.Client(r.Context(), clientID)
	if !ok || sess.Subject != clientID || sess.ClientID != clientID || err != nil || !slices.Contains(current.Scopes, scope) ||
		!slices.Contains(current.GrantTypes, "client_credentials") || !ar.GetGrantedScopes().Has(scope) {
		w.Header().Set("WWW-Authenticate", `Bearer error="insufficient_scope", scope="`+scope+`"`)
		apiError(w, http.StatusForbidden, "insufficient_scope", "The API takes a client-credentials access token with scope "+scope+", of a client registered for it.")
		return "", false
	}
	return clientID, true
}

type problem struct {
	Field  string `json:"field,omitempty"`
	Reason string `json:"reason"`
	Index  *int   `json:"index,omitempty"`
}

func problems(errs []linking.RowError, index *int) []problem {
	out := make([]problem, 0, len(errs))
	for _, e := range errs {
		out = append(out, problem{Field: e.Field, Reason: e.Reason, Index: index})
	}
	return out
}

// apiPutStudent is PUT /api/v1/students/{id}: create or update one card (scope roster:write).
func (a *Handler) apiPutStudent(w http.ResponseWriter, r *http.Request) {
	client, ok := a.requireScope(w, r, "roster:write")
	if !ok {
		return
	}
	var c linking.Card
	if !decodeStrict(w, r, &c) {
		return
	}
	id := mux.Vars(r)["id"]
	if c.StudentID != "" && c.StudentID != id {
		badField(w, "student_id", "student_id in the body differs from the path")
		return
	}
	c.StudentID = id
	changed, probs, err := a.linker.PutCard(r.Context(), c, "api:"+client)
	if err != nil {
		a.Logger(r.Context()).Error("roster put", "err", err)
		apiError(w, http.StatusInternalServerError, "server_error", "The card could not be stored.")
		return
	}
	if len(probs) > 0 {
		web.WriteJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request", "problems": problems(probs, nil)})
		return
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"id": id, "changed": changed})
}

// apiPutStudents is POST /api/v1/students/batch: up to 1000 cards, all or nothing.
func (a *Handler) apiPutStudents(w http.ResponseWriter, r *http.Request) {
	client, ok := a.requireScope(w, r, "roster:write")
	if !ok {
		return
	}
	var cards []linking.Card
	if !decodeStrict(w, r, &cards) {
		return
	}
	if len(cards) == 0 || len(cards) > 1000 {
		badField(w, "", "send between 1 and 1000 cards")
		return
	}
	rep, err := a.linker.PutCards(r.Context(), cards, "api:"+client)
	if errors.Is(err, linking.ErrInvalidRows) {
		var ps []problem
		for _, e := range rep.Errors {
			i := e.Line - 1
			ps = append(ps, problem{Field: e.Field, Reason: e.Reason, Index: &i})
		}
		web.WriteJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request", "problems": ps})
		return
	}
	if err != nil {
		a.Logger(r.Context()).Error("roster batch", "err", err)
		apiError(w, http.StatusInternalServerError, "server_error", "The cards could not be stored.")
		return
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"created": rep.Created, "updated": rep.Updated, "unchanged": rep.Unchanged})
}

// apiDeactivateStudent is DELETE /api/v1/students/{id}: the student left; the card stays inactive.
func (a *Handler) apiDeactivateStudent(w http.ResponseWriter, r *http.Request) {
	client, ok := a.requireScope(w, r, "roster:write")
	if !ok {
		return
	}
	id := mux.Vars(r)["id"]
	changed, err := a.linker.Deactivate(r.Context(), id, "api:"+client)
	if errors.Is(err, storage.ErrNotFound) {
		apiError(w, http.StatusNotFound, "not_found", "No such student.")
		return
	}
	if err != nil {
		apiError(w, http.StatusInternalServerError, "server_error", "The card could not be changed.")
		return
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"id": id, "changed": changed, "active": false})
}

// apiCreateLinkIntent is POST /api/v1/link-intents (scope links:write): the diary names the
// students of a user it has logged in with an old login, and gets a single-use URL that links
// the ESIA account that logs in there to them.
func (a *Handler) apiCreateLinkIntent(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	clientID, ok := a.requireScope(w, r, "links:write")
	if !ok {
		return
	}
	var req struct {
		Students  []string `json:"students"`
		Relation  string   `json:"relation"`
		ReturnURI string   `json:"return_uri"`
	}
	if !decodeStrict(w, r, &req) {
		return
	}
	if req.Relation == "" {
		req.Relation = "parent"
	}
	if req.Relation != "parent" && req.Relation != "self" {
		badField(w, "relation", "relation must be parent or self")
		return
	}
	if len(req.Students) == 0 || len(req.Students) > 20 {
		badField(w, "students", "name between 1 and 20 students")
		return
	}
	if len(slices.Compact(slices.Sorted(slices.Values(req.Students)))) != len(req.Students) {
		badField(w, "students", "a student is named twice")
		return
	}
	for _, id := range req.Students {
		st, err := a.store.Student(ctx, id)
		if err != nil || !st.Active {
			badField(w, "students", "unknown or inactive student "+id)
			return
		}
	}
	client, err := a.store.Client(ctx, clientID)
	if err != nil {
		apiError(w, http.StatusInternalServerError, "server_error", "client lookup failed")
		return
	}
	if req.ReturnURI != "" && !slices.Contains(client.RedirectURIs, req.ReturnURI) && !slices.Contains(client.PostLogoutRedirectURIs, req.ReturnURI) {
		badField(w, "return_uri", "return_uri must be one of the client's registered redirect or post-logout URIs")
		return
	}
	raw := web.RandomToken()
	exp := time.Now().Add(a.cfg.Linking.LinkIntentTTL)
	err = a.store.InTx(ctx, func(ctx context.Context) error {
		if err := a.store.CreateLinkIntent(ctx, &storage.LinkIntent{IDHash: web.HashToken(raw), ClientID: clientID, ReturnURI: req.ReturnURI, Relation: req.Relation, ExpiresAt: exp}, req.Students); err != nil {
			return err
		}
		return a.store.Audit(ctx, "api:"+clientID, "link_intent.create", "", map[string]any{"students": len(req.Students), "relation": req.Relation})
	})
	if err != nil {
		apiError(w, http.StatusInternalServerError, "server_error", "The intent could not be stored.")
		return
	}
	web.WriteJSON(w, http.StatusCreated, map[string]any{"url": a.provider.Issuer() + "/link/" + raw, "expires_at": exp.UTC().Format(time.RFC3339)})
}
