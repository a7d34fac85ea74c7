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

// SecretsUnrecordedError is returned when the database already holds data but no fingerprint
// of a secret yet (a database upgraded from before fingerprints): nothing proves that the
// caller's secret is the one the data was written with.
type SecretsUnrecordedError struct {
	Names []string
}

func (e *SecretsUnrecordedError) Error() string {
	return fmt.Sprintf("%s: this database holds data but no fingerprint of the secret(s) yet, so nothing shows they are the ones the data was written with; refusing to run, nothing was written. "+
		"Start `esia-broker serve` once with the server's configuration: it records them after it has decrypted the signing keys", strings.Join(e.Names, ", "))
}

// SecretRecording says whether VerifySecrets may record the fingerprint of a secret the
// database holds none for.
type SecretRecording int

const (
	// RecordNever only compares: a missing fingerprint is a *SecretsUnrecordedError.
	RecordNever SecretRecording = iota
	// RecordWhenEmpty records missing fingerprints on a database that holds no data yet (its
	// first use); on one that does, a missing fingerprint is a *SecretsUnrecordedError.
	RecordWhenEmpty
	// RecordMissing records every missing fingerprint. Only for a caller that has shown its
	// secrets fit the data: the server, once it has decrypted the signing keys.
	RecordMissing
)

// dataTables hold what the broker writes with its secrets or for its users: a database with a
// row in any of them is in use.
func dataTables() []string {
	return []string{"signing_keys", "clients", "schools", "students", "invites", "accounts", "links"}
}

// IsEmpty tells whether the database holds no data yet: no row in the tables that hold what the
// broker writes with its secrets or for its users (only its schema, perhaps fingerprints and
// rate counters).
func (s *Store) IsEmpty(ctx context.Context) (bool, error) {
	for _, t := range dataTables() {
		var n int
		if err := s.get(ctx, &n, `SELECT COUNT(*) FROM (SELECT 1 FROM `+t+` LIMIT 1) AS t`); err != nil {
			return false, fmt.Errorf("check whether %s is empty: %w", t, err)
		}
		if n > 0 {
			return false, nil
		}
	}
	return true, nil
}

// VerifySecrets compares the fingerprints of the caller's secrets with those recorded at the
// database's first use and returns a *SecretsDifferError naming those that differ. A secret
// with no recorded fingerprint is recorded as rec allows, otherwise it is a
// *SecretsUnrecordedError. Everything is read, and recorded, in one transaction, names in one
// order: of two processes first started at once with different secrets, one records all of its
// fingerprints and the other is refused (never a mix that fits neither). A recorded fingerprint
// equal to the secret's legacy one (v1, recorded by earlier releases) matches too, and is left
// as it is, so that a replica still on an earlier release keeps working.
func (s *Store) VerifySecrets(ctx context.Context, fingerprints map[string]string, rec SecretRecording, legacy ...map[string]string) error {
	names := make([]string, 0, len(fingerprints))
	for n := range fingerprints {
		names = append(names, n)
	}
	sort.Strings(names)
	now := s.clock()
	var differ, unrecorded []string
	err := s.InTx(ctx, func(ctx context.Context) error {
		differ, unrecorded = differ[:0], unrecorded[:0]
		record := rec == RecordMissing
		if rec == RecordWhenEmpty {
			empty, err := s.IsEmpty(ctx)
			if err != nil {
				return err
			}
			record = empty
		}
		for _, n := range names {
			if record {
				if _, err := s.exec(ctx, `INSERT INTO secret_fingerprints (name, fingerprint, recorded_at) VALUES (?, ?, ?) ON CONFLICT (name) DO NOTHING`, n, fingerprints[n], now); err != nil {
					return fmt.Errorf("record secret fingerprint: %w", err)
				}
			}
			var got []string
			if err := s.selectAll(ctx, &got, `SELECT fingerprint FROM secret_fingerprints WHERE name = ?`, n); err != nil {
				return fmt.Errorf("read secret fingerprint: %w", err)
			}
			switch {
			case len(got) == 0:
				unrecorded = append(unrecorded, n)
			case !fingerprintMatches(got[0], n, fingerprints, legacy):
				differ = append(differ, n)
			}
		}
		return nil
	})
	switch {
	case err != nil:
		return err
	case len(differ) > 0:
		return &SecretsDifferError{Names: differ}
	case len(unrecorded) > 0:
		return &SecretsUnrecordedError{Names: unrecorded}
	}
	return nil
}

func fingerprintMatches(recorded, name string, current map[string]string, legacy []map[string]string) bool {
	if recorded == current[name] {
		return true
	}
	for _, l := range legacy {
		if v, ok := l[name]; ok && recorded == v {
			return true
		}
	}
	return false
}

// CheckRecordedSecrets compares the secrets with the fingerprints the database holds, if it
// holds any, and writes nothing, not even a schema: serve and dev ask it before they migrate, so
// that a process with other secrets changes nothing. Only a differing secret is an error
// (*SecretsDifferError); one not recorded is left to VerifySecrets.
func (s *Store) CheckRecordedSecrets(ctx context.Context, fingerprints map[string]string, legacy ...map[string]string) error {
	ok, err := s.tableExists(ctx, "secret_fingerprints")
	if err != nil || !ok {
		return err
	}
	var rows []struct {
		Name        string `db:"name"`
		Fingerprint string `db:"fingerprint"`
	}
	if err := s.db.SelectContext(ctx, &rows, `SELECT name, fingerprint FROM secret_fingerprints ORDER BY name`); err != nil {
		return fmt.Errorf("read secret fingerprints: %w", err)
	}
	var differ []string
	for _, r := range rows {
		if _, ours := fingerprints[r.Name]; ours && !fingerprintMatches(r.Fingerprint, r.Name, fingerprints, legacy) {
			differ = append(differ, r.Name)
		}
	}
	if len(differ) > 0 {
		return &SecretsDifferError{Names: differ}
	}
	return nil
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
