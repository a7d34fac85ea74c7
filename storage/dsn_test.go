package storage

import "testing"

func TestPostgresDSN(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://u@h:5432/db?sslmode=disable", "postgres://u@h:5432/db?binary_parameters=yes&sslmode=disable"},
		{"postgresql://u:p%40ss@h/db", "postgresql://u:p%40ss@h/db?binary_parameters=yes"},
		{"postgres://u@h/db?binary_parameters=no", "postgres://u@h/db?binary_parameters=no"},
		{"postgres://u@h/db?binary_parameters=yes&sslmode=require", "postgres://u@h/db?binary_parameters=yes&sslmode=require"},
	}
	for _, tc := range tests {
		if got := postgresDSN(tc.in); got != tc.want {
			t.Errorf("postgresDSN(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
