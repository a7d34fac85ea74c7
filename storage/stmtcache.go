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
	s.stmtMu.Lock()
	st, ok := s.stmts[query]
	s.stmtMu.Unlock()
	if !ok {
		s.stmtMu.Lock()
		full := len(s.stmts) >= maxPrepared
		s.stmtMu.Unlock()
		if full {
			return nil
		}
		// Preparing takes a pooled connection of its own. A transaction already holds one: with
		// none idle it would wait for another transaction to end, which may be waiting likewise.
		// Then this execution runs unprepared, and the wait is bounded in any case.
		if _, inTx := txFrom(ctx); inTx && s.db.Stats().Idle == 0 {
			return nil
		}
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), prepareWait)
		p, err := s.db.PreparexContext(pctx, s.db.Rebind(query))
		cancel()
		if err != nil {
			return nil // the query itself will report the problem
		}
		s.stmtMu.Lock()
		if prev, ok := s.stmts[query]; ok {
			_ = p.Close()
			p = prev
		} else {
			if s.stmts == nil {
				s.stmts = map[string]*sqlx.Stmt{}
			}
			s.stmts[query] = p
		}
		s.stmtMu.Unlock()
		st = p
	}
	if h, ok := txFrom(ctx); ok {
		return h.tx.StmtxContext(ctx, st)
	}
	return st
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
