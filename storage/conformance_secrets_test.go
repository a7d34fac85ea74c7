package storage_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/esia-broker/esia-broker/storage"
)

// testSecretFingerprints: on an empty database the first caller records its fingerprints and
// later callers learn which of theirs differ; 50 processes first started at once with two
// different sets of secrets leave one set recorded whole (never a mix), and exactly that set's
// callers pass. A database that holds data records nothing unless told the secrets are proven.
func testSecretFingerprints(t *testing.T, s *storage.Store) {
	ctx := context.Background()
	a := map[string]string{"secrets.cookie_key": "a1", "secrets.master_key": "a2", "secrets.snils_pepper": "a3", "secrets.token_key": "a4"}
	b := map[string]string{"secrets.cookie_key": "b1", "secrets.master_key": "b2", "secrets.snils_pepper": "b3", "secrets.token_key": "b4"}
	all := []string{"secrets.cookie_key", "secrets.master_key", "secrets.snils_pepper", "secrets.token_key"}

	var un *storage.SecretsUnrecordedError
	if err := s.VerifySecrets(ctx, a, storage.RecordNever); !errors.As(err, &un) || !slices.Equal(un.Names, all) {
		t.Fatalf("RecordNever on an empty database: %v; want every secret unrecorded", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 50)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fp := a
			if i%2 == 1 {
				fp = b
			}
			errs[i] = s.VerifySecrets(ctx, fp, storage.RecordWhenEmpty)
		}()
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		var de *storage.SecretsDifferError
		switch {
		case err == nil:
			if winner >= 0 && winner != i%2 {
				t.Fatalf("both sets of secrets passed")
			}
			winner = i % 2
		case !errors.As(err, &de):
			t.Fatalf("caller %d: %v", i, err)
		case !slices.Equal(de.Names, all):
			t.Fatalf("caller %d: a mix was recorded, differing: %v", i, de.Names)
		}
	}
	if winner < 0 {
		t.Fatal("no set of secrets was recorded whole")
	}
	for i, err := range errs {
		if (err == nil) != (i%2 == winner) {
			t.Errorf("caller %d (set %d) got %v; set %d won", i, i%2, err, winner)
		}
	}
	won, lost := a, b
	if winner == 1 {
		won, lost = b, a
	}
	var de *storage.SecretsDifferError
	if err := s.VerifySecrets(ctx, lost, storage.RecordMissing); !errors.As(err, &de) || !slices.Equal(de.Names, all) {
		t.Errorf("the other set: %v", err)
	}
	changed := map[string]string{}
	for k, v := range won {
		changed[k] = v
	}
	changed["secrets.cookie_key"] = "new"
	if err := s.VerifySecrets(ctx, changed, storage.RecordNever); !errors.As(err, &de) || !slices.Equal(de.Names, []string{"secrets.cookie_key"}) {
		t.Errorf("one changed key: %v", err)
	}
	must(t, s.ReplaceSecretFingerprint(ctx, "secrets.cookie_key", "new"))
	must(t, s.VerifySecrets(ctx, changed, storage.RecordNever))
	if err := s.VerifySecrets(ctx, won, storage.RecordNever); err == nil {
		t.Error("the replaced cookie key still passes")
	}

	// A secret added later (or a database upgraded from before fingerprints) that already holds
	// data: recorded only when the caller has proven its secrets.
	changed["secrets.new_key"] = "n1"
	if empty, err := s.IsEmpty(ctx); err != nil || !empty {
		t.Fatalf("IsEmpty = %v, %v before any data", empty, err)
	}
	mustClient(t, s, "rp-secrets")
	if empty, err := s.IsEmpty(ctx); err != nil || empty {
		t.Fatalf("IsEmpty = %v, %v with a client", empty, err)
	}
	for _, rec := range []storage.SecretRecording{storage.RecordNever, storage.RecordWhenEmpty} {
		if err := s.VerifySecrets(ctx, changed, rec); !errors.As(err, &un) || !slices.Equal(un.Names, []string{"secrets.new_key"}) {
			t.Errorf("recording %d on a database in use: %v; want secrets.new_key unrecorded", rec, err)
		}
	}
	must(t, s.VerifySecrets(ctx, changed, storage.RecordMissing))
	must(t, s.VerifySecrets(ctx, changed, storage.RecordNever))
}
