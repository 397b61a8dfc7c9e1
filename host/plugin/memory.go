package plugin

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// The memory stores keep one memScope per Scope, each with its own mutex,
// map, usage and expiry wheel: a scope's operations never wait for another
// scope's, and its quota counts only its own entries. Expired entries go
// three ways, none of which scans anything:
//
//   - a lookup that finds its key expired drops it;
//   - every operation first reaps up to reapPerOp due entries of its own
//     scope, and up to reapPerOp of one other scope (round robin, skipped
//     if busy), so that a scope nobody uses any more still returns its
//     memory while the node serves others;
//   - a write that would exceed the quota reaps every due entry of its
//     scope before it is refused (each entry is reaped once: amortized O(1)).
//
// A scope's map is rebuilt when it has shrunk to a quarter of its peak
// (Go maps never give buckets back), which costs O(1) amortized per
// delete. What stays of a scope once empty is its struct and the slot
// arrays of its wheel (a few KiB); scopes are the configured (tenant,
// plugin) pairs, so their number is the operator's.

// reapPerOp bounds the expired entries an operation reaps besides the ones
// it needs room from. Two would keep up with one insertion per operation;
// eight drains a burst of expiries in a few requests.
const reapPerOp = 8

// mapShrinkMin is the peak size below which a scope's map is never rebuilt.
const mapShrinkMin = 1024

type memEntry struct {
	key     string
	val     int64  // counters
	data    []byte // kv
	expires int64  // Unix ns; live while now < expires
	tick    uint64 // wheel position, >= msTick(expires)
	slot    int16  // level*64+slot in the wheel, -1 when unlinked
	prev    *memEntry
	next    *memEntry
}

func (e *memEntry) size() int64 { return int64(len(e.key) + len(e.data)) }

type scopeID struct{ tenant, plugin string }

type memScope struct {
	mu    sync.Mutex
	m     map[string]*memEntry
	peak  int   // largest len(m) since m was made
	bytes int64 // sum of size() over m
	w     expiryWheel
}

func (s *memScope) insert(e *memEntry) {
	e.tick = msTick(e.expires)
	s.w.add(e)
	s.m[e.key] = e
	s.bytes += e.size()
	s.peak = max(s.peak, len(s.m))
}

func (s *memScope) drop(e *memEntry) {
	s.w.remove(e)
	delete(s.m, e.key)
	s.bytes -= e.size()
}

// live returns key's entry, dropping it if expired.
func (s *memScope) live(key string, now int64) *memEntry {
	e := s.m[key]
	if e != nil && now >= e.expires {
		s.drop(e)
		return nil
	}
	return e
}

// reap drops up to n entries expired at now (n < 0: all of them) and
// reports whether it dropped n.
func (s *memScope) reap(now int64, n int) bool {
	target := msTick(now)
	done := 0
	for ; done != n; done++ {
		e := s.w.due(target)
		if e == nil {
			break
		}
		s.drop(e)
	}
	if s.peak >= mapShrinkMin && len(s.m) <= s.peak/4 {
		m := make(map[string]*memEntry, len(s.m))
		for k, e := range s.m {
			m[k] = e
		}
		s.m, s.peak = m, len(m)
	}
	return done == n
}

// reapOne drops one entry expired at now, if there is one.
func (s *memScope) reapOne(now int64) bool { return s.reap(now, 1) }

// scopeTable is an immutable snapshot of a store's scopes (copied on the
// rare creation of a scope, read without locks).
type scopeTable struct {
	m    map[scopeID]*memScope
	list []*memScope
}

type memStore struct {
	clock  Clock
	mu     sync.Mutex // serializes scope creation
	scopes atomic.Pointer[scopeTable]
	sweep  atomic.Uint64
}

func (s *memStore) init(clock Clock) {
	s.clock = clock
	s.scopes.Store(&scopeTable{m: map[scopeID]*memScope{}})
}

// scope returns sc's memScope, creating it if create.
func (s *memStore) scope(sc Scope, create bool) *memScope {
	id := scopeID{sc.Tenant, sc.Plugin}
	if ms := s.scopes.Load().m[id]; ms != nil || !create {
		return ms
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.scopes.Load()
	if ms := t.m[id]; ms != nil {
		return ms
	}
	ms := &memScope{m: map[string]*memEntry{}}
	nt := &scopeTable{m: make(map[scopeID]*memScope, len(t.m)+1), list: append(t.list[:len(t.list):len(t.list)], ms)}
	for k, v := range t.m {
		nt.m[k] = v
	}
	nt.m[id] = ms
	s.scopes.Store(nt)
	return ms
}

// sweepOne reaps a few expired entries of the next scope in round robin,
// unless another operation holds it (which reaps it itself). Called with
// no scope locked.
func (s *memStore) sweepOne(now int64) {
	list := s.scopes.Load().list
	if len(list) == 0 {
		return
	}
	ms := list[s.sweep.Add(1)%uint64(len(list))]
	if ms.mu.TryLock() {
		ms.reap(now, reapPerOp)
		ms.mu.Unlock()
	}
}

// usage returns the entries and bytes a scope holds, expired or not yet
// reaped (for tests).
func (s *memStore) usage(sc Scope) (entries int, bytes int64) {
	ms := s.scope(sc, false)
	if ms == nil {
		return 0, 0
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return len(ms.m), ms.bytes
}

// addDuration returns now+d in Unix ns, saturating instead of overflowing.
func addDuration(now int64, d time.Duration) int64 {
	if d > 0 && now > math.MaxInt64-int64(d) {
		return math.MaxInt64
	}
	return now + int64(d)
}

// MemoryCounters is the single-node Counters implementation, with a quota
// and an expiry wheel per scope (see expiryWheel). It is safe for
// concurrent use; operations on different scopes do not contend.
type MemoryCounters struct{ s memStore }

// NewMemoryCounters returns empty counters on clock.
func NewMemoryCounters(clock Clock) *MemoryCounters {
	c := &MemoryCounters{}
	c.s.init(clock)
	return c
}

// Incr implements Counters.
func (c *MemoryCounters) Incr(_ context.Context, scope Scope, key string, delta int64, window time.Duration) (int64, time.Duration, error) {
	now := c.s.clock.Now().UnixNano()
	creates := delta != 0 && window > 0
	ms := c.s.scope(scope, creates)
	if ms == nil {
		return 0, 0, nil
	}
	defer c.s.sweepOne(now)
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.reap(now, reapPerOp)
	e := ms.live(key, now)
	if e == nil {
		if !creates {
			return 0, 0, nil
		}
		limit := scope.Quota.withDefaults().CounterKeys
		for len(ms.m) >= limit {
			if !ms.reapOne(now) {
				return 0, 0, errQuotaCounterKeys
			}
		}
		e = &memEntry{key: key, expires: addDuration(now, window)}
		ms.insert(e)
	}
	e.val += delta
	return e.val, time.Duration(e.expires - now), nil
}

// MemoryKV is the single-node KV implementation, with a quota and an expiry
// wheel per scope (see expiryWheel). It is safe for concurrent use;
// operations on different scopes do not contend.
type MemoryKV struct{ s memStore }

// NewMemoryKV returns an empty store on clock.
func NewMemoryKV(clock Clock) *MemoryKV {
	k := &MemoryKV{}
	k.s.init(clock)
	return k
}

// Get implements KV.
func (k *MemoryKV) Get(_ context.Context, scope Scope, key string) ([]byte, bool, error) {
	now := k.s.clock.Now().UnixNano()
	ms := k.s.scope(scope, false)
	if ms == nil {
		return nil, false, nil
	}
	defer k.s.sweepOne(now)
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.reap(now, reapPerOp)
	e := ms.live(key, now)
	if e == nil {
		return nil, false, nil
	}
	return append([]byte(nil), e.data...), true, nil
}

// Set implements KV. A write is refused only when it would raise the
// scope's entries or bytes above the quota: one that does not grow them
// (an overwrite with a value no larger) always succeeds, even if a lowered
// quota is already exceeded.
func (k *MemoryKV) Set(_ context.Context, scope Scope, key string, val []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return errors.New("plugin: kv ttl must be > 0")
	}
	data := append([]byte(nil), val...)
	now := k.s.clock.Now().UnixNano()
	ms := k.s.scope(scope, true)
	defer k.s.sweepOne(now)
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.reap(now, reapPerOp)
	q := scope.Quota.withDefaults()
	e := ms.live(key, now)
	size := int64(len(key) + len(val))
	// The entries and bytes the scope would hold after the write; the old
	// entry of key (live, so never reaped below) is replaced.
	after := func() (int, int64) {
		if e != nil {
			return len(ms.m), ms.bytes - e.size() + size
		}
		return len(ms.m) + 1, ms.bytes + size
	}
	for {
		n, b := after()
		entriesOK := n <= q.KVEntries || n <= len(ms.m)
		bytesOK := b <= q.KVBytes || b <= ms.bytes
		if entriesOK && bytesOK {
			break
		}
		if !ms.reapOne(now) {
			if !entriesOK {
				return errQuotaKVEntries
			}
			return errQuotaKVBytes
		}
	}
	if e != nil {
		ms.drop(e)
	}
	ms.insert(&memEntry{key: key, data: data, expires: addDuration(now, ttl)})
	return nil
}

// StaticSecrets is a TenantSecrets holding fixed keys, for tests and
// single-node setups; a tenant without a key gets an error.
type StaticSecrets map[string][]byte

// PseudonymKey implements TenantSecrets.
func (s StaticSecrets) PseudonymKey(_ context.Context, tenant string) ([]byte, error) {
	k, ok := s[tenant]
	if !ok || len(k) == 0 {
		return nil, errors.New("plugin: no pseudonym key for tenant " + tenant)
	}
	return k, nil
}
