package broker_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/esia-broker/esia-broker/esia"
)

// scrape reads the broker's metrics as series → value.
func scrape(t *testing.T, h *harness) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	h.Broker.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	out := map[string]float64{}
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

var seriesLabels = regexp.MustCompile(`(\w+)="([^"]*)"`)

// TestOperatorMetrics drives scripted logins — successes, an unconfirmed account, a wrong code,
// an invite lock-out — and finds each counted under the right labels, the runtime, process,
// pool and build metrics present, and every label value of the broker's own metrics inside
// its fixed set.
func TestOperatorMetrics(t *testing.T) {
	s := openSQLite(t)
	e := newLinkEnv(t, s, "ESIA_BROKER_LIMITS_INVITE_FAILURES_PER_ACCOUNT=2")
	br := newBrowser(t)
	e.tokens(t, e.esiaLogin(t, br, "parent-two-kids", nil, e.acceptAll(t, br)))
	res := e.esiaLogin(t, newBrowser(t), "unconfirmed", nil, func(string, *http.Response) *http.Response { return nil })
	if res.final.StatusCode != http.StatusForbidden {
		t.Fatalf("unconfirmed: %d", res.final.StatusCode)
	}
	// A parent with no match types wrong codes until locked out.
	nomatch := newBrowser(t)
	var codePage string
	e.esiaLogin(t, nomatch, "parent-no-match", nil, func(body string, resp *http.Response) *http.Response {
		if title(body) == "Выберите роль" {
			lid := regexp.MustCompile(`login=([0-9a-f-]+)`).FindStringSubmatch(body)[1]
			r, _ := nomatch.Get(e.h.URL + "/link/code?role=parent&login=" + lid)
			return r
		}
		codePage = body
		return nil
	})
	for range 3 {
		resp := e.post(t, nomatch, "/link/code", codePage, url.Values{"role": {"parent"}, "code": {"WRNG-WRNG-WRNG"}})
		resp.Body.Close()
	}
	// A parent cancels at ESIA (forged here on the redirect back, as a browser could), with free
	// text in the description: counted by code as a cancel, and the text never reaches the log.
	cancel := newBrowser(t)
	u := startESIA(t, e.h, cancel, e.rp.conf.AuthCodeURL("state-cancel-1", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	q := url.Values{"state": {u.Query().Get("state")}, "error": {"access_denied"}, "error_description": {"ESIA-007004: Иванов Пётр 112-233-445 95"}}
	if code, _ := getBody(t, cancel.Client, e.h.URL+"/esia/callback?"+q.Encode()); code != http.StatusBadRequest {
		t.Errorf("cancel: %d", code)
	}
	if logs := e.h.Logs.String(); strings.Contains(logs, "Иванов Пётр") || strings.Contains(logs, "112-233-445") {
		t.Errorf("the callback's free text reached the log: %s", logs)
	}
	m := scrape(t, e.h)
	for series, min := range map[string]float64{
		`esia_broker_logins_total{connector="esia",result="ok"}`:                         1,
		`esia_broker_logins_total{connector="esia",result="unconfirmed"}`:                1,
		`esia_broker_logins_total{connector="esia",result="cancelled"}`:                  1,
		`esia_broker_upstream_callback_errors_total{code="ESIA-007004",upstream="esia"}`: 1,
		`esia_broker_ready`: 1,
		`esia_broker_links_total{change="added",method="snils"}`:                                    2,
		`esia_broker_consents_total{result="shown"}`:                                                1,
		`esia_broker_consents_total{result="given"}`:                                                1,
		`esia_broker_tokens_issued_total{client="kiasuo",grant="authorization_code"}`:               1,
		`esia_broker_invite_redemptions_total{result="wrong_code"}`:                                 1,
		`esia_broker_invite_redemptions_total{result="locked"}`:                                     1,
		`esia_broker_lockouts_total{kind="invite"}`:                                                 1,
		`esia_broker_upstream_requests_total{call="authorize",code="",result="ok",upstream="esia"}`: 3,
		`esia_broker_upstream_requests_total{call="token",code="",result="ok",upstream="esia"}`:     3,
		`esia_broker_upstream_requests_total{call="person",code="",result="ok",upstream="esia"}`:    3,
		`esia_broker_upstream_request_duration_seconds_count{call="token",upstream="esia"}`:         3,
		`go_goroutines`:                       1,
		`process_resident_memory_bytes`:       1,
		`esia_broker_db_max_open_connections`: 1,
		`esia_broker_db_open_connections`:     1,
	} {
		if m[series] < min {
			t.Errorf("%s = %v, want at least %v", series, m[series], min)
		}
	}
	build := false
	for series := range m {
		build = build || strings.HasPrefix(series, "esia_broker_build_info{")
	}
	if !build {
		t.Error("no esia_broker_build_info")
	}
	checkBoundedLabels(t, m)
	// The refused unconfirmed login's line names the request and the upstream, not the person.
	line := logLine(t, e.h.Logs.String(), `"msg":"request refused","request_id"`)
	if !strings.Contains(line, `"upstream":"esia"`) || !strings.Contains(line, `"status":403`) {
		t.Errorf("refused login's log line: %s", line)
	}
	for _, personal := range []string{"Сидорова", "Анна", "456-789-012", "02.02.1990", "1990-02-02"} {
		if strings.Contains(e.h.Logs.String(), personal) {
			t.Errorf("the log holds personal data %q", personal)
		}
	}

	// ESIA answering 500 at the token endpoint: counted as http_5xx; an ESIA error with its code.
	for _, tc := range []struct {
		handler http.HandlerFunc
		series  string
	}{
		{func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", 500) }, `esia_broker_upstream_requests_total{call="token",code="",result="http_5xx",upstream="esia"}`},
		{func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(400)
			w.Write([]byte(`{"error":"invalid_grant","error_description":"ESIA-007011: expired"}`))
		}, `esia_broker_upstream_requests_total{call="token",code="ESIA-007011",result="esia_error",upstream="esia"}`},
		{func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(400)
			w.Write([]byte(`{"error":"x","error_description":"ESIA-123456: new"}`))
		}, `esia_broker_upstream_requests_total{call="token",code="other",result="esia_error",upstream="esia"}`},
	} {
		fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, "/v2/ac") {
				back, _ := url.Parse(r.URL.Query().Get("redirect_uri"))
				back.RawQuery = url.Values{"code": {"c0de"}, "state": {r.URL.Query().Get("state")}}.Encode()
				http.Redirect(w, r, back.String(), http.StatusFound)
				return
			}
			tc.handler(w, r)
		}))
		conns, _ := esiaUpstream(t, fake.URL, 2*time.Second)
		h, r := kiasuoOn(t, openSQLite(t), conns)
		b := newBrowser(t)
		u := startESIA(t, h, b, r.conf.AuthCodeURL("state-12345678", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
		_, _ = getBody(t, b.Client, u.String())
		fake.Close()
		if got := scrape(t, h)[tc.series]; got < 1 {
			t.Errorf("%s = %v", tc.series, got)
		}
		// The failed login's log line: request id, upstream and ESIA's code.
		if code := seriesLabels.FindAllStringSubmatch(tc.series, -1)[1][2]; code != "" && code != "other" {
			line := logLine(t, h.Logs.String(), `"msg":"request refused"`)
			for _, want := range []string{`"request_id":"`, `"upstream":"esia"`, `"esia_code":"` + code + `"`} {
				if !strings.Contains(line, want) {
					t.Errorf("the failed login's log line lacks %s: %s", want, line)
				}
			}
		}
	}
}

// checkBoundedLabels fails on a label value of the broker's metrics outside its fixed set.
func checkBoundedLabels(t *testing.T, m map[string]float64) {
	t.Helper()
	codes := map[string]bool{"": true, "other": true}
	for _, c := range esia.Codes() {
		codes[c.Code] = true
	}
	allowed := map[string]func(v string) bool{
		"connector": func(v string) bool { return v == "esia" || v == "oidc" || v == "child" },
		"upstream":  func(v string) bool { return v == "esia" || v == "oidc" },
		"call": func(v string) bool {
			return strings.Contains(" authorize token person contacts kids probe ", " "+v+" ")
		},
		"result": func(v string) bool { return regexp.MustCompile(`^[a-z_0-9]{1,20}$`).MatchString(v) },
		"method": func(v string) bool { return v == "snils" || v == "invite" || v == "diary" },
		"change": func(v string) bool { return v == "added" || v == "revoked" },
		"kind":   func(v string) bool { return v == "child" || v == "invite" || v == "activation" },
		"client": func(v string) bool { return v == "kiasuo" || v == "" },
		"grant":  func(v string) bool { return regexp.MustCompile(`^[a-z_:]+$`).MatchString(v) },
		"route": func(v string) bool {
			return v == "unmatched" || strings.HasPrefix(v, "/") || regexp.MustCompile(`^[a-z_]+$`).MatchString(v)
		},
	}
	for series := range m {
		if !strings.HasPrefix(series, "esia_broker_") || strings.HasPrefix(series, "esia_broker_build_info") {
			continue
		}
		for _, kv := range seriesLabels.FindAllStringSubmatch(series, -1) {
			name, v := kv[1], kv[2]
			switch name {
			case "le", "role", "subject":
				continue
			case "code":
				if strings.HasPrefix(series, "esia_broker_http_requests_total") {
					if _, err := strconv.Atoi(v); err != nil {
						t.Errorf("%s: HTTP code %q", series, v)
					}
				} else if !codes[v] {
					t.Errorf("%s: ESIA code %q outside esia.Codes", series, v)
				}
				continue
			}
			ok, known := allowed[name]
			if !known || !ok(v) {
				t.Errorf("%s: label %s=%q outside its set", series, name, v)
			}
		}
	}
}

// logLine returns the first log line containing marker.
func logLine(t *testing.T, logs, marker string) string {
	t.Helper()
	i := strings.Index(logs, marker)
	if i < 0 {
		t.Fatalf("no log line with %s: %s", marker, logs)
	}
	start := strings.LastIndexByte(logs[:i], '\n') + 1
	end := strings.IndexByte(logs[i:], '\n')
	if end < 0 {
		return logs[start:]
	}
	return logs[start : i+end]
}
