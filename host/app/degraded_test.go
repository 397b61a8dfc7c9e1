package app_test

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"stellaops.org/authority/host/config"
	"stellaops.org/authority/internal/testenv"
)

// lockTokens holds an ACCESS EXCLUSIVE lock on the schema's tokens table
// (reads and writes both wait) until the returned function is called.
func lockTokens(t *testing.T, dsn, schema string) (release func()) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{schema, "authority_tokens"}.Sanitize()+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release = func() {
		once.Do(func() {
			_ = tx.Rollback(ctx)
			_ = conn.Close(ctx)
		})
	}
	t.Cleanup(release)
	return release
}

// TestStoreRequestTimeoutAnswers503WithRetryAfter: with the tokens table
// locked for longer than storage.postgres.requestTimeout, every /token and
// /introspect request is answered 503 temporarily_unavailable with
// Retry-After, none waits for the lock, and the node recovers by itself
// once the lock is gone. The lock outlives every request here, so a request
// without a deadline would wait until the client gives up (10 s): the bound
// asserted (5 s for a 300 ms deadline) is wide for a loaded machine and
// still far from that.
func TestStoreRequestTimeoutAnswers503WithRetryAfter(t *testing.T) {
	dsn, schema := testenv.FreshSchema(t)
	const deadline = 300 * time.Millisecond
	e := newEnv(t, envOptions{postgres: dsn, pgSchema: schema, mutate: func(c *config.Config) {
		c.Storage.Postgres.RequestTimeout = config.Duration(deadline)
	}})
	old := e.mustToken("demo-bearer")
	release := lockTokens(t, dsn, schema)

	const n = 40
	type answer struct {
		path       string
		status     int
		retryAfter string
		code       string
		took       time.Duration
	}
	answers := make(chan answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			var r response
			path := "/token"
			if i%4 == 0 {
				path = "/introspect"
				r = e.do(path, e.authed("demo-bearer", url.Values{"token": {old}}))
			} else {
				r = e.token("demo-bearer", nil)
			}
			answers <- answer{path, r.status, r.header.Get("Retry-After"), r.str("error"), time.Since(start)}
		}()
	}
	wg.Wait()
	close(answers)
	for a := range answers {
		if a.status != http.StatusServiceUnavailable || a.code != "temporarily_unavailable" || a.retryAfter == "" {
			t.Errorf("%s under a held lock: %d %q Retry-After %q", a.path, a.status, a.code, a.retryAfter)
		}
		if a.took > 5*time.Second {
			t.Errorf("%s waited %s for a %s deadline", a.path, a.took, deadline)
		}
	}
	// The readiness rule: the ping still answers (the database is
	// reachable, one table is locked), so the node stays ready and
	// /readyz reports the failures as degraded.
	rz := e.do("/readyz", reqOpts{method: http.MethodGet})
	if rz.status != 200 || !strings.Contains(rz.raw, `"name":"token-store","ok":true,"degraded":true`) ||
		!strings.Contains(rz.raw, "token-store calls failed or timed out") {
		t.Errorf("/readyz during a stall: %d %s", rz.status, rz.raw)
	}
	// Counted by reason, with the Go runtime's own figures beside them.
	m := e.metrics()
	if !regexp.MustCompile(`authority_degraded_refusals_total\{reason="store-timeout"\} [1-9]`).MatchString(m) {
		t.Errorf("store timeouts not counted:\n%s", grepLines(m, "authority_degraded_refusals"))
	}
	for _, name := range []string{"go_goroutines ", "go_memstats_heap_inuse_bytes ", "go_gc_duration_seconds", "process_open_fds "} {
		if !strings.Contains(m, name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	release()
	var r response
	for range 50 { // recovery needs no restart; allow the pool a moment
		if r = e.token("demo-bearer", nil); r.status == 200 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if r.status != 200 {
		t.Fatalf("no recovery after the lock was released: %d %s", r.status, r.raw)
	}
}

// TestMaxInFlightRefusesAtOnceWithRetryAfter: with limits.maxInFlight set,
// requests beyond the cap (here held by a locked table) are refused at once
// with 503 + Retry-After and counted as in-flight-limit, instead of joining
// the pile-up.
func TestMaxInFlightRefusesAtOnceWithRetryAfter(t *testing.T) {
	dsn, schema := testenv.FreshSchema(t)
	e := newEnv(t, envOptions{postgres: dsn, pgSchema: schema, mutate: func(c *config.Config) {
		c.Storage.Postgres.RequestTimeout = config.Duration(3 * time.Second)
		c.Limits.MaxInFlight = 3
	}})
	release := lockTokens(t, dsn, schema)
	defer release()
	const n = 12
	type answer struct {
		status int
		retry  string
		took   time.Duration
	}
	answers := make(chan answer, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			r := e.token("demo-bearer", nil)
			answers <- answer{r.status, r.header.Get("Retry-After"), time.Since(start)}
		}()
	}
	wg.Wait()
	close(answers)
	fast := 0
	for a := range answers {
		if a.status != http.StatusServiceUnavailable || a.retry == "" {
			t.Errorf("under a held lock: %d Retry-After %q", a.status, a.retry)
		}
		if a.took < time.Second {
			fast++
		}
	}
	// At most 3 wait for the 3 s store deadline; the others are refused
	// without waiting (a 1 s bound leaves a wide margin on a loaded machine).
	if fast < n-3 {
		t.Errorf("only %d of %d requests were refused without waiting", fast, n)
	}
	m := e.metrics()
	if !regexp.MustCompile(`authority_degraded_refusals_total\{reason="in-flight-limit"\} ([9]|1[0-9])`).MatchString(m) {
		t.Errorf("in-flight refusals not counted:\n%s", grepLines(m, "authority_degraded_refusals"))
	}
}

// TestShutdownWithStuckStoreEndsWithinItsTimeout: with the tokens table
// locked and writes queued behind the lock (a request deadline longer than
// the shutdown timeout), closing the Authority ends within
// listen.shutdownTimeout, and every queued request is answered 503 with
// Retry-After, none with a token.
func TestShutdownWithStuckStoreEndsWithinItsTimeout(t *testing.T) {
	dsn, schema := testenv.FreshSchema(t)
	const shutdown = time.Second
	e := newEnv(t, envOptions{postgres: dsn, pgSchema: schema, mutate: func(c *config.Config) {
		c.Storage.Postgres.RequestTimeout = config.Duration(10 * time.Second)
		c.Listen.ShutdownTimeout = config.Duration(shutdown)
	}})
	release := lockTokens(t, dsn, schema)
	defer release()
	const n = 8
	answers := make(chan response, n)
	for range n {
		go func() { answers <- e.token("demo-bearer", nil) }()
	}
	time.Sleep(300 * time.Millisecond) // let the writes queue behind the lock
	start := time.Now()
	_ = e.a.Close()
	if took := time.Since(start); took > shutdown+4*time.Second {
		t.Fatalf("Close took %s with a %s shutdown timeout", took, shutdown)
	}
	for range n {
		select {
		case r := <-answers:
			if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
				t.Errorf("queued request at shutdown: %d %v %s", r.status, r.header, r.raw)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a request was left waiting after shutdown")
		}
	}
}
