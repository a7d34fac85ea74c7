package storage_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/storage/storagetest"
)

// TestStatementCache: on PostgreSQL a query is prepared once and reused, in and out of
// transactions; past the cache's bound further query texts still run, unprepared; SQLite
// prepares nothing.
func TestStatementCache(t *testing.T) {
	ctx := context.Background()
	s := storagetest.Open(t, storagetest.NewPostgresDSN(t))
	sum := func(ctx context.Context, q string, a int) int {
		t.Helper()
		var n int
		if err := s.GetForTest(ctx, &n, q, a); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	base := s.PreparedCount()
	for i := range 3 {
		if got := sum(ctx, `SELECT CAST(? AS INTEGER) + 1`, i); got != i+1 {
			t.Fatalf("got %d, want %d", got, i+1)
		}
	}
	err := s.InTx(ctx, func(ctx context.Context) error {
		if got := sum(ctx, `SELECT CAST(? AS INTEGER) + 1`, 41); got != 42 {
			return fmt.Errorf("in a transaction: got %d", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.PreparedCount() - base; got != 1 {
		t.Errorf("one query text run 4 times made %d prepared statements, want 1", got)
	}
	for i := 0; s.PreparedCount() < storage.MaxPrepared; i++ {
		sum(ctx, fmt.Sprintf(`SELECT CAST(? AS INTEGER) + %d`, i), 0)
	}
	if got := sum(ctx, `SELECT CAST(? AS INTEGER) * 2 /* past the bound */`, 21); got != 42 || s.PreparedCount() != storage.MaxPrepared {
		t.Errorf("past the bound: got %d with %d prepared, want 42 with %d", got, s.PreparedCount(), storage.MaxPrepared)
	}

	// Turned off (a pooler in transaction mode): queries run, nothing is prepared.
	off, err := storage.Open(ctx, storagetest.NewPostgresDSN(t), storage.Options{NoPreparedStatements: true})
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	var m int
	if err := off.GetForTest(ctx, &m, `SELECT CAST(? AS INTEGER) + 1`, 1); err != nil || m != 2 || off.PreparedCount() != 0 {
		t.Errorf("prepared statements off: %d, %v, %d prepared; want 2, nil, 0", m, err, off.PreparedCount())
	}

	lite := storagetest.Open(t, storagetest.NewSQLiteDSN(t))
	var n int
	if err := lite.GetForTest(ctx, &n, `SELECT CAST(? AS INTEGER) + 1`, 1); err != nil || n != 2 || lite.PreparedCount() != 0 {
		t.Errorf("sqlite: %d, %v, %d prepared; want 2, nil, 0", n, err, lite.PreparedCount())
	}
}

// TestPrepareInsideTransactionWithFullPool: a query first met inside a transaction must not
// wait for a second pooled connection to prepare on (with every connection held by
// transactions that would wait forever).
func TestPrepareInsideTransactionWithFullPool(t *testing.T) {
	ctx := context.Background()
	s, err := storage.Open(ctx, storagetest.NewPostgresDSN(t), storage.Options{MaxOpenConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	done := make(chan error, 1)
	go func() {
		done <- s.InTx(ctx, func(ctx context.Context) error {
			var n int
			if err := s.GetForTest(ctx, &n, `SELECT CAST(? AS INTEGER) + 1 /* first met in a transaction */`, 1); err != nil {
				return err
			}
			if n != 2 {
				return fmt.Errorf("got %d, want 2", n)
			}
			return nil
		})
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a query inside a transaction waited for a second connection of a one-connection pool")
	}
}

// TestPreparingNeverWaitsOnAnotherTransaction: transactions that queue on one lock while their
// queries are first met and prepared must all finish. Preparing a query twice at once and
// closing the spare waited for the connection the spare was prepared on; that connection's
// transaction was queued on the lock, whose holder waited for the statement cache: a cycle
// that neither PostgreSQL nor Go could see, which hung CI once.
func TestPreparingNeverWaitsOnAnotherTransaction(t *testing.T) {
	ctx := context.Background()
	s, err := storage.Open(ctx, storagetest.NewPostgresDSN(t), storage.Options{MaxOpenConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const texts, workers = 60, 24
	errs := make(chan error, workers)
	for range workers {
		go func() {
			for i := range texts {
				err := s.InTx(ctx, func(ctx context.Context) error {
					var one, n int
					if err := s.GetForTest(ctx, &one, fmt.Sprintf(`SELECT 1 FROM (SELECT pg_advisory_xact_lock(CAST(? AS BIGINT))) AS l /* %d */`, i), 4242); err != nil {
						return err
					}
					if err := s.GetForTest(ctx, &n, fmt.Sprintf(`SELECT CAST(? AS INTEGER) + 1 /* %d, under the lock */`, i), 1); err != nil {
						return err
					}
					if one != 1 || n != 2 {
						return fmt.Errorf("got %d and %d, want 1 and 2", one, n)
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
				// The same text met outside a transaction by several workers at once.
				var n int
				if err := s.GetForTest(ctx, &n, fmt.Sprintf(`SELECT CAST(? AS INTEGER) + 2 /* %d, outside */`, i), 1); err != nil || n != 3 {
					errs <- fmt.Errorf("outside a transaction: %d, %v", n, err)
					return
				}
			}
			errs <- nil
		}()
	}
	deadline := time.After(60 * time.Second)
	for range workers {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
		case <-deadline:
			t.Fatal("transactions queued on one lock while preparing their queries did not finish in 60 s")
		}
	}
}

// TestOnePreparerPerQuery: while one caller prepares a query text, the others run it unprepared
// instead of preparing it too. Spares prepared at once had to be closed, and closing one waited
// for connections busy in other transactions: the cycle that hung CI.
func TestOnePreparerPerQuery(t *testing.T) {
	ctx := context.Background()
	s := storagetest.Open(t, storagetest.NewPostgresDSN(t))
	const q = `SELECT CAST(? AS INTEGER) + 7 /* one preparer */`
	release := make(chan struct{})
	var prepares atomic.Int32
	s.SetPreparedHook(func(query string) {
		if query == q {
			prepares.Add(1)
			<-release
		}
	})
	first := make(chan error, 1)
	go func() {
		var n int
		first <- s.GetForTest(ctx, &n, q, 1)
	}()
	for deadline := time.Now().Add(10 * time.Second); prepares.Load() == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the first caller never prepared")
		}
	}
	others := make(chan error, 10)
	for i := range 10 {
		go func() {
			var n int
			err := s.GetForTest(ctx, &n, q, i)
			if err == nil && n != i+7 {
				err = fmt.Errorf("got %d, want %d", n, i+7)
			}
			others <- err
		}()
	}
	for range 10 {
		select {
		case err := <-others:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a caller waited for the one preparing the same text")
		}
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	if n := prepares.Load(); n != 1 {
		t.Errorf("the text was prepared %d times at once, want 1", n)
	}
}
