package storage

import (
	"errors"
	"fmt"
	"testing"

	"github.com/lib/pq"
)

// TestErrorClasses: driver errors are told apart by their codes.
func TestErrorClasses(t *testing.T) {
	for _, tc := range []struct {
		name                string
		err                 error
		unique, unavailable bool
	}{
		{"pq unique", &pq.Error{Code: "23505"}, true, false},
		{"pq unique, wrapped", fmt.Errorf("create: %w", &pq.Error{Code: "23505"}), true, false},
		{"pq foreign key", &pq.Error{Code: "23503"}, false, false},
		{"pq connection failure", &pq.Error{Code: "08006"}, false, true},
		{"pq admin shutdown", &pq.Error{Code: "57P01"}, false, true},
		{"pq starting up", &pq.Error{Code: "57P03"}, false, true},
		{"pq too many connections", &pq.Error{Code: "53300"}, false, true},
		{"pq syntax", &pq.Error{Code: "42601"}, false, false},
		{"a text that reads like one", errors.New("duplicate key value violates unique constraint; the database system is shutting down"), false, false},
		{"nil", nil, false, false},
	} {
		if got := isUniqueViolation(tc.err); got != tc.unique {
			t.Errorf("%s: unique %v, want %v", tc.name, got, tc.unique)
		}
		if got := IsUnavailable(tc.err); got != tc.unavailable {
			t.Errorf("%s: unavailable %v, want %v", tc.name, got, tc.unavailable)
		}
	}

}
