package broker_test

import (
	"strings"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/web"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"golang.org/x/oauth2"
)

// TestLoginTrace: with a tracer, the ESIA callback of one login is one request span with the
// ESIA calls (token, person) and the SQL statements under it; every span carries no personal
// data, and the request's span carries the request id.
func TestLoginTrace(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(web.RequestIDProcessor{}), sdktrace.WithSpanProcessor(rec))
	conns, _ := esiaUpstream(t, "", 5*time.Second)
	h := startHarness(t, openSQLite(t), "", conns, tp)
	h.client("kiasuo", "secret-secret-secret")
	r := newRP(t, h, "kiasuo", "secret-secret-secret")
	br := newBrowser(t)
	u := startESIA(t, h, br, r.conf.AuthCodeURL("state-12345678", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())))
	if resp, body := choosePersona(t, br, u, "parent-two-kids"); resp.StatusCode/100 != 3 {
		t.Fatalf("login: %d %s", resp.StatusCode, body)
	}
	spans := rec.Ended()
	var callback sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == "http GET /esia/callback" {
			callback = s
		}
	}
	if callback == nil {
		var names []string
		for _, s := range spans {
			names = append(names, s.Name())
		}
		t.Fatalf("no span of the callback request among %v", names)
	}
	reqID := ""
	for _, a := range callback.Attributes() {
		if a.Key == "request.id" {
			reqID = a.Value.AsString()
		}
	}
	if len(reqID) < 8 {
		t.Errorf("the request span has no request id: %v", callback.Attributes())
	}
	// Everything under the callback's span, by walking parents.
	byID := map[string]sdktrace.ReadOnlySpan{}
	for _, s := range spans {
		byID[s.SpanContext().SpanID().String()] = s
	}
	under := func(s sdktrace.ReadOnlySpan) bool {
		for p := s.Parent(); p.IsValid(); {
			if p.SpanID() == callback.SpanContext().SpanID() {
				return true
			}
			ps, ok := byID[p.SpanID().String()]
			if !ok {
				return false
			}
			p = ps.Parent()
		}
		return false
	}
	count := map[string]int{}
	for _, s := range spans {
		if s.SpanContext().TraceID() == callback.SpanContext().TraceID() && under(s) {
			count[strings.SplitN(s.Name(), " ", 2)[0]+" "+strings.SplitN(s.Name()+" ", " ", 3)[1]]++
			id := ""
			for _, a := range s.Attributes() {
				if a.Key == "request.id" {
					id = a.Value.AsString()
				}
			}
			if id != reqID {
				t.Errorf("span %s has request id %q, want the request's %q", s.Name(), id, reqID)
			}
		}
	}
	if count["esia token"] != 1 || count["esia person"] != 1 || count["sql SELECT"] < 2 || count["sql transaction"] < 1 {
		t.Errorf("spans under the callback: %v", count)
	}
	for _, s := range spans {
		for _, a := range s.Attributes() {
			v := a.Value.String()
			for _, personal := range []string{"Иванова", "112-233-445", "1000300001", "04.03.1985", "1985-03-04", "code="} {
				if strings.Contains(v, personal) {
					t.Errorf("span %s attribute %s holds %q", s.Name(), a.Key, personal)
				}
			}
		}
	}
}
