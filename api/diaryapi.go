package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/esia-broker/esia-broker/docs"
	"github.com/esia-broker/esia-broker/invites"
	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/provider"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/web"
	"github.com/gorilla/mux"
)

// The diaries' API for class teachers' codes, who is linked, and what changed (docs/DIARY.md,
// docs/openapi.json). Every call is authenticated by a client-credentials access token with
// the endpoint's scope and audited with the client as the operator.
// badField answers 400 naming the field.
func badField(w http.ResponseWriter, field, reason string) {
	web.WriteJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request", "error_description": reason,
		"problems": []problem{{Field: field, Reason: reason}}})
}

// decodeStrict reads a JSON body into v: one value, no unknown field, names as written (Go's
// decoder would take "ROLE" for "role", so a validator in front of the API would see another
// document than the broker), and names the field at fault when it can. A body over the server's
// limit is 413.
func decodeStrict(w http.ResponseWriter, r *http.Request, v any) bool {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		badField(w, "", "the body must be application/json")
		return false
	}
	raw, err := io.ReadAll(r.Body)
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		apiError(w, http.StatusRequestEntityTooLarge, "invalid_request", fmt.Sprintf("the body is over %d bytes (http.max_body_bytes)", tooBig.Limit))
		return false
	}
	if err != nil {
		badField(w, "", "the body could not be read")
		return false
	}
	if !utf8.Valid(raw) {
		badField(w, "", "the body is not valid UTF-8")
		return false
	}
	if f := duplicateKey(raw); f != "" {
		badField(w, f, "field "+f+" is given twice")
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err = dec.Decode(v)
	if err == nil && len(bytes.TrimSpace(raw[dec.InputOffset():])) > 0 {
		err = errors.New("one JSON value only")
	}
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te) && te.Field != "":
		badField(w, te.Field, fmt.Sprintf("%s must be a JSON %s", te.Field, jsonKind(te.Type)))
		return false
	case errors.As(err, &te):
		badField(w, "", "the body must be a JSON "+jsonKind(te.Type))
		return false
	case err != nil && strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		badField(w, f, "unknown field "+f)
		return false
	case err != nil:
		badField(w, "", "the body is not one valid JSON value")
		return false
	}
	var generic any
	_ = json.Unmarshal(raw, &generic)
	if f := inexactKey(generic, reflect.TypeOf(v)); f != "" {
		badField(w, f, "unknown field "+f+" (names are case-sensitive)")
		return false
	}
	return true
}

// checkQuery refuses (400, naming it) a query parameter not in allowed or given twice.
func checkQuery(w http.ResponseWriter, q url.Values, allowed ...string) bool {
	for k, vs := range q {
		switch {
		case !slices.Contains(allowed, k):
			badField(w, k, "unknown parameter "+k)
			return false
		case len(vs) > 1:
			badField(w, k, k+" is given twice")
			return false
		}
	}
	return true
}

// duplicateKey returns a key given twice in one JSON object of raw ("" when none is, or when
// raw is not JSON: the decoder says so then).
func duplicateKey(raw []byte) string {
	dec := json.NewDecoder(bytes.NewReader(raw))
	type frame struct {
		object bool
		keys   map[string]bool
		expect bool // the next string token of an object is a key
	}
	var stack []*frame
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		var top *frame
		if len(stack) > 0 {
			top = stack[len(stack)-1]
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				if top != nil && top.object {
					top.expect = true
				}
				stack = append(stack, &frame{object: true, keys: map[string]bool{}, expect: true})
			case '[':
				if top != nil && top.object {
					top.expect = true
				}
				stack = append(stack, &frame{})
			default:
				stack = stack[:len(stack)-1]
			}
			continue
		case string:
			if top != nil && top.object && top.expect {
				if top.keys[t] {
					return t
				}
				top.keys[t] = true
				top.expect = false
				continue
			}
		}
		if top != nil && top.object {
			top.expect = true
		}
	}
}

// jsonKind names a Go type as JSON does.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Struct, reflect.Map:
		return "object"
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Ptr:
		return jsonKind(t.Elem())
	}
	return "number"
}

// inexactKey returns the first object key in val that is not, to the letter, a JSON name of the
// struct type t describes (at any depth); "" when every key is.
func inexactKey(val any, t reflect.Type) string {
	for t.Kind() == reflect.Ptr {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		m, ok := val.(map[string]any)
		if !ok {
			return ""
		}
		fields := map[string]reflect.Type{}
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "-" || !f.IsExported() {
				continue
			}
			if name == "" {
				name = f.Name
			}
			fields[name] = f.Type
		}
		for k, x := range m {
			ft, ok := fields[k]
			if !ok {
				return k
			}
			if bad := inexactKey(x, ft); bad != "" {
				return k + "." + bad
			}
		}
	case reflect.Slice, reflect.Array:
		a, _ := val.([]any)
		for i, x := range a {
			if bad := inexactKey(x, t.Elem()); bad != "" {
				return fmt.Sprintf("[%d].%s", i, bad)
			}
		}
	}
	return ""
}

type apiCallKey struct{}

// apiCall is filled in by requireScope with the client a call authenticated.
type apiCall struct{ client string }

// audited wraps a diary API handler: every call a client authenticated for — answered, refused
// or a no-op — is in the audit log (api.call, with the route, method and status), the client as
// the operator. The domain lines (invites.issue, link.revoke …) are written beside it.
func (a *Handler) audited(route string, next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		call := &apiCall{}
		sw := &web.StatusWriter{ResponseWriter: w}
		next(sw, r.WithContext(context.WithValue(r.Context(), apiCallKey{}, call)))
		if call.client == "" {
			return
		}
		status := sw.Code
		if status == 0 {
			status = http.StatusOK
		}
		if err := a.store.Audit(context.WithoutCancel(r.Context()), "api:"+call.client, "api.call", route, map[string]any{"method": r.Method, "status": status}); err != nil {
			a.Logger(r.Context()).Error("audit api call", "route", route, "err", err)
		}
	}
}

// auditUnrouted audits an API call that reached no handler (an unknown address or method),
// when it carries an access token: the client probed, and that is on record too.
func (a *Handler) auditUnrouted(r *http.Request, status int) {
	tok := provider.BearerToken(r)
	if tok == "" {
		return
	}
	ar, err := a.provider.AccessToken(r.Context(), tok)
	if err != nil {
		return
	}
	if err := a.store.Audit(context.WithoutCancel(r.Context()), "api:"+ar.GetClient().GetID(), "api.call", "unrouted", map[string]any{"method": r.Method, "status": status}); err != nil {
		a.Logger(r.Context()).Error("audit api call", "route", "unrouted", "err", err)
	}
}

type inviteRequest struct {
	SchoolID   string   `json:"school_id"`
	Class      string   `json:"class"`
	StudentIDs []string `json:"student_ids"`
	Role       string   `json:"role"`
	Rotate     bool     `json:"rotate"`
	ExpiresIn  string   `json:"expires_in"`
}

// apiFields maps the invites service's field names to the API's.
var apiFields = map[string]string{"school": "school_id", "class": "class", "students": "student_ids", "role": "role", "expiry": "expires_in"}

// issueInvites runs POST /api/v1/invites and /api/v1/invites/sheet: it checks the token (scope
// invites:write), validates, issues or rotates, and returns the slips and the client; on a
// refusal it has answered already.
func (a *Handler) issueInvites(w http.ResponseWriter, r *http.Request) ([]invites.Slip, *inviteRequest, string, bool) {
	client, ok := a.requireScope(w, r, "invites:write")
	if !ok {
		return nil, nil, "", false
	}
	var req inviteRequest
	if !decodeStrict(w, r, &req) {
		return nil, nil, "", false
	}
	switch {
	case req.SchoolID == "":
		badField(w, "school_id", "school_id is required")
		return nil, nil, "", false
	case req.Role != invites.RoleParent && req.Role != invites.RoleStudent:
		badField(w, "role", "role must be parent or student")
		return nil, nil, "", false
	case len(req.StudentIDs) > 1000:
		badField(w, "student_ids", "name at most 1000 students")
		return nil, nil, "", false
	}
	seen := map[string]bool{}
	for _, id := range req.StudentIDs {
		if id == "" || len(id) > 64 {
			badField(w, "student_ids", "every student id must be 1-64 characters")
			return nil, nil, "", false
		}
		if seen[id] {
			badField(w, "student_ids", fmt.Sprintf("student %q is named twice", id))
			return nil, nil, "", false
		}
		seen[id] = true
	}
	ttl := 30 * 24 * time.Hour
	if req.ExpiresIn != "" {
		var err error
		if ttl, err = invites.ParseTTL(req.ExpiresIn); err != nil {
			badField(w, "expires_in", "expires_in: "+err.Error())
			return nil, nil, "", false
		}
	}
	ir := invites.IssueRequest{Selection: invites.Selection{SchoolID: req.SchoolID, Class: req.Class, IDs: req.StudentIDs},
		Role: req.Role, TTL: ttl, Operator: "api:" + client}
	var slips []invites.Slip
	var err error
	if req.Rotate {
		slips, _, err = a.invites.Rotate(r.Context(), ir)
	} else {
		slips, err = a.invites.Issue(r.Context(), ir)
	}
	var fe *invites.FieldError
	switch {
	case errors.As(err, &fe):
		badField(w, apiFields[fe.Field], fe.Reason)
		return nil, nil, "", false
	case errors.Is(err, invites.ErrOpenCodesExist):
		apiError(w, http.StatusConflict, "open_codes_exist", "Some of the selected students already have open codes for this role; send \"rotate\": true to replace them.")
		return nil, nil, "", false
	case err != nil:
		a.Logger(r.Context()).Error("api: issue invites", "err", err)
		apiError(w, http.StatusInternalServerError, "server_error", "The codes could not be issued.")
		return nil, nil, "", false
	}
	return slips, &req, client, true
}

// apiIssueInvites is POST /api/v1/invites (scope invites:write): one code per selected student,
// shown this once.
func (a *Handler) apiIssueInvites(w http.ResponseWriter, r *http.Request) {
	slips, _, _, ok := a.issueInvites(w, r)
	if !ok {
		return
	}
	out := make([]map[string]any, len(slips))
	for i, s := range slips {
		out[i] = map[string]any{"id": s.InviteID, "student_id": s.StudentID, "role": s.Role, "code": s.Code, "expires_at": s.ExpiresAt.UTC()}
	}
	web.WriteJSON(w, http.StatusCreated, map[string]any{"invites": out})
}

// apiInviteSheet is POST /api/v1/invites/sheet (scope invites:write): as POST /api/v1/invites,
// answered with the printable A4 sheet of slips.
func (a *Handler) apiInviteSheet(w http.ResponseWriter, r *http.Request) {
	slips, req, client, ok := a.issueInvites(w, r)
	if !ok {
		return
	}
	start := a.provider.Issuer()
	if c, err := a.store.Client(r.Context(), client); err == nil && c.HomeURL != "" {
		start = c.HomeURL
	}
	title := invites.SheetTitle(req.SchoolID, req.Class, slips)
	var buf bytes.Buffer
	if err := invites.WriteHTML(&buf, title, start, slips); err != nil {
		a.Logger(r.Context()).Error("api: invite sheet", "err", err)
		apiError(w, http.StatusInternalServerError, "server_error", "The sheet could not be made.")
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// The sheet is a document of its own, styled inline for printing; it runs no script.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(buf.Bytes())
}

// apiStatus is the API's name of an invite's status.
func apiStatus(s string) string {
	if s == "redeemed" {
		return "used"
	}
	return s
}

// apiListInvites is GET /api/v1/invites (scope invites:write): the records, never the codes.
func (a *Handler) apiListInvites(w http.ResponseWriter, r *http.Request) {
	_, ok := a.requireScope(w, r, "invites:write")
	if !ok {
		return
	}
	q := r.URL.Query()
	if !checkQuery(w, q, "school_id", "class", "role", "status") {
		return
	}
	f := storage.InviteFilter{SchoolID: q.Get("school_id"), Class: q.Get("class"), Role: q.Get("role")}
	status := q.Get("status")
	switch {
	case f.SchoolID == "":
		badField(w, "school_id", "school_id is required")
		return
	case f.Role != "" && f.Role != invites.RoleParent && f.Role != invites.RoleStudent:
		badField(w, "role", "role must be parent or student")
		return
	case status != "" && status != "open" && status != "used" && status != "revoked" && status != "expired":
		badField(w, "status", "status must be open, used, revoked or expired")
		return
	}
	if schools, err := a.store.Schools(r.Context()); err == nil && !slices.ContainsFunc(schools, func(sc storage.School) bool { return sc.ID == f.SchoolID }) {
		badField(w, "school_id", fmt.Sprintf("unknown school %q", f.SchoolID))
		return
	}
	rows, err := a.invites.List(r.Context(), f)
	if err != nil {
		a.Logger(r.Context()).Error("api: list invites", "err", err)
		apiError(w, http.StatusInternalServerError, "server_error", "The codes could not be listed.")
		return
	}
	now := a.store.Now()
	out := []map[string]any{}
	for _, row := range rows {
		st := apiStatus(row.Status(now))
		if status != "" && st != status {
			continue
		}
		m := map[string]any{"id": row.ID, "student_id": row.StudentID, "school_id": row.SchoolID, "class": row.Class, "role": row.Role,
			"status": st, "created_at": row.CreatedAt.UTC(), "expires_at": row.ExpiresAt.UTC()}
		if row.RedeemedAt != nil {
			m["used_at"] = row.RedeemedAt.UTC()
		}
		if row.RevokedAt != nil {
			m["revoked_at"] = row.RevokedAt.UTC()
		}
		out = append(out, m)
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"invites": out})
}

// apiRevokeInvite is DELETE /api/v1/invites/{id} (scope invites:write).
func (a *Handler) apiRevokeInvite(w http.ResponseWriter, r *http.Request) {
	client, ok := a.requireScope(w, r, "invites:write")
	if !ok {
		return
	}
	err := a.invites.RevokeOne(r.Context(), mux.Vars(r)["id"], "api:"+client)
	a.answerChange(w, r, err, "revoke invite",
		apiRefusal{storage.ErrNotFound, http.StatusNotFound, "not_found", "No such invite code."},
		apiRefusal{invites.ErrInviteUsed, http.StatusConflict, "invite_used", "The code was already used; end the link it made with DELETE /api/v1/links/{id}."})
}

// apiRefusal is the answer of a change refused for err.
type apiRefusal struct {
	err          error
	status       int
	code, reason string
}

// answerChange answers a change with no content: 204, the refusal that err is, or 500 (logged
// as what).
func (a *Handler) answerChange(w http.ResponseWriter, r *http.Request, err error, what string, refusals ...apiRefusal) {
	for _, f := range refusals {
		if errors.Is(err, f.err) {
			apiError(w, f.status, f.code, f.reason)
			return
		}
	}
	if err != nil {
		a.Logger(r.Context()).Error("api: "+what, "err", err)
		apiError(w, http.StatusInternalServerError, "server_error", "The change could not be made.")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

// apiStudentLinks is GET /api/v1/students/{id}/links (scope links:read): who is linked.
func (a *Handler) apiStudentLinks(w http.ResponseWriter, r *http.Request) {
	_, ok := a.requireScope(w, r, "links:read")
	if !ok {
		return
	}
	id := mux.Vars(r)["id"]
	if _, err := a.store.Student(r.Context(), id); errors.Is(err, storage.ErrNotFound) {
		apiError(w, http.StatusNotFound, "not_found", "No such student.")
		return
	} else if err != nil {
		apiError(w, http.StatusInternalServerError, "server_error", "The student could not be read.")
		return
	}
	links, err := a.store.StudentLinks(r.Context(), id)
	if err != nil {
		a.Logger(r.Context()).Error("api: student links", "err", err)
		apiError(w, http.StatusInternalServerError, "server_error", "The links could not be read.")
		return
	}
	out := make([]map[string]any, len(links))
	for i, l := range links {
		out[i] = map[string]any{"id": l.ID, "account": l.AccountID, "relation": l.Relation, "method": linking.APIMethod(l.Method), "created_at": l.CreatedAt.UTC()}
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"student_id": id, "links": out})
}

// apiEndLink is DELETE /api/v1/links/{id} (scope links:write): the link ends with the account's
// sessions and tokens and a sub-account left without a parent.
func (a *Handler) apiEndLink(w http.ResponseWriter, r *http.Request) {
	client, ok := a.requireScope(w, r, "links:write")
	if !ok {
		return
	}
	_, err := a.linker.EndLink(r.Context(), mux.Vars(r)["id"], "api:"+client)
	a.answerChange(w, r, err, "end link", apiRefusal{storage.ErrNotFound, http.StatusNotFound, "not_found", "No such active link."},
		apiRefusal{linking.ErrSNILSLink, http.StatusConflict, "snils_link", "The link follows the SNILS on the student's card and would be made again at the next login: take the guardian off the card (PUT /api/v1/students/{id}), which ends the link at once."})
}

// apiEvents is GET /api/v1/events (scope events:read): the changes after a cursor, oldest first.
func (a *Handler) apiEvents(w http.ResponseWriter, r *http.Request) {
	_, ok := a.requireScope(w, r, "events:read")
	if !ok {
		return
	}
	q := r.URL.Query()
	if !checkQuery(w, q, "after", "limit") {
		return
	}
	after := int64(-1) // from the oldest event kept
	if s := q.Get("after"); q.Has("after") {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			badField(w, "after", "after must be a cursor this API returned as next")
			return
		}
		after = n
	}
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			badField(w, "limit", "limit must be between 1 and 1000")
			return
		}
		limit = n
	}
	evs, floor, err := a.store.Events(r.Context(), after, limit)
	if errors.Is(err, storage.ErrCursorAhead) {
		badField(w, "after", "after is beyond the newest event: send a cursor this API returned as next")
		return
	}
	if errors.Is(err, storage.ErrEventsPruned) {
		apiError(w, http.StatusGone, "cursor_expired", "Events after this cursor are older than the retention period and were removed; read the current state (GET /api/v1/students/{id}/links) and start again without after.")
		return
	}
	if err != nil {
		a.Logger(r.Context()).Error("api: events", "err", err)
		apiError(w, http.StatusInternalServerError, "server_error", "The events could not be read.")
		return
	}
	next := max(after, floor)
	out := make([]map[string]any, len(evs))
	for i, e := range evs {
		m := map[string]any{"id": strconv.FormatInt(e.ID, 10), "type": e.Type, "time": e.At.UTC(), "data": e.Data}
		if m["data"] == nil {
			m["data"] = map[string]any{}
		}
		if e.StudentID != "" {
			m["student_id"] = e.StudentID
		}
		if e.AccountID != "" {
			m["account"] = e.AccountID
		}
		out[i] = m
		next = e.ID
	}
	web.WriteJSON(w, http.StatusOK, map[string]any{"events": out, "next": strconv.FormatInt(next, 10)})
}

// apiDocument is GET /api/v1/openapi.json: the API's OpenAPI 3.1 description, as kept in docs/.
func (a *Handler) apiDocument(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(docs.OpenAPI)
}
