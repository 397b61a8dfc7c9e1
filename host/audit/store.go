package audit

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// Sealed is a record with its chain position and its encoding (Line, the
// bytes Hash covers). The other fields repeat what Line says, for stores
// that index them.
type Sealed struct {
	Node       string
	Seq        uint64
	Hash       string
	Source     string
	EventType  string
	Tenant     string
	OccurredAt time.Time
	Line       []byte
}

// Store is a durable audit sink: the PostgreSQL table authority_audit
// (host/store/postgres), a JSON-lines file (FileStore) or memory (tests).
// All pass the contract suite in host/audit/audittest.
type Store interface {
	// Append writes batch durably (a committed transaction, an fsync'd
	// file) and returns only then: all of it or, with an error, none of it
	// as far as the store can tell (see Writer for the uncertain case).
	// Records of one node arrive in chain order.
	Append(ctx context.Context, batch []Sealed) error
	// Head is the last record of node's chain: its sequence number and
	// hash; 0 and "" for a node with none.
	Head(ctx context.Context, node string) (seq uint64, hash string, err error)
	// Scan calls fn for every stored record in its node's chain order
	// (nodes one after another, or interleaved as written). Node and Seq
	// are the store's own index of the record (empty and 0 where the store
	// keeps only lines), so Verify can compare them with Line.
	Scan(ctx context.Context, fn func(Sealed) error) error
	// Purge deletes records that occurred before cutoff, but keeps each
	// chain whole from a checkpoint: of a node's records older than cutoff,
	// those before its latest checkpoint older than cutoff go, so what is
	// left starts with a signed checkpoint Verify can anchor on.
	Purge(ctx context.Context, cutoff time.Time) (int64, error)
	Ping(ctx context.Context) error
	Close() error
}

// ErrConflict: Append found a record at one of batch's positions already
// (another writer on the same node id, or a retried batch that landed).
var ErrConflict = errors.New("audit: a record already holds that chain position")

// MemoryStore keeps records in memory, for tests and the contract suite.
type MemoryStore struct {
	mu   sync.Mutex
	recs []Sealed
	// Fail, when set, is returned by Append and Ping (fault injection).
	Fail error
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{} }

// Append implements Store.
func (m *MemoryStore) Append(ctx context.Context, batch []Sealed) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Fail != nil {
		return m.Fail
	}
	heads := map[string]uint64{}
	for _, r := range m.recs {
		heads[r.Node] = max(heads[r.Node], r.Seq)
	}
	for _, r := range batch {
		if r.Seq <= heads[r.Node] {
			return ErrConflict
		}
		heads[r.Node] = r.Seq
	}
	for _, r := range batch {
		r.Line = slices.Clone(r.Line)
		m.recs = append(m.recs, r)
	}
	return nil
}

// Head implements Store.
func (m *MemoryStore) Head(_ context.Context, node string) (uint64, string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := len(m.recs) - 1; i >= 0; i-- {
		if m.recs[i].Node == node {
			return m.recs[i].Seq, m.recs[i].Hash, nil
		}
	}
	return 0, "", nil
}

// Scan implements Store.
func (m *MemoryStore) Scan(ctx context.Context, fn func(Sealed) error) error {
	m.mu.Lock()
	recs := slices.Clone(m.recs)
	m.mu.Unlock()
	for _, r := range recs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// Purge implements Store.
func (m *MemoryStore) Purge(_ context.Context, cutoff time.Time) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	keepFrom := PurgeBounds(m.recs, cutoff)
	var n int64
	kept := m.recs[:0]
	for _, r := range m.recs {
		if r.Seq < keepFrom[r.Node] {
			n++
			continue
		}
		kept = append(kept, r)
	}
	clear(m.recs[len(kept):])
	m.recs = kept
	return n, nil
}

// PurgeBounds says, per node, the sequence number from which records are
// kept by a purge at cutoff: that of the node's latest checkpoint that
// occurred before cutoff (nodes without one keep everything).
func PurgeBounds(recs []Sealed, cutoff time.Time) map[string]uint64 {
	from := map[string]uint64{}
	for _, r := range recs {
		if r.EventType == EventCheckpoint && r.Source == SourceHost && r.OccurredAt.Before(cutoff) && r.Seq > from[r.Node] {
			from[r.Node] = r.Seq
		}
	}
	return from
}

// Ping implements Store.
func (m *MemoryStore) Ping(context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.Fail
}

// Close implements Store.
func (m *MemoryStore) Close() error { return nil }

// SetFail sets the fault Append and Ping return (nil heals).
func (m *MemoryStore) SetFail(err error) {
	m.mu.Lock()
	m.Fail = err
	m.mu.Unlock()
}

// Lines returns every stored line, in order (tests).
func (m *MemoryStore) Lines() [][]byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([][]byte, len(m.recs))
	for i, r := range m.recs {
		out[i] = slices.Clone(r.Line)
	}
	return out
}
