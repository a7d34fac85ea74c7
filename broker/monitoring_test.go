package broker_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/esia-broker/esia-broker/storage/storagetest"
)

var (
	promLabels  = regexp.MustCompile(`\{[^}]*\}`)
	promBy      = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promStrings = regexp.MustCompile(`"[^"]*"`)
	promName    = regexp.MustCompile(`\b(esia_broker_[a-z0-9_]+|go_[a-z0-9_]+|process_[a-z0-9_]+)\b`)
)

// metricsIn lists the metric names a PromQL expression reads.
func metricsIn(expr string) []string {
	e := promStrings.ReplaceAllString(promLabels.ReplaceAllString(expr, ""), "")
	e = promBy.ReplaceAllString(e, "")
	var out []string
	for _, n := range promName.FindAllString(e, -1) {
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if base, ok := strings.CutSuffix(n, suffix); ok && strings.HasSuffix(base, "_seconds") {
				n = base
			}
		}
		out = append(out, n)
	}
	return out
}

// TestMonitoringNamesExportedMetrics: every metric that the shipped alert rules and the Grafana
// dashboard query is one the broker exports, and promtool accepts the rules and their unit tests.
func TestMonitoringNamesExportedMetrics(t *testing.T) {
	h := newHarness(t, storagetest.Open(t, storagetest.NewSQLiteDSN(t)))
	exported := h.Broker.MetricNames()
	var exprs []string
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr string
			}
		}
	}
	b, err := os.ReadFile("../deploy/monitoring/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatal(err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	b, err = os.ReadFile("../deploy/monitoring/dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatal(err)
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	if len(exprs) < 20 {
		t.Fatalf("only %d expressions read", len(exprs))
	}
	seen := 0
	for _, e := range exprs {
		for _, n := range metricsIn(e) {
			seen++
			if !slices.Contains(exported, n) {
				t.Errorf("%q queries %s, which the broker does not export", e, n)
			}
		}
	}
	if seen < len(exprs) {
		t.Errorf("read %d metric names from %d expressions: the parser misses some", seen, len(exprs))
	}
	// Control: the check tells a wrong name.
	if n := metricsIn(`rate(esia_broker_no_such_total{x="y"}[5m])`); len(n) != 1 || slices.Contains(exported, n[0]) {
		t.Errorf("control: %v", n)
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		msg := "!!! promtool is not installed (Debian package prometheus): alert rule checks NOT RUN"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + "; under CI=true this is a failure")
		}
		t.Skip(msg)
	}
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = "../deploy/monitoring"
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
