package storage

import "context"

// Test hooks into the statement cache.

func (s *Store) PreparedCount() int {
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	return len(s.stmts)
}

func (s *Store) GetForTest(ctx context.Context, dest any, query string, args ...any) error {
	return s.get(ctx, dest, query, args...)
}

const MaxPrepared = maxPrepared

func IsUniqueViolation(err error) bool { return isUniqueViolation(err) }

func (s *Store) ExecForTest(ctx context.Context, query string) error {
	_, err := s.exec(ctx, query)
	return err
}

// SetPreparedHook tells f of each query text prepared, before it is cached.
func (s *Store) SetPreparedHook(f func(query string)) { s.prepared = f }
