package main

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"testing"

	"github.com/esia-broker/esia-broker/esia/esiatest"
	"github.com/esia-broker/esia-broker/linking"
)

func TestRegionMatchesThePopulation(t *testing.T) {
	dir := t.TempDir()
	if err := region([]string{"-schools", "3", "-students", "50", "-population", "20", "-out", dir}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(dir, "roster.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rows, err := csv.NewReader(f).ReadAll()
	if err != nil || len(rows) != 51 {
		t.Fatalf("%d rows, %v", len(rows), err)
	}
	for i, r := range rows[1:] {
		want := esiatest.PopulationPersona(i % 20).SNILS
		if r[9] != want {
			t.Fatalf("row %d guardian %s, want the population's %s", i, r[9], want)
		}
		if _, err := linking.NormalizeSNILS(r[9]); err != nil {
			t.Fatalf("row %d: invalid SNILS %s: %v", i, r[9], err)
		}
	}
	sf, err := os.Open(filepath.Join(dir, "schools.csv"))
	if err != nil {
		t.Fatal(err)
	}
	defer sf.Close()
	if got, _ := csv.NewReader(sf).ReadAll(); len(got) != 3 {
		t.Errorf("%d schools", len(got))
	}
}
