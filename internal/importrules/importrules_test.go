// Package importrules holds the test of the module's import rules: which package may depend on
// which, transitively (go list -deps).
package importrules

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/esia-broker/esia-broker/"

// allowed lists, for each package, the module's packages it may depend on (transitively, test
// files excluded). A package not listed may not be a dependency of anything but the commands.
var allowed = map[string][]string{
	"clientip":          {},
	"config":            {},
	"migrations":        {},
	"docs":              {},
	"esia/gost":         {},
	"esia":              {"esia/gost"},
	"esia/esiatest":     {"esia", "esia/gost"},
	"storage":           {"migrations"},
	"invites":           {"storage", "migrations"},
	"passwords":         {},
	"regionimport":      {"linking", "passwords", "storage", "migrations", "invites", "clientip"},
	"linking":           {"storage", "migrations", "invites", "clientip", "passwords"},
	"upstream":          {},
	"upstream/esiaconn": {"upstream", "esia", "esia/gost"},
	"upstream/oidcconn": {"upstream"},
	"broker/devrp":      {},
	// The broker's areas: plumbing and pages below, the provider above them, the browser's
	// flow and the account pages above it, the API beside them; none reaches sideways.
	"pages":   {"storage", "migrations", "upstream"},
	"signing": {"storage", "migrations"},
	"web":     {"clientip", "config", "esia", "esia/gost", "pages", "storage", "migrations", "upstream"},
	"provider": {"clientip", "config", "esia", "esia/gost", "invites", "linking", "passwords", "pages", "signing", "storage", "migrations",
		"upstream", "web"},
	"flow": {"clientip", "config", "esia", "esia/gost", "invites", "linking", "passwords", "pages", "provider", "signing", "storage", "migrations",
		"upstream", "web"},
	"account": {"clientip", "config", "esia", "esia/gost", "flow", "invites", "linking", "passwords", "pages", "provider", "signing", "storage",
		"migrations", "upstream", "web"},
	"api": {"clientip", "config", "docs", "esia", "esia/gost", "invites", "linking", "passwords", "pages", "provider", "signing", "storage",
		"migrations", "upstream", "web"},
	"backchannel": {"clientip", "config", "esia", "esia/gost", "invites", "linking", "passwords", "pages", "provider", "signing", "storage",
		"migrations", "upstream", "web"},
	"broker": {"account", "api", "backchannel", "clientip", "config", "docs", "esia", "esia/gost", "flow", "invites", "linking", "pages",
		"passwords", "provider", "signing", "storage", "migrations", "upstream", "upstream/esiaconn", "upstream/oidcconn", "web"},
	"connectors":          {"config", "esia", "esia/gost", "upstream", "upstream/esiaconn", "upstream/oidcconn"},
	"internal/devenv":     {"clientip", "config", "esia", "esia/esiatest", "esia/gost", "invites", "linking", "migrations", "passwords", "storage"},
	"internal/ops":        {"clientip", "config", "esia", "esia/gost", "migrations", "pages", "storage", "upstream", "web"},
	"storage/storagetest": {"storage", "migrations", "internal/testwait"},
	"internal/testwait":   {},
	"cmd/esia-loadgen":    {"esia", "esia/gost", "esia/esiatest"},
	"cmd/esia-broker": {"broker", "broker/devrp", "clientip", "config", "docs", "esia", "esia/gost", "esia/esiatest",
		"invites", "linking", "passwords", "regionimport", "storage", "migrations", "upstream", "upstream/esiaconn", "upstream/oidcconn",
		"account", "api", "backchannel", "flow", "pages", "provider", "signing", "web", "connectors", "internal/devenv", "internal/ops"},
}

func TestImportRules(t *testing.T) {
	// One line per package: its path, then every package it depends on, transitively.
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Deps \" \"}}", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	seen := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		name := strings.TrimPrefix(fields[0], module)
		if name == "internal/importrules" {
			continue
		}
		seen++
		may, ok := allowed[name]
		if !ok {
			t.Errorf("package %s has no import rule: add it to allowed", name)
			continue
		}
		for _, d := range fields[1:] {
			dn, inModule := strings.CutPrefix(d, module)
			if inModule && !slices.Contains(may, dn) {
				t.Errorf("%s depends on %s, which its rule does not allow", name, dn)
			}
		}
	}
	if seen < len(allowed) {
		t.Errorf("go list gave %d packages, the rules name %d: a rule for a package that is gone?", seen, len(allowed))
	}
}
