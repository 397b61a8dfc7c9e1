package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"stellaops.org/authority/host/store/postgres"
)

const defaultTestDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// testDSN returns the DSN of the test database. Tests use REAL PostgreSQL:
// an unreachable server fails the test, unless AUTHORITY_TEST_POSTGRES=off,
// which skips it.
func testDSN(tb testing.TB) string {
	tb.Helper()
	if os.Getenv("AUTHORITY_TEST_POSTGRES") == "off" {
		tb.Skip("AUTHORITY_TEST_POSTGRES=off: skipping PostgreSQL tests")
	}
	dsn := os.Getenv("AUTHORITY_TEST_POSTGRES_DSN")
	if dsn == "" {
		dsn = defaultTestDSN
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatalf("PostgreSQL is unreachable at %q: %v\n"+
			"start it, point AUTHORITY_TEST_POSTGRES_DSN at a server, or set AUTHORITY_TEST_POSTGRES=off to skip", dsn, err)
	}
	conn.Close(ctx)
	return dsn
}

// freshSchema returns the test DSN and a new random schema name; the schema
// (if anything created it) is dropped when the test ends.
func freshSchema(tb testing.TB) (dsn, schema string) {
	tb.Helper()
	dsn = testDSN(tb)
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema = "authority_test_" + hex.EncodeToString(b[:])
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return dsn, schema
}

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
