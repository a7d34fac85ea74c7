package storage

import (
	"context"
	"fmt"
	"sort"
	"strings"
)

// SecretsDifferError is returned when a process runs with other secrets than the database was
// first used with.
type SecretsDifferError struct {
	// Names are the secrets' configuration keys, e.g. secrets.snils_pepper.
	Names []string
}

func (e *SecretsDifferError) Error() string {
	return fmt.Sprintf("%s: not the secret(s) this database was first used with; refusing to run, nothing was written. "+
		"Use the secrets the server runs with (a changed secrets.snils_pepper or secrets.master_key makes every stored SNILS digest, invite code and signing key useless); "+
		"a secrets.cookie_key or secrets.token_key changed on purpose is accepted with `esia-broker secrets accept`", strings.Join(e.Names, ", "))
}

// VerifySecrets checks the fingerprints of the secrets (CheckSecretFingerprints) and returns a
// *SecretsDifferError when any differs.
func (s *Store) VerifySecrets(ctx context.Context, fingerprints map[string]string) error {
	differ, err := s.CheckSecretFingerprints(ctx, fingerprints)
	if err != nil {
		return err
	}
	if len(differ) > 0 {
		return &SecretsDifferError{Names: differ}
	}
	return nil
}

// CheckSecretFingerprints records the fingerprint of every named secret the database holds
// none for (the first use of a database), then returns, sorted, the names whose recorded
// fingerprint differs from the one given: the caller runs with other secrets than the data was
// written with.
func (s *Store) CheckSecretFingerprints(ctx context.Context, fingerprints map[string]string) ([]string, error) {
	names := make([]string, 0, len(fingerprints))
	for n := range fingerprints {
		names = append(names, n)
	}
	sort.Strings(names)
	now := s.clock()
	var differ []string
	// One transaction, names in one order: of two processes first started at once with
	// different secrets, one records all of its fingerprints and the other is refused (never a
	// mix that fits neither).
	err := s.InTx(ctx, func(ctx context.Context) error {
		differ = differ[:0]
		for _, n := range names {
			if _, err := s.exec(ctx, `INSERT INTO secret_fingerprints (name, fingerprint, recorded_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`, n, fingerprints[n], now); err != nil {
				return fmt.Errorf("record secret fingerprint: %w", err)
			}
			var got string
			if err := s.get(ctx, &got, `SELECT fingerprint FROM secret_fingerprints WHERE name = ?`, n); err != nil {
				return fmt.Errorf("read secret fingerprint: %w", err)
			}
			if got != fingerprints[n] {
				differ = append(differ, n)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return differ, nil
}

// ReplaceSecretFingerprint records a secret's new fingerprint after a deliberate rotation.
func (s *Store) ReplaceSecretFingerprint(ctx context.Context, name, fingerprint string) error {
	_, err := s.exec(ctx, `INSERT INTO secret_fingerprints (name, fingerprint, recorded_at) VALUES (?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET fingerprint = excluded.fingerprint, recorded_at = excluded.recorded_at`, name, fingerprint, s.clock())
	if err != nil {
		return fmt.Errorf("replace secret fingerprint: %w", err)
	}
	return nil
}
