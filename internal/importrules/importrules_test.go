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
	"broker": {"clientip", "config", "docs", "esia", "esia/gost", "invites", "linking", "passwords", "storage", "migrations",
		"upstream", "upstream/esiaconn", "upstream/oidcconn"},
	"storage/storagetest": {"storage", "migrations", "internal/testwait"},
	"internal/testwait":   {},
	"cmd/esia-loadgen":    {"esia", "esia/gost", "esia/esiatest"},
	"cmd/esia-broker": {"broker", "broker/devrp", "clientip", "config", "docs", "esia", "esia/gost", "esia/esiatest",
		"invites", "linking", "passwords", "regionimport", "storage", "migrations", "upstream", "upstream/esiaconn", "upstream/oidcconn"},
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
