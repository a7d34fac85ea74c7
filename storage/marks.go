package storage

import (
	"context"
	"errors"
	"fmt"
)

// ErrNotDevDatabase is returned by ClaimForDev for a database that holds data the dev server did
// not create.
var ErrNotDevDatabase = errors.New("this database holds data the dev server did not create: the dev server writes demo clients, schools and invite codes, so it runs only on a database it created (an empty one, or one it ran on before); use `esia-broker serve` for this one, or give dev another database")

// ClaimForDev marks an empty database as the dev server's and accepts one already marked; it
// refuses (ErrNotDevDatabase) a database in use that is not, and writes nothing then.
func (s *Store) ClaimForDev(ctx context.Context) error {
	return s.InTx(ctx, func(ctx context.Context) error {
		ok, err := s.DevCandidate(ctx)
		if err != nil {
			return err
		}
		if !ok {
			return ErrNotDevDatabase
		}
		if _, err := s.exec(ctx, `INSERT INTO database_marks (name, recorded_at) VALUES ('dev', ?) ON CONFLICT (name) DO NOTHING`, s.clock()); err != nil {
			return fmt.Errorf("mark the database as the dev server's: %w", err)
		}
		return nil
	})
}

// DevCandidate tells, writing nothing (not even a schema), whether the dev server may run on the
// database: one it marked, one from before marks that carries its demo relying party, or one
// nobody has used — no schema yet, or no data and no secret recorded. A database whose
// fingerprints another process recorded (an admin command with the server's secrets) is not.
func (s *Store) DevCandidate(ctx context.Context) (bool, error) {
	has := func(table string) (bool, error) { return s.tableExists(ctx, table) }
	count := func(q string) (int, error) {
		var n int
		err := s.get(ctx, &n, q)
		return n, err
	}
	if ok, err := has("schema_migrations"); err != nil || !ok {
		return err == nil, err
	}
	if n, err := count(`SELECT COUNT(*) FROM schema_migrations`); err != nil || n == 0 {
		return err == nil, err
	}
	if ok, err := has("database_marks"); err != nil {
		return false, err
	} else if ok {
		if n, err := count(`SELECT COUNT(*) FROM database_marks WHERE name = 'dev'`); err != nil || n > 0 {
			return err == nil, err
		}
	} else if ok, err := has("clients"); err != nil {
		return false, err
	} else if ok {
		if n, err := count(`SELECT COUNT(*) FROM clients WHERE id = 'demo-diary'`); err != nil || n > 0 {
			return err == nil, err
		}
	}
	if ok, err := has("secret_fingerprints"); err != nil {
		return false, err
	} else if ok {
		if n, err := count(`SELECT COUNT(*) FROM secret_fingerprints`); err != nil || n > 0 {
			return false, err
		}
	}
	for _, t := range dataTables() {
		ok, err := has(t)
		if err != nil {
			return false, err
		}
		if !ok {
			continue
		}
		if n, err := count(`SELECT COUNT(*) FROM (SELECT 1 FROM ` + t + ` LIMIT 1) AS t`); err != nil || n > 0 {
			return false, err
		}
	}
	return true, nil
}
