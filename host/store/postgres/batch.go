package postgres

// Group commit.
//
// Why: a token is issued per /token request, and each Put must be durable
// before the JWT goes out. One INSERT per token means one commit and one WAL
// flush (fsync) per token; with 32 concurrent clients the flushes, not the
// CPU, bound throughput. Batching N tokens into one statement pays for one
// flush per N tokens.
//
// How: Put canonicalizes the token and sends a putRequest on s.queue, then
// waits for its answer (or its ctx). Options.Batchers goroutines read the
// queue. A batcher blocks for the first request, then takes whatever else is
// already queued, up to BatchMax, without sleeping (optionally waiting up to
// BatchWait if the batch is not full), and inserts the batch with one
// INSERT ... SELECT FROM unnest($1::text[], ...) ON CONFLICT (id) DO NOTHING
// RETURNING id: one statement, hence one implicit transaction. While a
// batch commits the queue fills up for the next one, so batches grow with
// load by themselves and stay at one token (lowest latency) when idle. With
// Batchers > 1 several batches commit at once, so one slow commit does not
// stall everyone, at the price of smaller batches (see Options.Batchers).
//
// Errors are per token: an ID not returned by RETURNING was a duplicate
// (already stored, or an earlier request in the same batch) and only that
// caller gets ErrDuplicate. If the statement as a whole fails, every token
// is retried as its own INSERT so one bad row never fails the others.

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"stellaops.org/authority/host/store"
)

type putRequest struct {
	ctx  context.Context
	tok  *store.Token // canonical, owned by the store
	done chan error   // buffered: a batcher never blocks on an abandoned caller
}

// Put stores the token (see store.TokenStore.Put and the Store doc for what
// a cancelled ctx means). With BatchMax > 1 it goes through group commit;
// with BatchMax == 1 it is one INSERT on the caller's goroutine.
func (s *Store) Put(ctx context.Context, t *store.Token) error {
	tok, err := store.Canonical(t)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return store.ErrClosed
	}
	ctx, cancel := s.bounded(ctx)
	defer cancel()
	if s.queue == nil { // one commit per token; Close waits for us via closeMu
		defer s.closeMu.RUnlock()
		return s.insertOne(ctx, tok)
	}
	req := &putRequest{ctx: ctx, tok: tok, done: make(chan error, 1)}
	select {
	case s.queue <- req:
		s.closeMu.RUnlock()
	default:
		// A full queue means the batchers cannot keep up (a slow or locked
		// database): waiting would only add this request to the pile.
		s.closeMu.RUnlock()
		return fmt.Errorf("%w: write queue full (%d waiting)", store.ErrBusy, cap(s.queue))
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Store) insertOne(ctx context.Context, tok *store.Token) error {
	ins, err := s.insert(ctx, []*store.Token{tok})
	if err != nil {
		return err
	}
	if !ins[0] {
		return fmt.Errorf("%w: %q", store.ErrDuplicate, tok.ID)
	}
	return nil
}

func (s *Store) runBatcher() {
	defer s.wg.Done()
	batch := make([]*putRequest, 0, s.opts.BatchMax)
	for first := range s.queue {
		batch = s.collect(append(batch[:0], first))
		s.flush(batch)
		clear(batch)
	}
}

// collect adds already-queued requests to batch, up to BatchMax, then waits
// at most BatchWait for more if the batch is still not full.
func (s *Store) collect(batch []*putRequest) []*putRequest {
	max := s.opts.BatchMax
	for len(batch) < max {
		select {
		case r, ok := <-s.queue:
			if !ok {
				return batch
			}
			batch = append(batch, r)
			continue
		default:
		}
		break
	}
	if len(batch) >= max || s.opts.BatchWait <= 0 {
		return batch
	}
	timer := time.NewTimer(s.opts.BatchWait)
	defer timer.Stop()
	for len(batch) < max {
		select {
		case r, ok := <-s.queue:
			if !ok {
				return batch
			}
			batch = append(batch, r)
		case <-timer.C:
			return batch
		}
	}
	return batch
}

// flush writes one batch and answers every request in it exactly once.
func (s *Store) flush(batch []*putRequest) {
	// Requests whose caller already gave up are not written, nor is
	// anything once Close has given up waiting.
	live := make([]*putRequest, 0, len(batch))
	for _, r := range batch {
		if err := r.ctx.Err(); err != nil {
			r.done <- err
			continue
		}
		if s.base.Err() != nil {
			r.done <- store.ErrClosed
			continue
		}
		live = append(live, r)
	}
	if len(live) == 0 {
		return
	}
	// One row per distinct ID; later requests for the same ID are duplicates
	// of the first whatever happens.
	index := make(map[string]int, len(live))
	toks := make([]*store.Token, 0, len(live))
	owner := make([]*putRequest, 0, len(live))
	for _, r := range live {
		if _, ok := index[r.tok.ID]; !ok {
			index[r.tok.ID] = len(toks)
			toks = append(toks, r.tok)
			owner = append(owner, r)
		}
	}

	ctx, cancel := context.WithTimeout(s.base, s.opts.WriteTimeout)
	defer cancel()
	results := make([]error, len(toks))
	inserted, err := s.insertBatch(ctx, toks)
	switch {
	case err == nil:
		for i, ok := range inserted {
			if !ok {
				results[i] = fmt.Errorf("%w: %q", store.ErrDuplicate, toks[i].ID)
			}
		}
	case len(toks) == 1:
		results[0] = err
	default:
		// Isolate the failure: each row on its own.
		for i, tok := range toks {
			results[i] = s.insertOne(ctx, tok)
		}
	}
	for _, r := range live {
		i := index[r.tok.ID]
		switch err := results[i]; {
		case owner[i] == r:
			r.done <- err
		case err == nil:
			r.done <- fmt.Errorf("%w: %q", store.ErrDuplicate, r.tok.ID)
		default:
			r.done <- err
		}
	}
}

const insertSQL = `
INSERT INTO authority_tokens (id, kind, tenant, client_id, subject, scopes, audiences, issued_at,
	expires_at, status, revoked_at, sender_constraint, key_thumbprint, sender_certificate, parent_id, auth_time)
SELECT u.id, u.kind, u.tenant, u.client_id, u.subject, u.scopes::text[], u.audiences::text[], u.issued_at,
	u.expires_at, u.status, u.revoked_at, u.sender_constraint, NULLIF(u.key_thumbprint, ''),
	NULLIF(u.sender_certificate, ''), NULLIF(u.parent_id, ''), u.auth_time
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
	$8::timestamptz[], $9::timestamptz[], $10::text[], $11::timestamptz[], $12::text[], $13::text[],
	$14::text[], $15::text[], $16::timestamptz[])
	AS u(id, kind, tenant, client_id, subject, scopes, audiences, issued_at, expires_at, status,
	revoked_at, sender_constraint, key_thumbprint, sender_certificate, parent_id, auth_time)
ON CONFLICT (id) DO NOTHING
RETURNING id`

// insert writes toks (distinct IDs) in one statement and reports, per token,
// whether it was inserted (false: the ID was already stored).
func (s *Store) insert(ctx context.Context, toks []*store.Token) ([]bool, error) {
	n := len(toks)
	var (
		ids, kinds, tenants, clients, subjects = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		scopes, auds, statuses, constraints    = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		jkts, certs, parents                   = make([]string, n), make([]string, n), make([]string, n)
		issued, expires                        = make([]time.Time, n), make([]time.Time, n)
		revoked, authTimes                     = make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n)
	)
	for i, t := range toks {
		ids[i], kinds[i], tenants[i], clients[i], subjects[i] = t.ID, string(t.Kind), t.Tenant, t.ClientID, t.Subject
		scopes[i], auds[i] = arrayLiteral(t.Scopes), arrayLiteral(t.Audiences)
		issued[i], expires[i], statuses[i] = t.IssuedAt, t.ExpiresAt, string(t.Status)
		revoked[i] = pgtype.Timestamptz{Time: t.RevokedAt, Valid: !t.RevokedAt.IsZero()}
		authTimes[i] = pgtype.Timestamptz{Time: t.AuthTime, Valid: !t.AuthTime.IsZero()}
		constraints[i], jkts[i], certs[i], parents[i] = t.SenderConstraint, t.KeyThumbprint, t.SenderCertificate, t.ParentID
	}
	rows, err := s.pool.Query(ctx, insertSQL, ids, kinds, tenants, clients, subjects, scopes, auds,
		issued, expires, statuses, revoked, constraints, jkts, certs, parents, authTimes)
	if err != nil {
		return nil, fmt.Errorf("postgres: insert tokens: %w", err)
	}
	done := make(map[string]bool, n)
	var id string
	if _, err := pgx.ForEachRow(rows, []any{&id}, func() error {
		done[id] = true
		return nil
	}); err != nil {
		return nil, fmt.Errorf("postgres: insert tokens: %w", err)
	}
	out := make([]bool, n)
	for i, t := range toks {
		out[i] = done[t.ID]
	}
	return out, nil
}

// copyColumns are the columns COPY writes, in row order.
var copyColumns = []string{"id", "kind", "tenant", "client_id", "subject", "scopes", "audiences", "issued_at",
	"expires_at", "status", "revoked_at", "sender_constraint", "key_thumbprint", "sender_certificate", "parent_id", "auth_time"}

// insertBatch writes a batch with COPY (binary), the cheapest bulk path for
// the server: no array parameters to parse, no per-row planning. COPY has no
// ON CONFLICT, so a batch holding an ID that is already stored fails as a
// whole; the caller then retries row by row, where duplicates are found.
// Token IDs are 128-bit random values, so that path is for faults, not for
// normal traffic.
func (s *Store) insertBatch(ctx context.Context, toks []*store.Token) ([]bool, error) {
	if len(toks) < 4 {
		return s.insert(ctx, toks)
	}
	rows := make([][]any, len(toks))
	for i, t := range toks {
		rows[i] = []any{t.ID, string(t.Kind), t.Tenant, t.ClientID, t.Subject, nonNil(t.Scopes), nonNil(t.Audiences),
			t.IssuedAt, t.ExpiresAt, string(t.Status), pgtype.Timestamptz{Time: t.RevokedAt, Valid: !t.RevokedAt.IsZero()},
			t.SenderConstraint, nullable(t.KeyThumbprint), nullable(t.SenderCertificate), nullable(t.ParentID),
			pgtype.Timestamptz{Time: t.AuthTime, Valid: !t.AuthTime.IsZero()}}
	}
	if _, err := s.pool.CopyFrom(ctx, pgx.Identifier{"authority_tokens"}, copyColumns, pgx.CopyFromRows(rows)); err != nil {
		return nil, fmt.Errorf("postgres: copy tokens: %w", err)
	}
	out := make([]bool, len(toks))
	for i := range out {
		out[i] = true
	}
	return out, nil
}

func nonNil(ss []string) []string {
	if ss == nil {
		return []string{}
	}
	return ss
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// arrayLiteral renders ss as a PostgreSQL text[] literal with every element
// quoted, so commas, braces, quotes, backslashes, spaces and the word NULL
// all survive.
func arrayLiteral(ss []string) string {
	if len(ss) == 0 {
		return "{}"
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, s := range ss {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('"')
		for j := 0; j < len(s); j++ {
			if s[j] == '"' || s[j] == '\\' {
				b.WriteByte('\\')
			}
			b.WriteByte(s[j])
		}
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}
