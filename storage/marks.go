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
		var n int
		if err := s.get(ctx, &n, `SELECT COUNT(*) FROM database_marks WHERE name = 'dev'`); err != nil {
			return fmt.Errorf("read database marks: %w", err)
		}
		if n > 0 {
			return nil
		}
		empty, err := s.IsEmpty(ctx)
		if err != nil {
			return err
		}
		if !empty {
			return ErrNotDevDatabase
		}
		if _, err := s.exec(ctx, `INSERT INTO database_marks (name, recorded_at) VALUES ('dev', ?) ON CONFLICT (name) DO NOTHING`, s.clock()); err != nil {
			return fmt.Errorf("mark the database as the dev server's: %w", err)
		}
		return nil
	})
}
