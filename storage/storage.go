// Package storage keeps every piece of the broker's state in SQL: PostgreSQL through lib/pq for
// production and several replicas, or the embedded SQLite (modernc.org/sqlite) for one node. All
// SQL lives here; the package imports no domain package.
package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq"  // PostgreSQL driver "postgres"
	_ "modernc.org/sqlite" // SQLite driver "sqlite"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Dialect names the SQL dialect of a store.
type Dialect string

// The dialects a Store speaks.
const (
	Postgres Dialect = "postgres"
	SQLite   Dialect = "sqlite"
)

// DefaultSQLitePath is where the embedded store lives when the DSN is empty.
const DefaultSQLitePath = "./esia-broker.db"

// ErrNotFound is returned when a row does not exist.
var ErrNotFound = errors.New("not found")

// ErrConflict is returned when a row would violate a uniqueness rule.
var ErrConflict = errors.New("already exists")

// Store is the broker's database.
type Store struct {
	db      *sqlx.DB
	dialect Dialect
	// RefreshGrace is how long a rotated refresh token stays usable, so that concurrent refreshes
	// of one token do not log the user out.
	RefreshGrace time.Duration
	// ClientCacheTTL keeps clients found by GetClient in memory this long (0: no cache).
	ClientCacheTTL time.Duration
	now            func() time.Time

	cacheMu     sync.Mutex
	clientCache map[string]cachedClient

	stmtMu    sync.Mutex
	stmts     map[string]*sqlx.Stmt
	preparing map[string]bool // texts being prepared now, by one caller each
	// prepared, when set (tests), is told of each text prepared, before it is cached.
	prepared  func(query string)
	noPrepare bool

	// shownSubject makes the sub a diary sees from an account (SetShownSubject).
	shownSubject func(a *Account, c *Client) string
	// tracer makes a span per statement and transaction (a no-op unless SetTracer).
	tracer trace.Tracer
}

// SetTracer makes the store trace its statements and transactions with tp (OpenTelemetry).
// Call it before the store is used.
func (s *Store) SetTracer(tp trace.TracerProvider) {
	s.tracer = tp.Tracer("github.com/esia-broker/esia-broker/storage")
}

// Options tunes Open.
type Options struct {
	MaxOpenConns int
	// NoPreparedStatements runs every query unprepared (PostgreSQL behind a pooler in
	// transaction mode).
	NoPreparedStatements bool
}

// Open connects to the store named by dsn: postgres://… or postgresql://… for PostgreSQL,
// sqlite:PATH for the embedded store, "" for sqlite:./esia-broker.db.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if opts.MaxOpenConns <= 0 {
		opts.MaxOpenConns = 20
	}
	var (
		db      *sqlx.DB
		dialect Dialect
		err     error
	)
	switch {
	case dsn == "" || strings.HasPrefix(dsn, "sqlite:"):
		path := strings.TrimPrefix(dsn, "sqlite:")
		if path == "" {
			path = DefaultSQLitePath
		}
		dialect = SQLite
		db, err = sqlx.Open("sqlite", sqliteDSN(path))
		if err == nil {
			// One writer at a time is SQLite's model; a small pool of readers is fine under WAL.
			db.SetMaxOpenConns(min(opts.MaxOpenConns, 8))
		}
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		dialect = Postgres
		db, err = sqlx.Open("postgres", postgresDSN(dsn))
		if err == nil {
			db.SetMaxOpenConns(opts.MaxOpenConns)
			db.SetMaxIdleConns(opts.MaxOpenConns)
			db.SetConnMaxIdleTime(5 * time.Minute)
		}
	default:
		return nil, fmt.Errorf("open store: unsupported DSN scheme (want postgres:// or sqlite:)")
	}
	if err != nil {
		return nil, fmt.Errorf("open %s store: %w", dialect, err)
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("connect to %s store: %w", dialect, err)
	}
	return &Store{db: db, dialect: dialect, RefreshGrace: 5 * time.Second, now: time.Now, noPrepare: opts.NoPreparedStatements, tracer: noop.NewTracerProvider().Tracer("")}, nil
}

// postgresDSN turns on lib/pq's binary_parameters unless the DSN says otherwise: a statement
// with arguments then goes in one round trip (parse, bind and execute together) instead of two,
// which also halves the implicit transactions PostgreSQL counts for autocommitted statements.
func postgresDSN(dsn string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		return dsn // lib/pq reports the error
	}
	q := u.Query()
	if q.Get("binary_parameters") == "" {
		q.Set("binary_parameters", "yes")
		u.RawQuery = q.Encode()
	}
	return u.String()
}

func sqliteDSN(path string) string {
	// _txlock=immediate takes the write lock at BEGIN, so concurrent writers queue on the busy
	// timeout instead of failing with SQLITE_BUSY when upgrading a read transaction.
	return "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_txlock=immediate&_time_format=sqlite"
}

// Close closes the connection pool.
func (s *Store) Close() error {
	s.closeStmts()
	return s.db.Close()
}

// Dialect tells which SQL dialect the store speaks.
func (s *Store) Dialect() Dialect { return s.dialect }

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// SetClock replaces the store's clock; tests use it to step past expiries.
func (s *Store) SetClock(now func() time.Time) { s.now = now }

// clock is the store's now, to the microsecond: what PostgreSQL keeps (it rounds finer times),
// so that a time written and read back compares as it did before (a window of exactly its
// length has ended on both dialects).
func (s *Store) clock() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

type txKey struct{}

// txHandle is the transaction a context carries. A request transaction (BeginRequestTx) is
// joined by the BeginTX calls made under it: their Commit does nothing and their Rollback marks
// the whole transaction to be rolled back when the request ends.
type txHandle struct {
	tx       *sqlx.Tx
	request  bool
	rollback bool
	// rows are token rows read in a request transaction, by table and signature: fosite
	// reads the code of an exchange twice. Any write to a table drops that table's rows.
	rows map[string]*tokenRow
	// revoked are the grants whose tokens a request transaction revoked on purpose (a replayed
	// code or refresh token): AbortRequestTx revokes them again after rolling back.
	revoked []revocation
	// events are the feed's events of the transaction, written just before it commits (see
	// AppendEvent).
	events []pendingEvent
}

// revocation is one deliberate revocation of a grant's tokens in a table.
type revocation struct{ table, requestID string }

// joinedKey marks a context whose BeginTX joined a request transaction.
type joinedKey struct{}

type queryer interface {
	sqlx.ExtContext
	GetContext(ctx context.Context, dest any, query string, args ...any) error
	SelectContext(ctx context.Context, dest any, query string, args ...any) error
}

func txFrom(ctx context.Context) (*txHandle, bool) {
	h, ok := ctx.Value(txKey{}).(*txHandle)
	return h, ok && h != nil
}

// q returns the transaction carried by ctx, or the pool.
func (s *Store) q(ctx context.Context) queryer {
	if h, ok := txFrom(ctx); ok {
		return h.tx
	}
	return s.db
}

// BeginTX starts a transaction carried by the returned context (fosite's Transactional). Under
// a request transaction it joins that one.
func (s *Store) BeginTX(ctx context.Context) (context.Context, error) {
	if h, ok := txFrom(ctx); ok {
		if h.request {
			return context.WithValue(ctx, joinedKey{}, true), nil
		}
		return ctx, errors.New("begin transaction: a transaction is already open in this context")
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return ctx, fmt.Errorf("begin transaction: %w", err)
	}
	return context.WithValue(ctx, txKey{}, &txHandle{tx: tx}), nil
}

// Commit commits the transaction carried by ctx; a joined one is committed when its request
// transaction ends.
func (s *Store) Commit(ctx context.Context) error {
	h, ok := txFrom(ctx)
	if !ok {
		return errors.New("commit: no transaction in context")
	}
	if joined, _ := ctx.Value(joinedKey{}).(bool); joined {
		return nil
	}
	if err := s.flushEvents(ctx, h); err != nil {
		_ = h.tx.Rollback()
		return err
	}
	if err := h.tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// Rollback rolls back the transaction carried by ctx; for a joined one, the request
// transaction will be rolled back when it ends.
func (s *Store) Rollback(ctx context.Context) error {
	h, ok := txFrom(ctx)
	if !ok {
		return errors.New("rollback: no transaction in context")
	}
	if joined, _ := ctx.Value(joinedKey{}).(bool); joined {
		h.rollback = true
		return nil
	}
	if err := h.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return fmt.Errorf("rollback: %w", err)
	}
	return nil
}

// BeginRequestTx starts one transaction for everything a request does: every statement and
// every BeginTX under the returned context joins it. EndRequestTx finishes it. The token
// endpoint uses it so that fosite's reads, deletes and writes of one exchange are one
// transaction (one round of locks, one commit) instead of one each.
func (s *Store) BeginRequestTx(ctx context.Context) (context.Context, error) {
	if _, ok := txFrom(ctx); ok {
		return ctx, errors.New("begin request transaction: a transaction is already open in this context")
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return ctx, fmt.Errorf("begin transaction: %w", err)
	}
	return context.WithValue(ctx, txKey{}, &txHandle{tx: tx, request: true}), nil
}

// EndRequestTx commits the request transaction, or rolls it back when a joined BeginTX (or
// InTx) was rolled back. It tells whether the transaction was committed.
func (s *Store) EndRequestTx(ctx context.Context) (bool, error) {
	h, ok := txFrom(ctx)
	if !ok || !h.request {
		return false, errors.New("end request transaction: none in this context")
	}
	if h.rollback {
		if err := h.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
			return false, fmt.Errorf("rollback: %w", err)
		}
		return false, nil
	}
	if err := s.flushEvents(ctx, h); err != nil {
		_ = h.tx.Rollback()
		return false, err
	}
	if err := h.tx.Commit(); err != nil {
		return false, fmt.Errorf("commit: %w", err)
	}
	return true, nil
}

// AbortRequestTx ends a request whose answer is an error: the request transaction is rolled
// back whole, so that a failed token request changes nothing (a PKCE row or a code fosite had
// already deleted stays), except the revocations it made on purpose — the tokens of a grant
// whose code or refresh token was replayed — which are made again in a transaction of their own.
func (s *Store) AbortRequestTx(ctx context.Context) error {
	h, ok := txFrom(ctx)
	if !ok || !h.request {
		return errors.New("abort request transaction: none in this context")
	}
	if err := h.tx.Rollback(); err != nil && !errors.Is(err, sql.ErrTxDone) {
		return fmt.Errorf("rollback: %w", err)
	}
	if len(h.revoked) == 0 {
		return nil
	}
	base := context.WithValue(ctx, txKey{}, (*txHandle)(nil))
	return s.InTx(base, func(ctx context.Context) error {
		for _, r := range h.revoked {
			var err error
			switch r.table {
			case tableRefresh:
				err = s.RevokeRefreshToken(ctx, r.requestID)
			default:
				err = s.RevokeAccessToken(ctx, r.requestID)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// noteRevocation records a deliberate revocation made in a request transaction.
func noteRevocation(ctx context.Context, table, requestID string) {
	if h, ok := txFrom(ctx); ok && h.request {
		h.revoked = append(h.revoked, revocation{table, requestID})
	}
}

// InTx runs fn in one transaction: committed when fn returns nil, rolled back otherwise. When
// ctx already carries a transaction, fn joins it (and an error marks a request transaction to
// be rolled back).
func (s *Store) InTx(ctx context.Context, fn func(ctx context.Context) error) (err error) {
	if h, ok := txFrom(ctx); ok {
		err := fn(ctx)
		if err != nil && h.request {
			h.rollback = true
		}
		return err
	}
	ctx, span := s.tracer.Start(ctx, "sql transaction", trace.WithSpanKind(trace.SpanKindClient))
	defer func() { endSpan(span, err) }()
	tctx, err := s.BeginTX(ctx)
	if err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			_ = s.Rollback(tctx)
			panic(p)
		}
		if err != nil {
			_ = s.Rollback(tctx)
		}
	}()
	if err = fn(tctx); err != nil {
		return err
	}
	return s.Commit(tctx)
}

func affected(res sql.Result) int64 {
	n, err := res.RowsAffected()
	if err != nil {
		return 0
	}
	return n
}

// SearchText returns "table.column" for every text column of every table that holds s; tests
// use it to prove that no plain SNILS or invite code reaches the database.
func (s *Store) SearchText(ctx context.Context, needle string) ([]string, error) {
	type col struct {
		Table  string `db:"table_name"`
		Column string `db:"column_name"`
	}
	var cols []col
	var err error
	if s.dialect == Postgres {
		err = s.selectAll(ctx, &cols, `SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public' AND data_type IN ('text', 'character varying', 'bytea')`)
	} else {
		var tables []string
		err = s.selectAll(ctx, &tables, `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`)
		for _, t := range tables {
			var names []string
			if e := s.selectAll(ctx, &names, `SELECT name FROM pragma_table_info(?)`, t); e != nil {
				return nil, e
			}
			for _, n := range names {
				cols = append(cols, col{t, n})
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list columns: %w", err)
	}
	var found []string
	for _, c := range cols {
		var n int
		q := `SELECT COUNT(*) FROM ` + c.Table + ` WHERE CAST(` + c.Column + ` AS TEXT) LIKE ?`
		if s.dialect == Postgres {
			q = `SELECT COUNT(*) FROM "` + c.Table + `" WHERE encode(convert_to("` + c.Column + `"::text, 'UTF8'), 'escape') LIKE ?`
		}
		if err := s.get(ctx, &n, q, "%"+needle+"%"); err != nil {
			return nil, fmt.Errorf("search %s.%s: %w", c.Table, c.Column, err)
		}
		if n > 0 {
			found = append(found, c.Table+"."+c.Column)
		}
	}
	return found, nil
}

// Stats are the connection pool's statistics (open, in use, idle, waits), for the metrics.
func (s *Store) Stats() sql.DBStats { return s.db.Stats() }
