package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"stellaops.org/authority/host/store"
	"stellaops.org/authority/host/store/postgres"
)

// openLocked opens a store on a fresh schema and holds an ACCESS EXCLUSIVE
// lock on its tokens table until the test ends (or release is called).
func openLocked(t *testing.T, opts postgres.Options) (*postgres.Store, func()) {
	t.Helper()
	s := openStore(t, opts)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, s.Pool().Config().ConnString())
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// The pool's search_path (already a quoted identifier) names the schema.
	if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+s.Pool().Config().ConnConfig.RuntimeParams["search_path"]); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE authority_tokens IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release := func() { once.Do(func() { _ = tx.Rollback(ctx); _ = conn.Close(ctx) }) }
	t.Cleanup(release)
	return s, release
}

// TestRequestTimeoutBoundsEveryCall: with the table locked, Put (queue and
// batch included), Get and Revoke each give up at Options.RequestTimeout,
// whatever the caller's context says. The bound asserted is wide (10x) for
// a loaded machine; without a deadline they would wait for the lock.
func TestRequestTimeoutBoundsEveryCall(t *testing.T) {
	const d = 300 * time.Millisecond
	s, _ := openLocked(t, postgres.Options{RequestTimeout: d})
	ctx := context.Background()
	calls := map[string]func() error{
		"put":    func() error { return s.Put(ctx, token("locked-put")) },
		"get":    func() error { _, err := s.Get(ctx, "locked-get"); return err },
		"revoke": func() error { _, err := s.Revoke(ctx, "locked-revoke", time.Now()); return err },
	}
	for name, call := range calls {
		start := time.Now()
		err := call()
		took := time.Since(start)
		if err == nil || errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s under a held lock: %v", name, err)
		}
		if took > 10*d {
			t.Errorf("%s took %s for a %s deadline", name, took, d)
		}
	}
}

// TestFullWriteQueueIsBusyAtOnce: a Put that finds the write queue full
// fails with store.ErrBusy without waiting.
func TestFullWriteQueueIsBusyAtOnce(t *testing.T) {
	s, _ := openLocked(t, postgres.Options{RequestTimeout: 5 * time.Second, QueueSize: 4, BatchMax: 2, Batchers: 1})
	ctx := context.Background()
	const n = 40
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- s.Put(ctx, token(fmt.Sprint("busy-", i))) }()
	}
	busy := 0
	deadline := time.After(4 * time.Second) // before the 5 s request deadline
	for busy < n-6 {                        // at most 2 in the batch + 4 queued wait
		select {
		case err := <-errs:
			if !errors.Is(err, store.ErrBusy) {
				t.Fatalf("Put with a full queue: %v, want ErrBusy", err)
			}
			busy++
		case <-deadline:
			t.Fatalf("only %d of %d Puts refused at once", busy, n)
		}
	}
}

// TestCloseBoundedByCloseTimeout: a store stuck on a lock does not hold
// Close (and so shutdown) beyond Options.CloseTimeout; the writes it was
// still waiting on fail.
func TestCloseBoundedByCloseTimeout(t *testing.T) {
	s, _ := openLocked(t, postgres.Options{RequestTimeout: 10 * time.Second, CloseTimeout: 300 * time.Millisecond, BatchMax: 4, Batchers: 1})
	ctx := context.Background()
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- s.Put(ctx, token(fmt.Sprint("stuck-", i))) }()
	}
	time.Sleep(200 * time.Millisecond) // let the first batch reach the lock
	start := time.Now()
	if err := s.Close(); err == nil {
		t.Error("Close reported a clean drain although writes were abandoned")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Close took %s with a 300ms CloseTimeout", took)
	}
	for range n {
		select {
		case err := <-errs:
			if err == nil {
				t.Error("a write behind the lock succeeded")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a Put was left waiting after Close")
		}
	}
}
