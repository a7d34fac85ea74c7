package broker_test

import (
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/esia-broker/esia-broker/docs"
	"github.com/esia-broker/esia-broker/provider"
)

// openAPI is the part of the API description the checks read.
type openAPI struct {
	OpenAPI string `json:"openapi"`
	Paths   map[string]map[string]struct {
		Security  []map[string][]string `json:"security"`
		Responses map[string]any        `json:"responses"`
	} `json:"paths"`
	Components struct {
		Schemas map[string]schema `json:"schemas"`
	} `json:"components"`
}

type schema struct {
	Ref        string            `json:"$ref"`
	Type       string            `json:"type"`
	Required   []string          `json:"required"`
	Properties map[string]schema `json:"properties"`
	Items      *schema           `json:"items"`
	Enum       []any             `json:"enum"`
}

func loadOpenAPI(t *testing.T) openAPI {
	t.Helper()
	var doc openAPI
	if err := json.Unmarshal(docs.OpenAPI, &doc); err != nil {
		t.Fatalf("docs/openapi.json: %v", err)
	}
	return doc
}

// conforms checks a decoded JSON value against a schema of the description: types, required
// properties, no undocumented property, enum values; it reports the first difference.
func (d openAPI) conforms(v any, s schema, at string) string {
	if s.Ref != "" {
		return d.conforms(v, d.Components.Schemas[strings.TrimPrefix(s.Ref, "#/components/schemas/")], at)
	}
	if len(s.Enum) > 0 && !slices.Contains(s.Enum, v) {
		return at + ": " + jsonString(v) + " is not one of the documented values"
	}
	switch s.Type {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			return at + ": not an object"
		}
		for _, r := range s.Required {
			if _, ok := m[r]; !ok {
				return at + ": required " + r + " missing"
			}
		}
		if s.Properties == nil {
			return ""
		}
		for k, x := range m {
			p, ok := s.Properties[k]
			if !ok {
				return at + ": undocumented property " + k
			}
			if msg := d.conforms(x, p, at+"."+k); msg != "" {
				return msg
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			return at + ": not an array"
		}
		for _, x := range a {
			if msg := d.conforms(x, *s.Items, at+"[]"); msg != "" {
				return msg
			}
		}
	case "string":
		if _, ok := v.(string); !ok {
			return at + ": not a string"
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			return at + ": not a boolean"
		}
	case "integer":
		if f, ok := v.(float64); !ok || f != float64(int64(f)) {
			return at + ": not an integer"
		}
	}
	return ""
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// template returns the described path a concrete path matches ("" when none does).
func (d openAPI) template(path string) string {
	for tmpl := range d.Paths {
		re := regexp.MustCompile("^" + strings.ReplaceAll(regexp.QuoteMeta(tmpl), `\{id\}`, `[^/]+`) + "$")
		if re.MatchString(path) && (tmpl == path || !slices.Contains(d.pathList(), path)) {
			return tmpl
		}
	}
	return ""
}

func (d openAPI) pathList() []string {
	out := make([]string, 0, len(d.Paths))
	for p := range d.Paths {
		out = append(out, p)
	}
	return out
}

// checkResponse checks a response body of path/method/status against its documented schema.
func (d openAPI) checkResponse(t testing.TB, path, method, status string, body []byte) {
	t.Helper()
	op, ok := d.Paths[path][strings.ToLower(method)]
	if !ok {
		t.Errorf("%s %s is not documented", method, path)
		return
	}
	r, ok := op.Responses[status].(map[string]any)
	if !ok {
		t.Errorf("%s %s: status %s is not documented", method, path, status)
		return
	}
	content, _ := r["content"].(map[string]any)
	js, _ := content["application/json"].(map[string]any)
	if js == nil {
		return
	}
	raw, _ := json.Marshal(js["schema"])
	var s schema
	_ = json.Unmarshal(raw, &s)
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Errorf("%s %s %s: not JSON: %s", method, path, status, body)
		return
	}
	if msg := d.conforms(v, s, method+" "+path+" "+status); msg != "" {
		t.Errorf("the answer differs from docs/openapi.json: %s\n%s", msg, body)
	}
}

// TestOpenAPIDescribesTheAPI: docs/openapi.json is the document served at /api/v1/openapi.json;
// every /api/v1 route is described and every described operation is routed, asks for a bearer
// token (401 without one), names a scope the broker knows, and documents 401 and 403.
func TestOpenAPIDescribesTheAPI(t *testing.T) {
	h := newHarness(t, openSQLite(t))
	doc := loadOpenAPI(t)
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Errorf("openapi %q, want 3.1", doc.OpenAPI)
	}
	onDisk, err := os.ReadFile("../docs/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	code, served := getBody(t, http.DefaultClient, h.URL+"/api/v1/openapi.json")
	if code != 200 || served != string(onDisk) {
		t.Errorf("/api/v1/openapi.json: %d, differs from docs/openapi.json", code)
	}
	routed := map[string]bool{}
	for _, r := range h.Broker.Routes() {
		if !strings.HasPrefix(r.Path, "/api/v1/") || r.Path == "/api/v1/openapi.json" {
			continue
		}
		for _, m := range r.Methods {
			routed[strings.ToLower(m)+" "+r.Path] = true
			if _, ok := doc.Paths[r.Path][strings.ToLower(m)]; !ok {
				t.Errorf("%s %s is routed but not described in docs/openapi.json", m, r.Path)
			}
		}
	}
	for path, ops := range doc.Paths {
		for method, op := range ops {
			if !routed[method+" "+path] {
				t.Errorf("%s %s is described but not routed", method, path)
				continue
			}
			if len(op.Security) != 1 || len(op.Security[0]["diary"]) != 1 || !slices.Contains(provider.SupportedScopes, op.Security[0]["diary"][0]) {
				t.Errorf("%s %s: security %v", method, path, op.Security)
			}
			for _, s := range []string{"401", "403"} {
				if _, ok := op.Responses[s]; !ok {
					t.Errorf("%s %s: %s not documented", method, path, s)
				}
			}
			req, _ := http.NewRequest(strings.ToUpper(method), h.URL+strings.ReplaceAll(path, "{id}", "x-1"), strings.NewReader("{}"))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s %s without a token: %d, want 401", method, path, resp.StatusCode)
			}
		}
	}
}
