package postgres

// The audit trail's PostgreSQL store: audit.Store on the table
// authority_audit (migrations/0002_authority_audit.sql).
//
// A row is one record of a node's hash chain, keyed by (node, seq); body
// holds the record's exact encoding (the bytes its hash covers) and the
// other columns repeat what body says, as an index. audit.Verify compares
// the two, so a body edited behind the store's back, or moved to another
// row, is reported.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"stellaops.org/authority/host/audit"
)

// AuditStore is audit.Store on the table authority_audit. Get one with
// Store.Audit (sharing the token store's pool) or OpenAuditDSN (its own
// pool). It is safe for concurrent use.
//
// Every call but Purge and Ping is bounded by the store's request timeout
// (Options.RequestTimeout of the token store, DefaultRequestTimeout for
// OpenAuditDSN): its context gets that deadline, and the server's
// statement_timeout and lock_timeout are set to it on every connection.
type AuditStore struct {
	pool    *pgxpool.Pool
	timeout time.Duration
	// owner is the token store whose pool this is, or nil when the pool is
	// this store's own (OpenAuditDSN) and Close closes it.
	owner  *Store
	closed atomic.Bool
}

var _ audit.Store = (*AuditStore)(nil)

// errAuditClosed is returned by every call after Close (or, for a shared
// pool, after the token store's Close).
var errAuditClosed = errors.New("postgres: audit store closed")

// auditScanPage is how many rows Scan reads per query.
const auditScanPage = 500

// Audit returns the audit store on the token store's pool and schema (the
// migrations that created authority_tokens created authority_audit too).
// Its Close does not close the pool: the token store's Close does, after
// which the audit store fails every call. Close an audit.Writer on it
// before the token store, so its final checkpoint is written.
//
// Each Append, Head and Scan page holds one of the pool's connections
// (Options.MaxConns) for the length of one statement; a Writer appends one
// batch at a time.
func (s *Store) Audit() *AuditStore {
	return &AuditStore{pool: s.pool, timeout: s.opts.RequestTimeout, owner: s}
}

// OpenAuditDSN opens the audit store on its own small pool to dsn, for
// tools that need the audit table without a token store (authority-host
// audit verify). schema is as Options.Schema ("" for the server's
// search_path). With migrate, the schema is brought up to date first (all
// migrations, the token table's included); without it, the table must
// exist already. Close it.
func OpenAuditDSN(ctx context.Context, dsn, schema string, migrate bool) (*AuditStore, error) {
	if dsn == "" {
		return nil, errors.New("postgres: audit: dsn: must be set")
	}
	if err := checkSchema(schema); err != nil {
		return nil, fmt.Errorf("postgres: audit: %w", err)
	}
	cfg, err := poolConfig(dsn, 4, DefaultRequestTimeout, schema)
	if err != nil {
		return nil, fmt.Errorf("postgres: audit: dsn: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: audit: connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: audit: connect: %w", err)
	}
	if migrate {
		if _, err := Migrate(ctx, pool, schema); err != nil {
			pool.Close()
			return nil, err
		}
	} else {
		var exists bool
		if err := pool.QueryRow(ctx, `SELECT to_regclass('authority_audit') IS NOT NULL`).Scan(&exists); err != nil {
			pool.Close()
			return nil, fmt.Errorf("postgres: audit: %w", err)
		}
		if !exists {
			pool.Close()
			return nil, fmt.Errorf("postgres: audit: no table authority_audit in schema %q: run the migrations", schema)
		}
	}
	return &AuditStore{pool: pool, timeout: DefaultRequestTimeout}, nil
}

func (a *AuditStore) check() error {
	if a.closed.Load() || a.owner != nil && a.owner.isClosed() {
		return errAuditClosed
	}
	return nil
}

func (a *AuditStore) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, a.timeout)
}

// appendSQL inserts the batch (arrays, one element per record) unless a
// record of one of its nodes is already at or after that node's first
// position in the batch: then it inserts nothing (0 rows), as
// audit.MemoryStore refuses a stale head. Two writers racing on one
// position are stopped by the primary key (23505) instead.
const appendSQL = `
	WITH b AS (
		SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[],
			$7::timestamptz[], $8::text[]) AS b(node, seq, hash, source, event_type, tenant, occurred_at, body)),
	taken AS (
		SELECT 1 FROM (SELECT node, min(seq) AS seq FROM b GROUP BY node) f
		WHERE EXISTS (SELECT 1 FROM authority_audit a WHERE a.node = f.node AND a.seq >= f.seq))
	INSERT INTO authority_audit (node, seq, hash, source, event_type, tenant, occurred_at, body)
	SELECT node, seq, hash, source, event_type, tenant, occurred_at, body FROM b
	WHERE NOT EXISTS (SELECT 1 FROM taken)`

// Append implements audit.Store: one INSERT of the whole batch in its own
// transaction, committed before it returns. A batch with a record at a
// position already held (or behind its node's head) writes nothing and
// returns an error wrapping audit.ErrConflict.
//
// The transaction is explicit so that a ctx that ends, or a statement
// timeout, before the INSERT is done leaves nothing behind: COMMIT is sent
// only after it. Only a failure during COMMIT itself leaves the outcome
// unknown, which audit.Writer resolves with Head.
func (a *AuditStore) Append(ctx context.Context, batch []audit.Sealed) error {
	if err := a.check(); err != nil {
		return err
	}
	if len(batch) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	n := len(batch)
	var (
		nodes   = make([]string, n)
		seqs    = make([]int64, n)
		hashes  = make([]string, n)
		sources = make([]string, n)
		types   = make([]string, n)
		tenants = make([]string, n)
		times   = make([]time.Time, n)
		bodies  = make([]string, n)
		last    = map[string]uint64{}
	)
	for i, r := range batch {
		if r.Node == "" || r.Seq == 0 || r.Seq > math.MaxInt64 {
			return fmt.Errorf("postgres: audit append: record %d of the batch: no chain position (node %q, seq %d)", i, r.Node, r.Seq)
		}
		if prev, ok := last[r.Node]; ok && r.Seq <= prev {
			return fmt.Errorf("postgres: audit append: %w: node %s seq %d follows seq %d in the batch", audit.ErrConflict, r.Node, r.Seq, prev)
		}
		last[r.Node] = r.Seq
		nodes[i], seqs[i], hashes[i], sources[i] = r.Node, int64(r.Seq), r.Hash, r.Source
		types[i], tenants[i], times[i], bodies[i] = r.EventType, r.Tenant, r.OccurredAt, string(r.Line)
	}
	ctx, cancel := a.bounded(ctx)
	defer cancel()
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: audit append: begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit; a cancelled ctx closes the connection, which ends the transaction too
	tag, err := tx.Exec(ctx, appendSQL, nodes, seqs, hashes, sources, types, tenants, times, bodies)
	if err != nil {
		if pgErr, ok := errors.AsType[*pgconn.PgError](err); ok && pgErr.Code == "23505" {
			return fmt.Errorf("postgres: audit append: %w (%s)", audit.ErrConflict, pgErr.Detail)
		}
		return fmt.Errorf("postgres: audit append: %w", err)
	}
	if tag.RowsAffected() != int64(n) {
		return fmt.Errorf("postgres: audit append: %w: a node of the batch already has records at or after its position", audit.ErrConflict)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: audit append: commit: %w", err)
	}
	return nil
}

// Head implements audit.Store.
func (a *AuditStore) Head(ctx context.Context, node string) (uint64, string, error) {
	if err := a.check(); err != nil {
		return 0, "", err
	}
	ctx, cancel := a.bounded(ctx)
	defer cancel()
	var seq int64
	var hash string
	err := a.pool.QueryRow(ctx, `SELECT seq, hash FROM authority_audit WHERE node = $1 ORDER BY seq DESC LIMIT 1`,
		node).Scan(&seq, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("postgres: audit head: %w", err)
	}
	return uint64(seq), hash, nil
}

// Scan implements audit.Store: every row in (node, seq) order, Node, Seq
// and Hash from the columns (the store's index) and Line the body. It
// reads a page of rows per query (keyset on the primary key) and calls fn
// between queries, so neither the table nor a long-running statement is
// held while a large trail is verified. Each page is its own snapshot:
// records appended during the scan may or may not be seen.
func (a *AuditStore) Scan(ctx context.Context, fn func(audit.Sealed) error) error {
	var (
		node string
		seq  int64
		page = make([]audit.Sealed, 0, auditScanPage)
	)
	for {
		if err := a.check(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		if page, err = a.scanPage(ctx, node, seq, page[:0]); err != nil {
			return err
		}
		for _, r := range page {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(page) < auditScanPage {
			return nil
		}
		last := page[len(page)-1]
		node, seq = last.Node, int64(last.Seq)
		clear(page)
	}
}

// scanPage appends to page the rows after (node, seq), in order.
func (a *AuditStore) scanPage(ctx context.Context, node string, seq int64, page []audit.Sealed) ([]audit.Sealed, error) {
	ctx, cancel := a.bounded(ctx)
	defer cancel()
	rows, err := a.pool.Query(ctx, `
		SELECT node, seq, hash, source, event_type, tenant, occurred_at, body FROM authority_audit
		WHERE (node, seq) > ($1, $2) ORDER BY node, seq LIMIT $3`, node, seq, auditScanPage)
	if err != nil {
		return page, fmt.Errorf("postgres: audit scan: %w", err)
	}
	var r audit.Sealed
	var s int64
	_, err = pgx.ForEachRow(rows, []any{&r.Node, &s, &r.Hash, &r.Source, &r.EventType, &r.Tenant, &r.OccurredAt, &r.Line},
		func() error {
			r.Seq, r.OccurredAt = uint64(s), r.OccurredAt.UTC()
			page = append(page, r)
			r.Line = nil // the next row's body gets its own slice
			return nil
		})
	if err != nil {
		return page, fmt.Errorf("postgres: audit scan: %w", err)
	}
	return page, nil
}

// purgeSQL deletes, per node, the records before that node's latest
// checkpoint that occurred before $1 (audit.PurgeBounds).
const purgeSQL = `
	WITH bounds AS (
		SELECT node, max(seq) AS keep_from FROM authority_audit
		WHERE event_type = $2 AND source = 'host' AND occurred_at < $1
		GROUP BY node)
	DELETE FROM authority_audit a USING bounds b
	WHERE a.node = b.node AND a.seq < b.keep_from`

// Purge implements audit.Store: one DELETE in one transaction, so what is
// left of every chain starts at a signed checkpoint (audit.PurgeBounds).
// Its length depends on the backlog, so the statement timeout is lifted
// for it and ctx bounds it instead; the lock timeout stays.
//
// occurred_at holds microseconds, the records nanoseconds: a checkpoint
// within the same microsecond as cutoff may be kept where PurgeBounds
// would purge before it, never the other way round.
func (a *AuditStore) Purge(ctx context.Context, cutoff time.Time) (int64, error) {
	if err := a.check(); err != nil {
		return 0, err
	}
	tx, err := a.pool.Begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("postgres: audit purge: begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // no-op after Commit; a cancelled ctx closes the connection, which ends the transaction too
	if _, err := tx.Exec(ctx, `SET LOCAL statement_timeout = 0`); err != nil {
		return 0, fmt.Errorf("postgres: audit purge: statement_timeout: %w", err)
	}
	tag, err := tx.Exec(ctx, purgeSQL, cutoff, audit.EventCheckpoint)
	if err != nil {
		return 0, fmt.Errorf("postgres: audit purge: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("postgres: audit purge: commit: %w", err)
	}
	return tag.RowsAffected(), nil
}

// Ping implements audit.Store: the table answers (it exists and may be
// read), within the caller's deadline.
func (a *AuditStore) Ping(ctx context.Context) error {
	if err := a.check(); err != nil {
		return err
	}
	if _, err := a.pool.Exec(ctx, `SELECT 1 FROM authority_audit LIMIT 0`); err != nil {
		return fmt.Errorf("postgres: audit ping: %w", err)
	}
	return nil
}

// Close implements audit.Store. It closes the pool only if it is the
// store's own (OpenAuditDSN); it is safe to call more than once.
func (a *AuditStore) Close() error {
	if a.closed.Swap(true) {
		return nil
	}
	if a.owner == nil {
		a.pool.Close()
	}
	return nil
}
