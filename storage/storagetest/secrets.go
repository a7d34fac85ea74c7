package storagetest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/esia-broker/esia-broker/storage"
)

// testSecretFingerprints: the first caller records its fingerprints, later callers learn which
// of theirs differ; 50 processes first started at once with two different sets of secrets leave
// one set recorded whole (never a mix), and exactly that set's callers pass.
func testSecretFingerprints(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	a := map[string]string{"secrets.cookie_key": "a1", "secrets.master_key": "a2", "secrets.snils_pepper": "a3", "secrets.token_key": "a4"}
	b := map[string]string{"secrets.cookie_key": "b1", "secrets.master_key": "b2", "secrets.snils_pepper": "b3", "secrets.token_key": "b4"}
	var wg sync.WaitGroup
	results := make([][]string, 50)
	errs := make([]error, 50)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fp := a
			if i%2 == 1 {
				fp = b
			}
			results[i], errs[i] = s.CheckSecretFingerprints(ctx, fp)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	all := []string{"secrets.cookie_key", "secrets.master_key", "secrets.snils_pepper", "secrets.token_key"}
	winner := -1
	for i, r := range results {
		switch {
		case len(r) == 0:
			if winner >= 0 && winner != i%2 {
				t.Fatalf("both sets of secrets passed")
			}
			winner = i % 2
		case !slices.Equal(r, all):
			t.Fatalf("caller %d: a mix was recorded, differing: %v", i, r)
		}
	}
	if winner < 0 {
		t.Fatal("no set of secrets was recorded whole")
	}
	for i, r := range results {
		if (len(r) == 0) != (i%2 == winner) {
			t.Errorf("caller %d (set %d) got %v; set %d won", i, i%2, r, winner)
		}
	}
	won, lost := a, b
	if winner == 1 {
		won, lost = b, a
	}
	var de *storage.SecretsDifferError
	if err := s.VerifySecrets(ctx, lost); !errors.As(err, &de) || !slices.Equal(de.Names, all) {
		t.Errorf("the other set: %v", err)
	}
	changed := map[string]string{}
	for k, v := range won {
		changed[k] = v
	}
	changed["secrets.cookie_key"] = "new"
	if err := s.VerifySecrets(ctx, changed); !errors.As(err, &de) || !slices.Equal(de.Names, []string{"secrets.cookie_key"}) {
		t.Errorf("one changed key: %v", err)
	}
	must(t, s.ReplaceSecretFingerprint(ctx, "secrets.cookie_key", "new"))
	must(t, s.VerifySecrets(ctx, changed))
	if err := s.VerifySecrets(ctx, won); err == nil {
		t.Error("the replaced cookie key still passes")
	}
}
