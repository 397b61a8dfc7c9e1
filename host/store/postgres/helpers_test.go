package postgres_test

import (
	"context"
	"testing"
	"time"

	"stellaops.org/authority/host/store/postgres"
	"stellaops.org/authority/internal/testenv"
)

// testDSN and freshSchema are the shared real-database helpers.
func testDSN(tb testing.TB) string { return testenv.PostgresDSN(tb) }

func freshSchema(tb testing.TB) (dsn, schema string) { return testenv.FreshSchema(tb) }

// openStore opens a Store on a fresh schema; it is closed before the schema
// is dropped.
func openStore(tb testing.TB, opts postgres.Options) *postgres.Store {
	tb.Helper()
	opts.DSN, opts.Schema = freshSchema(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := postgres.Open(ctx, opts)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s
}
