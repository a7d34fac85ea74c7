package storage

import (
	"context"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/esia-broker/esia-broker/migrations"
)

// Migration is one schema step and whether it has been applied.
type Migration struct {
	Version string
	Applied bool
}

func (s *Store) migrationFiles() (fs.FS, []string, error) {
	var fsys fs.FS
	var err error
	switch s.dialect {
	case Postgres:
		fsys, err = fs.Sub(migrations.Postgres, "postgres")
	default:
		fsys, err = fs.Sub(migrations.SQLite, "sqlite")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read embedded migrations: %w", err)
	}
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, nil, fmt.Errorf("list embedded migrations: %w", err)
	}
	sort.Strings(names)
	return fsys, names, nil
}

func (s *Store) ensureMigrationTable(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, applied_at TIMESTAMP NOT NULL)`)
	if err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	return nil
}

// tableExists tells whether the database has the table (read only).
func (s *Store) tableExists(ctx context.Context, name string) (bool, error) {
	var n int
	q := `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?`
	if s.dialect == Postgres {
		q = `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = ?`
	}
	if err := s.db.GetContext(ctx, &n, s.db.Rebind(q), name); err != nil {
		return false, fmt.Errorf("look for table %s: %w", name, err)
	}
	return n > 0, nil
}

// MigrationStatus lists every embedded migration and whether it is applied. It only reads: a
// database without schema_migrations has none applied.
func (s *Store) MigrationStatus(ctx context.Context) ([]Migration, error) {
	_, names, err := s.migrationFiles()
	if err != nil {
		return nil, err
	}
	var applied []string
	if ok, err := s.tableExists(ctx, "schema_migrations"); err != nil {
		return nil, err
	} else if ok {
		if err := s.db.SelectContext(ctx, &applied, `SELECT version FROM schema_migrations`); err != nil {
			return nil, fmt.Errorf("read schema_migrations: %w", err)
		}
	}
	done := map[string]bool{}
	for _, v := range applied {
		done[v] = true
	}
	out := make([]Migration, 0, len(names))
	for _, n := range names {
		v := strings.TrimSuffix(n, ".sql")
		out = append(out, Migration{Version: v, Applied: done[v]})
	}
	return out, nil
}

// Migrate applies every pending migration, each in its own transaction, and returns the
// versions it applied. On PostgreSQL an advisory lock keeps two replicas from migrating at once.
func (s *Store) Migrate(ctx context.Context) ([]string, error) {
	if s.dialect == Postgres {
		conn, err := s.db.Connx(ctx)
		if err != nil {
			return nil, fmt.Errorf("migrate: %w", err)
		}
		defer conn.Close()
		const lockID = 0x65736961 // "esia"
		if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, lockID); err != nil {
			return nil, fmt.Errorf("migrate: take advisory lock: %w", err)
		}
		defer func() { _, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, lockID) }()
	}
	if err := s.ensureMigrationTable(ctx); err != nil {
		return nil, err
	}
	status, err := s.MigrationStatus(ctx)
	if err != nil {
		return nil, err
	}
	fsys, _, err := s.migrationFiles()
	if err != nil {
		return nil, err
	}
	var applied []string
	for _, m := range status {
		if m.Applied {
			continue
		}
		body, err := fs.ReadFile(fsys, m.Version+".sql")
		if err != nil {
			return applied, fmt.Errorf("read migration %s: %w", m.Version, err)
		}
		err = s.InTx(ctx, func(ctx context.Context) error {
			if _, err := s.q(ctx).ExecContext(ctx, string(body)); err != nil {
				return fmt.Errorf("apply migration %s: %w", m.Version, err)
			}
			if _, err := s.exec(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)`, m.Version, s.clock()); err != nil {
				return fmt.Errorf("record migration %s: %w", m.Version, err)
			}
			return nil
		})
		if err != nil {
			return applied, err
		}
		applied = append(applied, m.Version)
	}
	return applied, nil
}

// MigrationsCurrent tells whether every embedded migration is applied.
func (s *Store) MigrationsCurrent(ctx context.Context) (bool, error) {
	st, err := s.MigrationStatus(ctx)
	if err != nil {
		return false, err
	}
	for _, m := range st {
		if !m.Applied {
			return false, nil
		}
	}
	return true, nil
}

// RunExclusive runs fn unless another process holds the job's lock: on PostgreSQL a session
// advisory lock (so among several replicas one does the work), on SQLite — a single node — fn
// always runs. It tells whether fn ran.
func (s *Store) RunExclusive(ctx context.Context, job int64, fn func(ctx context.Context) error) (bool, error) {
	if s.dialect != Postgres {
		return true, fn(ctx)
	}
	conn, err := s.db.Connx(ctx)
	if err != nil {
		return false, fmt.Errorf("exclusive job %d: %w", job, err)
	}
	defer conn.Close()
	var got bool
	if err := conn.GetContext(ctx, &got, `SELECT pg_try_advisory_lock($1)`, job); err != nil {
		return false, fmt.Errorf("exclusive job %d: %w", job, err)
	}
	if !got {
		return false, nil
	}
	defer func() { _, _ = conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock($1)`, job) }()
	return true, fn(ctx)
}
