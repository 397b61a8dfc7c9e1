package store

import (
	"container/heap"
	"context"
	"fmt"
	"sync"
	"time"
)

// MemoryOptions configures NewMemory. The zero value is ready to use.
type MemoryOptions struct {
	// Now is the clock used to decide what has expired; nil means time.Now.
	Now func() time.Time
	// Retention keeps tokens this long after ExpiresAt before they may be
	// purged (so a late introspection still finds them). Default 0.
	Retention time.Duration
	// PurgePerWrite bounds how many expired tokens each Put removes, keeping
	// the cost of purging on the write path small and constant. Default 16;
	// negative disables purging on writes (then only Sweep purges).
	PurgePerWrite int
}

// Memory is an in-process TokenStore for a single node. Tokens live in a map
// guarded by one RWMutex; a min-heap ordered by ExpiresAt lets expired tokens
// be removed in O(log n) each, a few per Put and the rest by Sweep, without
// ever scanning the map. Durability is process lifetime: Put returns once
// the token is visible to every later Get.
type Memory struct {
	now           func() time.Time
	retention     time.Duration
	purgePerWrite int

	mu       sync.RWMutex
	closed   bool
	tokens   map[string]*memEntry
	expiry   expiryHeap
	children map[string]map[string]struct{} // parent ID -> child IDs
}

type memEntry struct {
	tok *Token
}

var _ TokenStore = (*Memory)(nil)

// NewMemory returns an empty memory store.
func NewMemory(opts MemoryOptions) *Memory {
	m := &Memory{
		now:           opts.Now,
		retention:     opts.Retention,
		purgePerWrite: opts.PurgePerWrite,
		tokens:        make(map[string]*memEntry),
		children:      make(map[string]map[string]struct{}),
	}
	if m.now == nil {
		m.now = time.Now
	}
	if m.purgePerWrite == 0 {
		m.purgePerWrite = 16
	}
	return m
}

// Put stores a canonical copy of t (see TokenStore.Put). Before inserting it
// purges at most PurgePerWrite expired tokens.
func (m *Memory) Put(ctx context.Context, t *Token) error {
	c, err := Canonical(t)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if m.purgePerWrite > 0 {
		m.purgeLocked(m.now().Add(-m.retention), m.purgePerWrite)
	}
	if _, ok := m.tokens[c.ID]; ok {
		return fmt.Errorf("%w: %q", ErrDuplicate, c.ID)
	}
	e := &memEntry{tok: c}
	m.tokens[c.ID] = e
	heap.Push(&m.expiry, e)
	if c.ParentID != "" {
		kids := m.children[c.ParentID]
		if kids == nil {
			kids = make(map[string]struct{})
			m.children[c.ParentID] = kids
		}
		kids[c.ID] = struct{}{}
	}
	return nil
}

// Get returns a copy of the stored token (see TokenStore.Get).
func (m *Memory) Get(ctx context.Context, id string) (*Token, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return nil, ErrClosed
	}
	e, ok := m.tokens[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return e.tok.Clone(), nil
}

// Revoke marks the token revoked (see TokenStore.Revoke).
func (m *Memory) Revoke(ctx context.Context, id string, at time.Time) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	at = CanonicalTime(at)
	if at.IsZero() {
		return false, fmt.Errorf("%w: revokedAt: must be set", ErrInvalidToken)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false, ErrClosed
	}
	e, ok := m.tokens[id]
	if !ok {
		return false, nil
	}
	revokeLocked(e.tok, at)
	return true, nil
}

// Rotate uses up an active token (see TokenStore.Rotate).
func (m *Memory) Rotate(ctx context.Context, id string, at time.Time) (*Token, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	at = CanonicalTime(at)
	if at.IsZero() {
		return nil, fmt.Errorf("%w: rotatedAt: must be set", ErrInvalidToken)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	e, ok := m.tokens[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	before := e.tok.Clone()
	if e.tok.Status != StatusActive {
		return before, fmt.Errorf("%w: %q is %s", ErrNotActive, id, e.tok.Status)
	}
	e.tok.Status, e.tok.RevokedAt = StatusRotated, at
	return before, nil
}

// revokeLocked revokes an active token; a revoked or rotated one keeps its
// status and time.
func revokeLocked(t *Token, at time.Time) bool {
	if t.Status != StatusActive {
		return false
	}
	t.Status = StatusRevoked
	t.RevokedAt = at
	return true
}

// RevokeByParent revokes every active descendant of parentID (see
// TokenStore.RevokeByParent). It walks a parent-to-children index, so its
// cost is proportional to the family size.
func (m *Memory) RevokeByParent(ctx context.Context, parentID string, at time.Time) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	at = CanonicalTime(at)
	if at.IsZero() {
		return 0, fmt.Errorf("%w: revokedAt: must be set", ErrInvalidToken)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	var n int64
	seen := map[string]bool{parentID: true}
	queue := []string{parentID}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for id := range m.children[p] {
			if seen[id] {
				continue
			}
			seen[id] = true
			queue = append(queue, id)
			if e, ok := m.tokens[id]; ok && revokeLocked(e.tok, at) {
				n++
			}
		}
	}
	return n, nil
}

// Sweep removes every token whose ExpiresAt is before now minus Retention and
// reports how many it removed. Its cost is proportional to that number.
func (m *Memory) Sweep(now time.Time) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.purgeLocked(now.Add(-m.retention), -1)
}

// PurgeExpired removes every token whose ExpiresAt is before `before` (no
// Retention applied) and reports how many it removed.
func (m *Memory) PurgeExpired(ctx context.Context, before time.Time) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, ErrClosed
	}
	return int64(m.purgeLocked(before, -1)), nil
}

// Len reports how many tokens are stored, expired-but-unpurged included.
func (m *Memory) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.tokens)
}

// purgeLocked removes up to limit (all if limit < 0) tokens expiring before
// cutoff, cheapest first.
func (m *Memory) purgeLocked(cutoff time.Time, limit int) int {
	n := 0
	for len(m.expiry) > 0 && (limit < 0 || n < limit) {
		e := m.expiry[0]
		if !e.tok.ExpiresAt.Before(cutoff) {
			break
		}
		heap.Pop(&m.expiry)
		delete(m.tokens, e.tok.ID)
		if p := e.tok.ParentID; p != "" {
			if kids := m.children[p]; kids != nil {
				delete(kids, e.tok.ID)
				if len(kids) == 0 {
					delete(m.children, p)
				}
			}
		}
		n++
	}
	return n
}

// Ping reports ErrClosed after Close, nil otherwise.
func (m *Memory) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.closed {
		return ErrClosed
	}
	return nil
}

// Close drops every token. It is safe to call more than once.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.tokens = nil
	m.expiry = nil
	m.children = nil
	return nil
}

// expiryHeap is a min-heap of entries by ExpiresAt.
type expiryHeap []*memEntry

func (h expiryHeap) Len() int { return len(h) }
func (h expiryHeap) Less(i, j int) bool {
	return h[i].tok.ExpiresAt.Before(h[j].tok.ExpiresAt)
}
func (h expiryHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)   { *h = append(*h, x.(*memEntry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	n := len(old)
	e := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	return e
}
