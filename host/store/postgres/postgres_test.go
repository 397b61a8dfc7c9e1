package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"stellaops.org/authority/host/store"
	"stellaops.org/authority/host/store/postgres"
	"stellaops.org/authority/host/store/storetest"
	"stellaops.org/authority/internal/testenv"
)

func TestContract(t *testing.T) {
	configs := map[string]postgres.Options{
		"GroupCommit":         {},
		"GroupCommitWithWait": {BatchWait: 200 * time.Microsecond, BatchMax: 16, Batchers: 2},
		"OneCommitPerToken":   {BatchMax: 1},
	}
	for name, opts := range configs {
		t.Run(name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.TokenStore { return openStore(t, opts) })
		})
	}
}

func token(id string) *store.Token {
	now := time.Now()
	return &store.Token{ID: id, Kind: store.KindAccessToken, Tenant: "t", ClientID: "c", Subject: "s",
		IssuedAt: now, ExpiresAt: now.Add(time.Hour)}
}

// A row PostgreSQL rejects (text cannot hold NUL) fails only its own Put,
// not the others that shared its batch.
func TestBadRowFailsOnlyItsCaller(t *testing.T) {
	s := openStore(t, postgres.Options{BatchMax: 64, BatchWait: 50 * time.Millisecond, Batchers: 1})
	ctx := context.Background()
	const n = 20
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := token(fmt.Sprint("row-", i))
			if i == 7 {
				tok.Subject = "bad\x00subject"
			}
			errs[i] = s.Put(ctx, tok)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if i == 7 {
			if err == nil || errors.Is(err, store.ErrDuplicate) {
				t.Fatalf("bad row: err = %v, want a database error", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("good row %d failed with its batch: %v", i, err)
		}
		if _, err := s.Get(ctx, fmt.Sprint("row-", i)); err != nil {
			t.Fatalf("good row %d not stored: %v", i, err)
		}
	}
}

// A batch (written with COPY) that holds an ID already stored answers
// ErrDuplicate to that caller only; the rest of the batch is stored.
func TestDuplicateInBatchFailsOnlyItsCaller(t *testing.T) {
	s := openStore(t, postgres.Options{BatchMax: 64, BatchWait: 50 * time.Millisecond, Batchers: 1})
	ctx := context.Background()
	if err := s.Put(ctx, token("dup-5")); err != nil {
		t.Fatal(err)
	}
	const n = 20
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Put(ctx, token(fmt.Sprint("dup-", i)))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if i == 5 {
			if !errors.Is(err, store.ErrDuplicate) {
				t.Fatalf("duplicate row: err = %v, want ErrDuplicate", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("row %d failed with its batch: %v", i, err)
		}
	}
}

// Close answers every Put that was accepted before it.
func TestCloseDrainsQueue(t *testing.T) {
	s := openStore(t, postgres.Options{BatchMax: 8, Batchers: 1})
	ctx := context.Background()
	const n = 200
	errs := make(chan error, n)
	var started sync.WaitGroup
	for i := range n {
		started.Add(1)
		go func() {
			started.Done()
			errs <- s.Put(ctx, token(fmt.Sprint("drain-", i)))
		}()
	}
	started.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ok := 0
	for range n {
		switch err := <-errs; {
		case err == nil:
			ok++
		case !errors.Is(err, store.ErrClosed):
			t.Fatalf("Put during Close: %v, want nil or ErrClosed", err)
		}
	}
	t.Logf("%d of %d Puts accepted before Close", ok, n)
}

func TestOpenValidatesOptions(t *testing.T) {
	ctx := context.Background()
	for name, opts := range map[string]postgres.Options{
		"no dsn":            {},
		"bad schema":        {DSN: testenv.DefaultPostgresDSN, Schema: "x; DROP TABLE y"},
		"negative batch":    {DSN: testenv.DefaultPostgresDSN, BatchMax: -1},
		"too many batchers": {DSN: testenv.DefaultPostgresDSN, MaxConns: 2, Batchers: 2},
	} {
		if s, err := postgres.Open(ctx, opts); err == nil {
			s.Close()
			t.Errorf("%s: Open succeeded", name)
		} else if !strings.Contains(err.Error(), "options.") {
			t.Errorf("%s: error %q does not name the option", name, err)
		}
	}
}

func TestPurgeExpiredRemovesOnlyExpired(t *testing.T) {
	s := openStore(t, postgres.Options{})
	ctx := context.Background()
	now := time.Now()
	for i := range 30 {
		tok := token(fmt.Sprint("p", i))
		tok.IssuedAt = now.Add(-2 * time.Hour)
		tok.ExpiresAt = now.Add(time.Duration(i-10) * time.Minute) // 10 expired
		if err := s.Put(ctx, tok); err != nil {
			t.Fatal(err)
		}
	}
	n, err := s.PurgeExpired(ctx, now)
	if err != nil || n != 10 {
		t.Fatalf("PurgeExpired = %d, %v; want 10", n, err)
	}
}
