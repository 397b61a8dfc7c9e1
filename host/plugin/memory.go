package plugin

import (
	"context"
	"errors"
	"sync"
	"time"
)

// ErrStoreFull is returned by the in-memory stores when they hold
// maxEntries live keys.
var ErrStoreFull = errors.New("plugin: in-memory store full")

const memoryMaxEntries = 1 << 20

type memEntry struct {
	val     int64
	data    []byte
	expires time.Time
}

type memStore struct {
	clock Clock
	mu    sync.Mutex
	m     map[string]*memEntry
	ops   int
}

func (s *memStore) live(key string, now time.Time) *memEntry {
	e := s.m[key]
	if e != nil && !now.Before(e.expires) {
		delete(s.m, key)
		return nil
	}
	return e
}

// room sweeps expired keys every 1024 writes and when the store is full.
func (s *memStore) room(now time.Time) error {
	s.ops++
	if s.ops%1024 == 0 || len(s.m) >= memoryMaxEntries {
		for k, e := range s.m {
			if !now.Before(e.expires) {
				delete(s.m, k)
			}
		}
	}
	if len(s.m) >= memoryMaxEntries {
		return ErrStoreFull
	}
	return nil
}

// MemoryCounters is the single-node Counters implementation. It is safe
// for concurrent use.
type MemoryCounters struct{ s memStore }

// NewMemoryCounters returns empty counters on clock.
func NewMemoryCounters(clock Clock) *MemoryCounters {
	return &MemoryCounters{s: memStore{clock: clock, m: map[string]*memEntry{}}}
}

// Incr implements Counters.
func (c *MemoryCounters) Incr(_ context.Context, key string, delta int64, window time.Duration) (int64, time.Duration, error) {
	now := c.s.clock.Now()
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	e := c.s.live(key, now)
	if e == nil {
		if delta == 0 || window <= 0 {
			return 0, 0, nil
		}
		if err := c.s.room(now); err != nil {
			return 0, 0, err
		}
		e = &memEntry{expires: now.Add(window)}
		c.s.m[key] = e
	}
	e.val += delta
	return e.val, e.expires.Sub(now), nil
}

// MemoryKV is the single-node KV implementation. It is safe for
// concurrent use.
type MemoryKV struct{ s memStore }

// NewMemoryKV returns an empty store on clock.
func NewMemoryKV(clock Clock) *MemoryKV {
	return &MemoryKV{s: memStore{clock: clock, m: map[string]*memEntry{}}}
}

// Get implements KV.
func (k *MemoryKV) Get(_ context.Context, key string) ([]byte, bool, error) {
	now := k.s.clock.Now()
	k.s.mu.Lock()
	defer k.s.mu.Unlock()
	e := k.s.live(key, now)
	if e == nil {
		return nil, false, nil
	}
	return append([]byte(nil), e.data...), true, nil
}

// Set implements KV.
func (k *MemoryKV) Set(_ context.Context, key string, val []byte, ttl time.Duration) error {
	if ttl <= 0 {
		return errors.New("plugin: kv ttl must be > 0")
	}
	now := k.s.clock.Now()
	k.s.mu.Lock()
	defer k.s.mu.Unlock()
	if k.s.live(key, now) == nil {
		if err := k.s.room(now); err != nil {
			return err
		}
	}
	k.s.m[key] = &memEntry{data: append([]byte(nil), val...), expires: now.Add(ttl)}
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
