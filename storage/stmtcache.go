package storage

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// maxPrepared bounds the statement cache: the store's queries are a fixed set of a few dozen;
// a query text beyond the bound (none today) simply runs unprepared.
const maxPrepared = 256

// prepareWait bounds how long preparing a statement may wait for a pooled connection.
const prepareWait = time.Second

// stmt returns the prepared statement for query (as written, with ? placeholders; the cache
// keeps it rebound for the dialect), preparing it at first use,
// bound to the transaction ctx carries if any; nil when it cannot be prepared, and the caller
// then runs the query text. Prepared statements spare PostgreSQL parsing and planning every
// execution; database/sql prepares each once per pooled connection and reuses it. Only on
// PostgreSQL: a prepared SQLite statement that returned rows holds its connection's lock
// longer than the one-shot statement does.
func (s *Store) stmt(ctx context.Context, query string) *sqlx.Stmt {
	if s.dialect != Postgres || s.noPrepare {
		return nil
	}
	st, prepare := s.cachedStmt(query)
	if st == nil && prepare {
		st = s.prepare(ctx, query)
	}
	if st == nil {
		return nil
	}
	if h, ok := txFrom(ctx); ok {
		return h.tx.StmtxContext(ctx, st)
	}
	return st
}

// cachedStmt returns query's prepared statement, or tells whether this caller is the one to
// prepare it: a text is prepared by one caller at a time, and the others run it unprepared
// meanwhile. Two preparing at once left a spare to close, and closing a statement waits for
// every connection it was prepared on; one of them could be running a transaction's statement
// queued on a row lock whose holder waited for this cache: a cycle neither PostgreSQL nor Go
// sees, which hung a CI run. Nothing here waits while holding stmtMu.
func (s *Store) cachedStmt(query string) (st *sqlx.Stmt, prepare bool) {
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	if st, ok := s.stmts[query]; ok {
		return st, false
	}
	if s.preparing[query] || len(s.stmts)+len(s.preparing) >= maxPrepared {
		return nil, false
	}
	if s.preparing == nil {
		s.preparing = map[string]bool{}
	}
	s.preparing[query] = true
	return nil, true
}

// prepare prepares query for the cache (the caller was chosen by cachedStmt); nil when it
// could not be, and the query then runs unprepared. Preparing takes a pooled connection of its
// own. A transaction already holds one: with none idle it would wait for another transaction
// to end, which may be waiting likewise, so then it does not prepare; the wait is bounded in
// any case.
func (s *Store) prepare(ctx context.Context, query string) (st *sqlx.Stmt) {
	defer func() {
		s.stmtMu.Lock()
		delete(s.preparing, query)
		if st != nil {
			if s.stmts == nil {
				s.stmts = map[string]*sqlx.Stmt{}
			}
			s.stmts[query] = st
		}
		s.stmtMu.Unlock()
	}()
	if _, inTx := txFrom(ctx); inTx && s.db.Stats().Idle == 0 {
		return nil
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), prepareWait)
	defer cancel()
	p, err := s.db.PreparexContext(pctx, s.db.Rebind(query))
	if err != nil {
		return nil // the query itself will report the problem
	}
	if s.prepared != nil {
		s.prepared(query)
	}
	return p
}

// closeStmts closes the cached statements (Close of the store).
func (s *Store) closeStmts() {
	s.stmtMu.Lock()
	defer s.stmtMu.Unlock()
	for _, st := range s.stmts {
		_ = st.Close()
	}
	s.stmts = nil
}

// span starts a span for one SQL statement: its operation and text (placeholders only, never
// the values), no row data.
func (s *Store) span(ctx context.Context, query string) (context.Context, trace.Span) {
	op, _, _ := strings.Cut(strings.TrimSpace(query), " ")
	return s.tracer.Start(ctx, "sql "+strings.ToUpper(op), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("db.system", string(s.dialect)), attribute.String("db.operation", strings.ToUpper(op)),
			attribute.String("db.statement", truncate(query, 300))))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// endSpan records err on span (a missing row is no error) and ends it.
func endSpan(span trace.Span, err error) {
	if err != nil && !errors.Is(err, sql.ErrNoRows) && !errors.Is(err, ErrNotFound) {
		span.SetStatus(codes.Error, "statement failed")
	}
	span.End()
}

func (s *Store) exec(ctx context.Context, query string, args ...any) (res sql.Result, err error) {
	ctx, span := s.span(ctx, query)
	defer func() { endSpan(span, err) }()
	dropCachedRows(ctx, query)
	if st := s.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return s.q(ctx).ExecContext(ctx, s.db.Rebind(query), args...)
}

func (s *Store) get(ctx context.Context, dest any, query string, args ...any) (err error) {
	ctx, span := s.span(ctx, query)
	defer func() { endSpan(span, err) }()
	dropCachedRows(ctx, query)
	if st := s.stmt(ctx, query); st != nil {
		err = st.GetContext(ctx, dest, args...)
	} else {
		err = s.q(ctx).GetContext(ctx, dest, s.db.Rebind(query), args...)
	}
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

func (s *Store) selectAll(ctx context.Context, dest any, query string, args ...any) (err error) {
	ctx, span := s.span(ctx, query)
	defer func() { endSpan(span, err) }()
	if st := s.stmt(ctx, query); st != nil {
		return st.SelectContext(ctx, dest, args...)
	}
	return s.q(ctx).SelectContext(ctx, dest, s.db.Rebind(query), args...)
}
