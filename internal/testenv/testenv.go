// Package testenv gives tests the real PostgreSQL and Redis of the
// development and CI machines. An unreachable server fails the test with a
// message saying how to start it; AUTHORITY_TEST_POSTGRES=off and
// AUTHORITY_TEST_REDIS=off skip instead (for a laptop without them).
package testenv

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultPostgresDSN is the test database of the development machine.
const DefaultPostgresDSN = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// DefaultRedisAddr is the Redis of the development machine.
const DefaultRedisAddr = "127.0.0.1:6379"

// PostgresDSN returns the DSN of a reachable test PostgreSQL.
func PostgresDSN(tb testing.TB) string {
	tb.Helper()
	if os.Getenv("AUTHORITY_TEST_POSTGRES") == "off" {
		tb.Skip("AUTHORITY_TEST_POSTGRES=off: skipping PostgreSQL tests")
	}
	dsn := os.Getenv("AUTHORITY_TEST_POSTGRES_DSN")
	if dsn == "" {
		dsn = DefaultPostgresDSN
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatalf("PostgreSQL is unreachable at %q: %v (start it, set AUTHORITY_TEST_POSTGRES_DSN, or AUTHORITY_TEST_POSTGRES=off to skip)", dsn, err)
	}
	conn.Close(ctx)
	return dsn
}

// FreshSchema returns the test DSN and a new random schema name; the schema
// is dropped when the test ends (register it before anything that must be
// closed first, since cleanups run last-in first-out).
func FreshSchema(tb testing.TB) (dsn, schema string) {
	tb.Helper()
	dsn = PostgresDSN(tb)
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

// RedisAddr returns the address of a reachable test Redis.
func RedisAddr(tb testing.TB) string {
	tb.Helper()
	if os.Getenv("AUTHORITY_TEST_REDIS") == "off" {
		tb.Skip("AUTHORITY_TEST_REDIS=off: skipping Redis tests")
	}
	addr := os.Getenv("AUTHORITY_TEST_REDIS_ADDR")
	if addr == "" {
		addr = DefaultRedisAddr
	}
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		tb.Fatalf("Redis is unreachable at %s: %v (start it, set AUTHORITY_TEST_REDIS_ADDR, or AUTHORITY_TEST_REDIS=off to skip)", addr, err)
	}
	c.Close()
	return addr
}

// Prefix returns a random key prefix so parallel test runs never collide.
func Prefix(name string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return "authority-test:" + name + ":" + hex.EncodeToString(b[:]) + ":"
}

// SyncBuffer is a concurrency-safe log sink for tests (slog handlers write
// from request goroutines while the test reads).
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
