// Package postgres is the PostgreSQL store.TokenStore, for deployments with
// several Authority nodes.
//
// Writes use group commit: concurrent Put calls are queued to a few batcher
// goroutines, each of which inserts whatever is queued (up to
// Options.BatchMax tokens) with one INSERT statement, i.e. one transaction
// and one WAL flush, and then answers every caller with its own result. See
// the comment at the top of batch.go. Reads and revocations are plain
// statements.
//
// The schema is created and upgraded by the embedded, versioned migrations
// (migrations/NNNN_name.sql) through Migrate; Open runs it unless told not to.
//
// AuditStore (audit.go) is the audit trail's audit.Store on the table
// authority_audit, on the token store's pool (Store.Audit) or its own
// (OpenAuditDSN).
package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"stellaops.org/authority/host/store"
)

// Options configures Open. Only DSN is required.
type Options struct {
	// DSN is a libpq connection string or URL.
	DSN string
	// MaxConns caps the connection pool. Default 8.
	MaxConns int32
	// Schema, if set, is the schema the tables live in: it is put on the
	// search_path of every connection and created (with the tables) by the
	// migrations. It must be a plain identifier. Default: the server's
	// search_path.
	Schema string
	// SkipMigrations makes Open trust that Migrate has already been run.
	SkipMigrations bool
	// BatchMax is the most tokens one group commit inserts. Default 64.
	// 1 disables group commit: each Put then runs its own INSERT on the
	// caller's goroutine (one commit per token; kept as a baseline).
	BatchMax int
	// BatchWait is how long a batcher that found fewer than BatchMax tokens
	// queued waits for more before inserting. Default 0: take whatever is
	// queued now, since the other batchers' commits already give the queue
	// time to fill under load and waiting only adds latency when idle.
	BatchWait time.Duration
	// Batchers is how many group commits may be in flight at once (at most
	// MaxConns/2, leaving connections for reads and revokes). Default 2:
	// one batch can commit while the next one fills. On the reference
	// machine 1, 2 and 4 batchers measured within noise of each other at 32
	// concurrent writers (the WAL flush, not the number of writers, bounds
	// throughput; see docs/benchmarks.md); 8 was slower. Raise it when
	// single commits can be slow for reasons other than the flush (lock
	// waits, network).
	Batchers int
	// RequestTimeout bounds every call a request makes, waiting for a
	// place in the write queue and for its batch included: the call's
	// context gets this deadline, and every pool connection carries it as
	// statement_timeout and lock_timeout, so the server gives up too
	// instead of holding a lock or a connection for a client that has
	// gone. Default 3s (well below the HTTP write timeout, so every
	// request gets an answer).
	RequestTimeout time.Duration
	// QueueSize is how many writes may wait for a batcher. A Put that finds
	// the queue full fails at once with store.ErrBusy instead of waiting
	// behind work that cannot finish in time. Default 1024.
	QueueSize int
	// WriteTimeout bounds one batch insert, which runs independently of
	// any caller's context. Default RequestTimeout.
	WriteTimeout time.Duration
	// CloseTimeout bounds Close: writes still queued or in flight after it
	// fail with store.ErrClosed. Default 10s.
	CloseTimeout time.Duration
}

func (o *Options) setDefaults() error {
	if o.DSN == "" {
		return errors.New("postgres: options.dsn: must be set")
	}
	if err := checkSchema(o.Schema); err != nil {
		return fmt.Errorf("postgres: options.schema: %w", err)
	}
	for _, f := range []struct {
		name  string
		value int64
	}{{"maxConns", int64(o.MaxConns)}, {"batchMax", int64(o.BatchMax)}, {"batchWait", int64(o.BatchWait)},
		{"batchers", int64(o.Batchers)}, {"writeTimeout", int64(o.WriteTimeout)}, {"requestTimeout", int64(o.RequestTimeout)},
		{"queueSize", int64(o.QueueSize)}, {"closeTimeout", int64(o.CloseTimeout)}} {
		if f.value < 0 {
			return fmt.Errorf("postgres: options.%s: must be >= 0", f.name)
		}
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = DefaultRequestTimeout
	}
	if o.QueueSize == 0 {
		o.QueueSize = 1024
	}
	if o.CloseTimeout == 0 {
		o.CloseTimeout = 10 * time.Second
	}
	if o.MaxConns == 0 {
		o.MaxConns = 8
	}
	if o.BatchMax == 0 {
		o.BatchMax = 64
	}
	if o.Batchers == 0 {
		o.Batchers = 2
	}
	if limit := max(1, int(o.MaxConns)/2); o.Batchers > limit {
		return fmt.Errorf("postgres: options.batchers: %d exceeds maxConns/2 (%d)", o.Batchers, limit)
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = o.RequestTimeout
	}
	return nil
}

// DefaultRequestTimeout is Options.RequestTimeout's default.
const DefaultRequestTimeout = 3 * time.Second

// Store is the PostgreSQL TokenStore. Create it with Open; it is safe for
// concurrent use.
//
// Put durability: Put returns nil only after the INSERT carrying the token
// has committed. If the caller's ctx ends first, Put returns ctx.Err(); a
// token not yet handed to the database is then dropped, but one whose batch
// is already executing may still commit. A caller that gets ctx.Err() must
// therefore treat the token as "maybe stored" (harmless for issuance: the
// JWT was never returned to the client, and the row expires).
type Store struct {
	pool *pgxpool.Pool
	opts Options

	closeMu sync.RWMutex // held shared while sending to queue; exclusively by Close
	closed  bool
	queue   chan *putRequest
	wg      sync.WaitGroup
	// base is the parent of every batch's context; Close cancels it when
	// its deadline passes, so a stuck batch cannot hold Close up.
	base       context.Context
	cancelBase context.CancelFunc
}

// bounded returns ctx with the per-request deadline (an earlier deadline
// of the caller's wins).
func (s *Store) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opts.RequestTimeout)
}

var _ store.TokenStore = (*Store)(nil)

// Open connects to PostgreSQL, applies the migrations (unless
// SkipMigrations), and starts the batchers. The returned Store owns its pool;
// Close it.
func Open(ctx context.Context, opts Options) (*Store, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	cfg, err := poolConfig(opts.DSN, opts.MaxConns, opts.RequestTimeout, opts.Schema)
	if err != nil {
		return nil, fmt.Errorf("postgres: options.dsn: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if !opts.SkipMigrations {
		if _, err := Migrate(ctx, pool, opts.Schema); err != nil {
			pool.Close()
			return nil, err
		}
	}
	s := &Store{pool: pool, opts: opts}
	s.base, s.cancelBase = context.WithCancel(context.Background())
	if opts.BatchMax > 1 {
		s.queue = make(chan *putRequest, opts.QueueSize)
		for range opts.Batchers {
			s.wg.Add(1)
			go s.runBatcher()
		}
	}
	return s, nil
}

// poolConfig is the pool configuration of dsn: at most maxConns
// connections, each with timeout as statement_timeout and lock_timeout, so
// the server abandons a statement (and a lock wait) when the request that
// issued it has given up (a migration lifts both with SET LOCAL), and with
// schema, if set, as its search_path.
func poolConfig(dsn string, maxConns int32, timeout time.Duration, schema string) (*pgxpool.Config, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = maxConns
	ms := fmt.Sprint(timeout.Milliseconds())
	cfg.ConnConfig.RuntimeParams["statement_timeout"] = ms
	cfg.ConnConfig.RuntimeParams["lock_timeout"] = ms
	if schema != "" {
		cfg.ConnConfig.RuntimeParams["search_path"] = pgx.Identifier{schema}.Sanitize()
	}
	return cfg, nil
}

// Pool exposes the connection pool (for migrations tooling and readiness
// checks); closing it is the Store's job.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

const selectColumns = `id, kind, tenant, client_id, subject, scopes, audiences, issued_at, expires_at,
	status, revoked_at, sender_constraint, COALESCE(key_thumbprint, ''), COALESCE(sender_certificate, ''),
	COALESCE(parent_id, ''), auth_time`

// Get returns the stored token (see store.TokenStore.Get).
func (s *Store) Get(ctx context.Context, id string) (*store.Token, error) {
	if s.isClosed() {
		return nil, store.ErrClosed
	}
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	t, err := scanToken(s.pool.QueryRow(ctx, `SELECT `+selectColumns+` FROM authority_tokens WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %q", store.ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: get token: %w", err)
	}
	return t, nil
}

// scanToken reads one row of selectColumns.
func scanToken(row pgx.Row) (*store.Token, error) {
	var (
		t                   store.Token
		kind, status        string
		revokedAt, authTime pgtype.Timestamptz
	)
	if err := row.Scan(&t.ID, &kind, &t.Tenant, &t.ClientID, &t.Subject, &t.Scopes, &t.Audiences, &t.IssuedAt, &t.ExpiresAt,
		&status, &revokedAt, &t.SenderConstraint, &t.KeyThumbprint, &t.SenderCertificate, &t.ParentID, &authTime); err != nil {
		return nil, err
	}
	t.Kind, t.Status = store.Kind(kind), store.Status(status)
	t.IssuedAt, t.ExpiresAt = t.IssuedAt.UTC(), t.ExpiresAt.UTC()
	if revokedAt.Valid {
		t.RevokedAt = revokedAt.Time.UTC()
	}
	if authTime.Valid {
		t.AuthTime = authTime.Time.UTC()
	}
	if len(t.Scopes) == 0 {
		t.Scopes = nil
	}
	if len(t.Audiences) == 0 {
		t.Audiences = nil
	}
	return &t, nil
}

// Rotate uses up an active token (see store.TokenStore.Rotate) in one
// statement: the row lock of the UPDATE makes exactly one of concurrent
// callers, on any node, see the token active. The token as it was comes
// back from the pre-update snapshot.
func (s *Store) Rotate(ctx context.Context, id string, at time.Time) (*store.Token, error) {
	if s.isClosed() {
		return nil, store.ErrClosed
	}
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	at = store.CanonicalTime(at)
	if at.IsZero() {
		return nil, fmt.Errorf("%w: rotatedAt: must be set", store.ErrInvalidToken)
	}
	// The CTE's UPDATE and the outer SELECT see the same snapshot, so the
	// SELECT returns the row as it was; `rotated` says whether this call
	// made the change.
	var rotated bool
	row := s.pool.QueryRow(ctx, `
		WITH u AS (
			UPDATE authority_tokens SET status = 'rotated', revoked_at = $2
			WHERE id = $1 AND status = 'active'
			RETURNING id)
		SELECT `+selectColumns+`, EXISTS (SELECT 1 FROM u) FROM authority_tokens WHERE id = $1`, id, at)
	t, err := scanToken(rowWithTail{row, &rotated})
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: %q", store.ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("postgres: rotate token: %w", err)
	}
	if !rotated {
		return t, fmt.Errorf("%w: %q is %s", store.ErrNotActive, id, t.Status)
	}
	return t, nil
}

// rowWithTail scans a row whose last columns follow selectColumns into tail.
type rowWithTail struct {
	pgx.Row
	tail *bool
}

func (r rowWithTail) Scan(dest ...any) error { return r.Row.Scan(append(dest, r.tail)...) }

// Revoke marks the token revoked (see store.TokenStore.Revoke). One
// statement; concurrent revocations of one token keep the first time.
func (s *Store) Revoke(ctx context.Context, id string, at time.Time) (bool, error) {
	if s.isClosed() {
		return false, store.ErrClosed
	}
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	at = store.CanonicalTime(at)
	if at.IsZero() {
		return false, fmt.Errorf("%w: revokedAt: must be set", store.ErrInvalidToken)
	}
	var known bool
	err := s.pool.QueryRow(ctx, `
		WITH u AS (
			UPDATE authority_tokens SET status = 'revoked', revoked_at = $2
			WHERE id = $1 AND status = 'active'
			RETURNING 1)
		SELECT EXISTS (SELECT 1 FROM u) OR EXISTS (SELECT 1 FROM authority_tokens WHERE id = $1)`,
		id, at).Scan(&known)
	if err != nil {
		return false, fmt.Errorf("postgres: revoke token: %w", err)
	}
	return known, nil
}

// RevokeByParent revokes every active descendant of parentID in one
// statement (a recursive walk of the parent_id index); see
// store.TokenStore.RevokeByParent.
func (s *Store) RevokeByParent(ctx context.Context, parentID string, at time.Time) (int64, error) {
	if s.isClosed() {
		return 0, store.ErrClosed
	}
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	at = store.CanonicalTime(at)
	if at.IsZero() {
		return 0, fmt.Errorf("%w: revokedAt: must be set", store.ErrInvalidToken)
	}
	tag, err := s.pool.Exec(ctx, `
		WITH RECURSIVE family(id) AS (
			SELECT id FROM authority_tokens WHERE parent_id = $1
			UNION
			SELECT t.id FROM authority_tokens t JOIN family f ON t.parent_id = f.id)
		UPDATE authority_tokens SET status = 'revoked', revoked_at = $2
		WHERE id IN (SELECT id FROM family) AND status = 'active'`, parentID, at)
	if err != nil {
		return 0, fmt.Errorf("postgres: revoke family: %w", err)
	}
	return tag.RowsAffected(), nil
}

// purgeChunk bounds one DELETE of PurgeExpired so it never holds locks on a
// huge set of rows at once.
const purgeChunk = 5000

// PurgeExpired deletes every token whose expires_at is before `before`, in
// chunks of a few thousand rows (each its own transaction), and reports how
// many it deleted. If ctx ends midway, the chunks already deleted stay
// deleted and the count so far is returned with the error.
func (s *Store) PurgeExpired(ctx context.Context, before time.Time) (int64, error) {
	if s.isClosed() {
		return 0, store.ErrClosed
	}
	var total int64
	for {
		tag, err := s.pool.Exec(ctx, `
			DELETE FROM authority_tokens WHERE id IN (
				SELECT id FROM authority_tokens WHERE expires_at < $1 LIMIT $2)`, before, purgeChunk)
		if err != nil {
			return total, fmt.Errorf("postgres: purge expired: %w", err)
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < purgeChunk {
			return total, nil
		}
	}
}

// Ping checks that the database answers (for /readyz), within the
// caller's deadline (the readiness check's own, not RequestTimeout).
func (s *Store) Ping(ctx context.Context) error {
	if s.isClosed() {
		return store.ErrClosed
	}
	if err := s.pool.Ping(ctx); err != nil {
		return fmt.Errorf("postgres: ping: %w", err)
	}
	return nil
}

// Close stops accepting writes and waits, up to Options.CloseTimeout, until
// every queued Put has been written and answered; after that deadline the
// batches still running are cancelled and every write not yet committed
// fails (store.ErrClosed for those never started). Then it closes the
// pool. It is safe to call more than once.
func (s *Store) Close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	if s.queue != nil {
		close(s.queue)
	}
	s.closeMu.Unlock()
	drained := make(chan struct{})
	go func() { s.wg.Wait(); close(drained) }()
	var err error
	select {
	case <-drained:
	case <-time.After(s.opts.CloseTimeout):
		s.cancelBase()
		<-drained
		err = fmt.Errorf("postgres: close: writes still pending after %s were abandoned", s.opts.CloseTimeout)
	}
	s.cancelBase()
	s.pool.Close()
	return err
}

func (s *Store) isClosed() bool {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	return s.closed
}
