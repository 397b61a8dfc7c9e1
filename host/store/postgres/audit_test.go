package postgres_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"stellaops.org/authority/host/audit"
	"stellaops.org/authority/host/audit/audittest"
	"stellaops.org/authority/host/store/postgres"
)

// openAudit opens an AuditStore with its own pool (OpenAuditDSN) on a fresh
// schema, and a pool of the test's own on that schema for tampering.
func openAudit(tb testing.TB) (*postgres.AuditStore, *pgxpool.Pool) {
	tb.Helper()
	dsn, schema := freshSchema(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := postgres.OpenAuditDSN(ctx, dsn, schema, true)
	if err != nil {
		tb.Fatalf("OpenAuditDSN: %v", err)
	}
	tb.Cleanup(func() { _ = s.Close() })
	return s, schemaPool(tb, dsn, schema)
}

// schemaPool is a pool on dsn with schema as its search_path, closed at
// cleanup.
func schemaPool(tb testing.TB, dsn, schema string) *pgxpool.Pool {
	tb.Helper()
	return searchPathPool(tb, dsn, pgx.Identifier{schema}.Sanitize())
}

// searchPathPool is a pool on dsn with the given search_path, closed at
// cleanup.
func searchPathPool(tb testing.TB, dsn, searchPath string) *pgxpool.Pool {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = searchPath
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// openSharedAudit is the audit store of a token store (Store.Audit); the
// token store's pool doubles as the tamperer's.
func openSharedAudit(tb testing.TB, opts postgres.Options) (*postgres.Store, *postgres.AuditStore) {
	tb.Helper()
	ts := openStore(tb, opts)
	a := ts.Audit()
	tb.Cleanup(func() { _ = a.Close() })
	return ts, a
}

func TestAuditContract(t *testing.T) {
	t.Run("OwnPool", func(t *testing.T) {
		audittest.Run(t, func(t testing.TB) (audit.Store, audittest.Tamperer) {
			s, db := openAudit(t)
			return s, sqlTamper{db}
		})
	})
	t.Run("SharedPool", func(t *testing.T) {
		audittest.Run(t, func(t testing.TB) (audit.Store, audittest.Tamperer) {
			ts, a := openSharedAudit(t, postgres.Options{})
			return a, sqlTamper{ts.Pool()}
		})
	})
}

// sqlTamper edits authority_audit with SQL, as someone with write access
// to the table would.
type sqlTamper struct{ db *pgxpool.Pool }

func (s sqlTamper) exec(t testing.TB, rows int64, sql string, args ...any) {
	t.Helper()
	tag, err := s.db.Exec(context.Background(), sql, args...)
	if err != nil {
		t.Fatalf("tamper: %v", err)
	}
	if rows >= 0 && tag.RowsAffected() != rows {
		t.Fatalf("tamper: %d rows changed, want %d", tag.RowsAffected(), rows)
	}
}

// Replace rewrites the body only: node, seq and hash stay as they were.
func (s sqlTamper) Replace(t testing.TB, node string, seq uint64, line []byte) {
	s.exec(t, 1, `UPDATE authority_audit SET body = $3 WHERE node = $1 AND seq = $2`, node, int64(seq), string(line))
}

func (s sqlTamper) Delete(t testing.TB, node string, seq uint64) {
	s.exec(t, 1, `DELETE FROM authority_audit WHERE node = $1 AND seq = $2`, node, int64(seq))
}

// Swap exchanges the two rows' bodies (the join reads the rows as they
// were before the statement).
func (s sqlTamper) Swap(t testing.TB, node string, a, b uint64) {
	s.exec(t, 2, `UPDATE authority_audit x SET body = y.body FROM authority_audit y
		WHERE x.node = $1 AND y.node = $1 AND (x.seq, y.seq) IN (($2, $3), ($3, $2))`, node, int64(a), int64(b))
}

func (s sqlTamper) TruncateAfter(t testing.TB, node string, seq uint64) {
	s.exec(t, -1, `DELETE FROM authority_audit WHERE node = $1 AND seq > $2`, node, int64(seq))
}

// swapSeq exchanges the two rows' sequence numbers instead (each row keeps
// its body and hash), through a free number since the primary key is
// checked row by row.
func (s sqlTamper) swapSeq(t testing.TB, node string, a, b uint64) {
	t.Helper()
	const spare = 1 << 40
	s.exec(t, 1, `UPDATE authority_audit SET seq = $3 WHERE node = $1 AND seq = $2`, node, int64(a), int64(spare))
	s.exec(t, 1, `UPDATE authority_audit SET seq = $3 WHERE node = $1 AND seq = $2`, node, int64(b), int64(a))
	s.exec(t, 1, `UPDATE authority_audit SET seq = $3 WHERE node = $1 AND seq = $2`, node, int64(spare), int64(b))
}

func pub(k ed25519.PrivateKey) []ed25519.PublicKey {
	return []ed25519.PublicKey{k.Public().(ed25519.PublicKey)}
}

// Both ways of reordering a table, bodies or sequence numbers, are caught:
// the row stored at seq 6 holds record 7, whatever moved.
func TestAuditReorderByBodyOrBySeq(t *testing.T) {
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for name, swap := range map[string]func(sqlTamper, testing.TB){
		"bodies": func(s sqlTamper, t testing.TB) { s.Swap(t, "n", 6, 7) },
		"seq":    func(s sqlTamper, t testing.TB) { s.swapSeq(t, "n", 6, 7) },
	} {
		t.Run(name, func(t *testing.T) {
			s, db := openAudit(t)
			key := audittest.Key(t)
			audittest.WriteChain(t, s, "n", key, audittest.Events("t", 10, at), func() time.Time { return at })
			swap(sqlTamper{db}, t)
			rep, err := audit.Verify(context.Background(), s, audit.VerifyOptions{Keys: pub(key)})
			if err != nil {
				t.Fatal(err)
			}
			if rep.OK() {
				t.Fatal("reordering not detected")
			}
			p := rep.Problems[0]
			if p.Kind != audit.ProblemIndexMismatch && p.Kind != audit.ProblemReordered || p.Position != 6 {
				t.Fatalf("first problem %v, want index-mismatch or reordered at position 6 (all: %v)", p, rep.Problems)
			}
		})
	}
}

// at is a time with microsecond precision, what occurred_at keeps.
var auditT0 = time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)

func record(node string, seq uint64, typ string, at time.Time) audit.Sealed {
	line := fmt.Appendf(nil, `{"node":%q,"seq":%d,"prev":"","source":"host","eventType":%q,"occurredAt":%q,"tenant":"t-%s"}`,
		node, seq, typ, at.UTC().Format(time.RFC3339Nano), node)
	return audit.Sealed{Node: node, Seq: seq, Hash: audit.Hash(line), Source: "host", EventType: typ,
		Tenant: "t-" + node, OccurredAt: at, Line: line}
}

func records(node string, from, to uint64) []audit.Sealed {
	var out []audit.Sealed
	for s := from; s <= to; s++ {
		out = append(out, record(node, s, "authority.token.issued", auditT0.Add(time.Duration(s)*time.Second)))
	}
	return out
}

func scanAll(t testing.TB, s audit.Store) []audit.Sealed {
	t.Helper()
	var out []audit.Sealed
	if err := s.Scan(context.Background(), func(r audit.Sealed) error { out = append(out, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func positions(rs []audit.Sealed) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = fmt.Sprintf("%s/%d", r.Node, r.Seq)
	}
	return out
}

func TestAuditMigration(t *testing.T) {
	dsn, schema := freshSchema(t)
	ctx := context.Background()
	if _, err := postgres.OpenAuditDSN(ctx, dsn, schema, false); err == nil || !strings.Contains(err.Error(), "run the migrations") {
		t.Fatalf("OpenAuditDSN without migrations on an empty schema: %v", err)
	}
	ms, err := postgres.Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 2 || ms[1].Version != 2 || ms[1].Name != "authority_audit" {
		t.Fatalf("migration 0002: %+v", ms)
	}
	if _, err := postgres.MigrateDSN(ctx, dsn, schema); err != nil {
		t.Fatal(err)
	}
	s, err := postgres.OpenAuditDSN(ctx, dsn, schema, false)
	if err != nil {
		t.Fatalf("OpenAuditDSN on a migrated schema: %v", err)
	}
	defer s.Close()
	db := schemaPool(t, dsn, schema)
	rows, err := db.Query(ctx, `SELECT column_name, data_type FROM information_schema.columns
		WHERE table_schema = $1 AND table_name = 'authority_audit' ORDER BY ordinal_position`, schema)
	if err != nil {
		t.Fatal(err)
	}
	cols := map[string]string{}
	var name, typ string
	if _, err := pgx.ForEachRow(rows, []any{&name, &typ}, func() error { cols[name] = typ; return nil }); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"node": "text", "seq": "bigint", "hash": "text", "source": "text", "event_type": "text",
		"tenant": "text", "occurred_at": "timestamp with time zone", "recorded_at": "timestamp with time zone",
		"body": "text"} // text: jsonb would not keep the bytes the hashes cover
	for c, ty := range want {
		if cols[c] != ty {
			t.Errorf("column %s: %q, want %q", c, cols[c], ty)
		}
	}
	var pk string
	if err := db.QueryRow(ctx, `SELECT pg_get_constraintdef(oid) FROM pg_constraint
		WHERE conrelid = 'authority_audit'::regclass AND contype = 'p'`).Scan(&pk); err != nil {
		t.Fatal(err)
	}
	if pk != "PRIMARY KEY (node, seq)" {
		t.Errorf("primary key %q", pk)
	}
	rows, err = db.Query(ctx, `SELECT indexdef FROM pg_indexes WHERE schemaname = $1 AND tablename = 'authority_audit'`, schema)
	if err != nil {
		t.Fatal(err)
	}
	defs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]bool{}
	for _, d := range defs {
		if _, k, ok := strings.Cut(d, " USING btree "); ok {
			keys[k] = true
		}
	}
	for _, k := range []string{"(node, seq)", "(tenant, occurred_at)"} {
		if !keys[k] {
			t.Errorf("no index on %s: %v", k, defs)
		}
	}
	// Retention reads the checkpoints' partial index; no other index is
	// paid for on every insert.
	var partial bool
	for k := range keys {
		partial = partial || strings.HasPrefix(k, "(occurred_at) INCLUDE (node, seq) WHERE")
	}
	if !partial || len(defs) != 3 {
		t.Errorf("indexes %v: want the primary key, (tenant, occurred_at) and the checkpoints' partial index", defs)
	}
}

// The body comes back byte for byte, whatever its key order, spacing or
// characters, and the index columns as written.
func TestAuditBodyBytesExact(t *testing.T) {
	s, _ := openAudit(t)
	ctx := context.Background()
	line := []byte(`{"node":"n","seq":1,  "z":1,"a":"é\u00e9 \" \\","eventType":"authority.x.y" ,"n":1.50}`)
	in := audit.Sealed{Node: "n", Seq: 1, Hash: audit.Hash(line), Source: "plugin:p", EventType: "authority.x.y",
		Tenant: "t", OccurredAt: auditT0, Line: line}
	if err := s.Append(ctx, []audit.Sealed{in}); err != nil {
		t.Fatal(err)
	}
	got := scanAll(t, s)
	if len(got) != 1 {
		t.Fatalf("%d records", len(got))
	}
	g := got[0]
	if string(g.Line) != string(line) || g.Node != "n" || g.Seq != 1 || g.Hash != in.Hash || g.Source != "plugin:p" ||
		g.EventType != "authority.x.y" || g.Tenant != "t" || !g.OccurredAt.Equal(auditT0) || g.OccurredAt.Location() != time.UTC {
		t.Fatalf("scanned %+v (line %s), wrote %+v", g, g.Line, in)
	}
}

// Scan reads the table a page at a time: every record, in (node, seq)
// order, however the nodes were interleaved; an error from fn stops it.
func TestAuditScanPages(t *testing.T) {
	s, _ := openAudit(t)
	ctx := context.Background()
	var want []audit.Sealed
	for round := range 4 {
		var batch []audit.Sealed
		for _, node := range []string{"node-b", "node-a", "node-c"} {
			from := uint64(round*120 + 1)
			batch = append(batch, records(node, from, from+119)...)
		}
		if err := s.Append(ctx, batch); err != nil {
			t.Fatal(err)
		}
		want = append(want, batch...)
	}
	slices.SortFunc(want, func(a, b audit.Sealed) int {
		if c := strings.Compare(a.Node, b.Node); c != 0 {
			return c
		}
		return int(a.Seq) - int(b.Seq)
	})
	got := scanAll(t, s)
	if !slices.Equal(positions(got), positions(want)) {
		t.Fatalf("scan order:\n%v\nwant\n%v", positions(got), positions(want))
	}
	for i := range got {
		if string(got[i].Line) != string(want[i].Line) || got[i].Hash != want[i].Hash {
			t.Fatalf("record %d: %s, want %s", i, got[i].Line, want[i].Line)
		}
	}
	stop := errors.New("stop")
	n := 0
	err := s.Scan(ctx, func(audit.Sealed) error {
		if n++; n == 700 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 700 {
		t.Fatalf("scan stopped at %d with %v", n, err)
	}
}

// A batch refused as a conflict leaves nothing of itself, however it
// conflicts: a position another transaction took while the INSERT ran
// (the primary key), one behind the node's head (purged below it), or an
// order that goes backwards.
func TestAuditConflictWritesNothing(t *testing.T) {
	ctx := context.Background()
	check := func(t *testing.T, s audit.Store, want []string) {
		t.Helper()
		if got := positions(scanAll(t, s)); !slices.Equal(got, want) {
			t.Fatalf("stored %v, want %v", got, want)
		}
	}
	t.Run("primary key", func(t *testing.T) {
		ts, s := openSharedAudit(t, postgres.Options{RequestTimeout: time.Minute})
		if err := s.Append(ctx, records("n", 1, 3)); err != nil {
			t.Fatal(err)
		}
		// Another writer has seq 5 inserted, not yet committed: the batch
		// does not see it, and its INSERT waits for that transaction.
		other, err := ts.Pool().Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Rollback(ctx)
		r5 := record("n", 5, "authority.other", auditT0)
		if _, err := other.Exec(ctx, `INSERT INTO authority_audit (node, seq, hash, source, event_type, tenant, occurred_at, body)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, r5.Node, int64(r5.Seq), r5.Hash, r5.Source, r5.EventType, r5.Tenant,
			r5.OccurredAt, string(r5.Line)); err != nil {
			t.Fatal(err)
		}
		var otherPID int
		if err := other.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&otherPID); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- s.Append(ctx, records("n", 4, 40)) }()
		waitBlockedBy(t, ts.Pool(), otherPID)
		if err := other.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		err = <-done
		if !errors.Is(err, audit.ErrConflict) || !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("append over a concurrent writer's position: %v, want ErrConflict from the primary key", err)
		}
		check(t, s, []string{"n/1", "n/2", "n/3", "n/5"})
	})
	t.Run("behind the head", func(t *testing.T) {
		s, db := openAudit(t)
		if err := s.Append(ctx, records("n", 1, 6)); err != nil {
			t.Fatal(err)
		}
		sqlTamper{db}.exec(t, 3, `DELETE FROM authority_audit WHERE seq < 4`) // as a purge would
		err := s.Append(ctx, append(records("m", 1, 5), records("n", 2, 3)...))
		if !errors.Is(err, audit.ErrConflict) {
			t.Fatalf("append behind the head: %v, want ErrConflict", err)
		}
		check(t, s, []string{"n/4", "n/5", "n/6"})
	})
	t.Run("out of order", func(t *testing.T) {
		s, _ := openAudit(t)
		batch := records("n", 1, 5)
		batch[2], batch[3] = batch[3], batch[2]
		if err := s.Append(ctx, batch); !errors.Is(err, audit.ErrConflict) {
			t.Fatalf("append out of chain order: %v, want ErrConflict", err)
		}
		check(t, s, []string{})
	})
}

// waitBlockedBy waits until a session of the test database waits for a
// lock that the session pid holds.
func waitBlockedBy(t *testing.T, db *pgxpool.Pool, pid int) (blocked int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		err := db.QueryRow(context.Background(), `SELECT pid FROM pg_stat_activity WHERE $1 = ANY (pg_blocking_pids(pid))`, pid).Scan(&blocked)
		if err == nil {
			return blocked
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the append never reached the lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lockAudit holds an ACCESS EXCLUSIVE lock on authority_audit (through
// db's search_path) until release; it returns the holder's backend pid.
func lockAudit(t *testing.T, db *pgxpool.Pool) (pid int, release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE authority_audit IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	released := false
	release = func() {
		if !released {
			released = true
			_ = tx.Rollback(ctx)
		}
	}
	t.Cleanup(release)
	return pid, release
}

// waitGone waits until backend pid has ended (its transaction with it).
func waitGone(t *testing.T, db *pgxpool.Pool, pid int) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		var n int
		if err := db.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend %d still running", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Append gives up when its context ends, before or during the INSERT, and
// nothing of the batch is committed: COMMIT is never sent.
func TestAuditAppendHonoursContext(t *testing.T) {
	t.Run("cancelled before", func(t *testing.T) {
		s, _ := openAudit(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.Append(ctx, records("n", 1, 3)); !errors.Is(err, context.Canceled) {
			t.Fatalf("append with a cancelled context: %v", err)
		}
		if got := scanAll(t, s); len(got) != 0 {
			t.Fatalf("%d records written", len(got))
		}
	})
	t.Run("cancelled while waiting", func(t *testing.T) {
		// A long request timeout: only the context can end the wait. One
		// connection, on which the INSERT is already prepared: the second
		// Append sends it whole and waits in its execution, where a
		// statement of its own would have committed once the lock went.
		ts, s := openSharedAudit(t, postgres.Options{RequestTimeout: 10 * time.Minute, MaxConns: 1, Batchers: 1})
		if err := s.Append(context.Background(), records("n", 1, 2)); err != nil {
			t.Fatal(err)
		}
		// The lock and the watching need connections of their own.
		cfg := ts.Pool().Config()
		db := searchPathPool(t, cfg.ConnString(), cfg.ConnConfig.RuntimeParams["search_path"])
		holder, release := lockAudit(t, db)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel() // a failure below must not leave the append holding the pool
		done := make(chan error, 1)
		go func() { done <- s.Append(ctx, records("n", 3, 64)) }()
		blocked := waitBlockedBy(t, db, holder)
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("append cancelled behind a lock: %v", err)
		}
		release()
		waitGone(t, db, blocked)
		if got := positions(scanAll(t, s)); !slices.Equal(got, []string{"n/1", "n/2"}) {
			t.Fatalf("a cancelled append left %v", got)
		}
		// The store still works.
		if err := s.Append(context.Background(), records("n", 3, 4)); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("statement timeout", func(t *testing.T) {
		// The caller's context never ends: the store's own timeout does.
		ts, s := openSharedAudit(t, postgres.Options{RequestTimeout: 200 * time.Millisecond})
		_, release := lockAudit(t, ts.Pool())
		ctx := context.Background()
		if err := s.Append(ctx, records("n", 1, 8)); err == nil {
			t.Fatal("append behind a lock succeeded")
		}
		if _, _, err := s.Head(ctx, "n"); err == nil {
			t.Fatal("head behind a lock succeeded")
		}
		release()
		if got := scanAll(t, s); len(got) != 0 {
			t.Fatalf("a timed-out append left %d records", len(got))
		}
	})
}

// The audit store of a token store shares its pool: closing it leaves the
// token store working; closing the token store ends it.
func TestAuditSharedPoolClose(t *testing.T) {
	ts, a := openSharedAudit(t, postgres.Options{})
	ctx := context.Background()
	if err := a.Append(ctx, records("n", 1, 2)); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := a.Append(ctx, records("n", 3, 3)); err == nil {
		t.Fatal("append after Close succeeded")
	}
	if err := a.Ping(ctx); err == nil {
		t.Fatal("ping after Close succeeded")
	}
	if err := ts.Put(ctx, token("after-audit-close")); err != nil {
		t.Fatalf("token store after the audit store's Close: %v", err)
	}
	if err := ts.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	b := ts.Audit()
	if seq, _, err := b.Head(ctx, "n"); err != nil || seq != 2 {
		t.Fatalf("a second audit store: head %d, %v", seq, err)
	}
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Head(ctx, "n"); err == nil {
		t.Fatal("audit store usable after the token store's Close")
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

// Purge deletes in SQL exactly what audit.PurgeBounds says, for many nodes
// and cutoffs: the same records go as from a MemoryStore given the same
// ones.
func TestAuditPurgeMatchesPurgeBounds(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	var recs []audit.Sealed
	for _, node := range []string{"a", "b", "c", "d", "e"} {
		n := 20 + rng.IntN(40)
		at := auditT0
		for seq := uint64(1); seq <= uint64(n); seq++ {
			at = at.Add(time.Duration(1+rng.IntN(600)) * time.Second)
			typ := "authority.token.issued"
			// Node e has no checkpoint at all: it keeps everything.
			if node != "e" && rng.IntN(5) == 0 {
				typ = audit.EventCheckpoint
			}
			recs = append(recs, record(node, seq, typ, at))
		}
	}
	span := recs[len(recs)-1].OccurredAt.Sub(auditT0)
	var purged []int64
	defer func() {
		// The cutoffs range from purging nothing to purging most.
		if !t.Failed() && (purged[0] != 0 || slices.Max(purged) < int64(len(recs)/2)) {
			t.Errorf("purged %v of %d records: the cutoffs do not cover the range", purged, len(recs))
		}
	}()
	for i := range 8 {
		cutoff := auditT0.Add(span * time.Duration(i) / 6) // before the first record to after the last
		t.Run(cutoff.Format(time.TimeOnly), func(t *testing.T) {
			s, _ := openAudit(t)
			mem := audit.NewMemoryStore()
			for _, st := range []audit.Store{s, mem} {
				if err := st.Append(ctx, recs); err != nil {
					t.Fatal(err)
				}
			}
			want, _ := mem.Purge(ctx, cutoff)
			got, err := s.Purge(ctx, cutoff)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("purged %d, PurgeBounds says %d", got, want)
			}
			purged = append(purged, got)
			if g, w := positions(scanAll(t, s)), positions(scanAll(t, mem)); !slices.Equal(g, w) {
				t.Fatalf("left %v, want %v", g, w)
			}
			if n, err := s.Purge(ctx, cutoff); err != nil || n != 0 {
				t.Fatalf("second purge: %d, %v", n, err)
			}
		})
	}
	t.Logf("purged %v of %d records", purged, len(recs))
}

// benchRecord is a realistic sealed record of about 400 bytes.
func benchRecord(node string, seq uint64, prev string, at time.Time) audit.Sealed {
	r := audit.Record{Node: node, Seq: seq, Prev: prev, Source: audit.SourceHost, EventType: "authority.token.issued",
		OccurredAt: at, Tenant: "tenant-a", Outcome: audit.OutcomeSuccess, Client: "client-1", Scopes: []string{"openid", "read"},
		SenderConstraint: &audit.SenderConstraint{Kind: "dpop", JKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I", DPoP: "ok"},
		Properties:       map[string]string{"jti": fmt.Sprintf("jti-%d", seq)}}
	line, err := audit.MarshalRecord(&r)
	if err != nil {
		panic(err)
	}
	return audit.Sealed{Node: node, Seq: seq, Hash: audit.Hash(line), Source: r.Source, EventType: r.EventType,
		Tenant: r.Tenant, OccurredAt: at, Line: line}
}

// BenchmarkAuditAppend: one Append (one committed transaction) of a batch
// of 1, 64 or 512 records of ~400 bytes per op; records/s is the
// throughput of a single writer (audit.Writer appends one batch at a
// time).
func BenchmarkAuditAppend(b *testing.B) {
	for _, size := range []int{1, 64, 512} {
		b.Run(fmt.Sprint("batch=", size), func(b *testing.B) {
			s, _ := openAudit(b)
			ctx := context.Background()
			now := time.Now().UTC()
			seq, head := uint64(0), ""
			var bytes int
			batch := make([]audit.Sealed, size)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				for i := range batch {
					seq++
					batch[i] = benchRecord("bench", seq, head, now)
					head = batch[i].Hash
					bytes += len(batch[i].Line)
				}
				b.StartTimer()
				if err := s.Append(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*size)/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(bytes)/float64(b.N*size), "B/record")
		})
	}
}
