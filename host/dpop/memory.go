package dpop

import (
	"context"
	"encoding/base64"
	"fmt"
	"hash/maphash"
	"sync"
	"time"
)

// DefaultMaxEntries is the memory stores' entry cap when
// MemoryOptions.MaxEntries is zero.
const DefaultMaxEntries = 1 << 20

// replayShards spreads the replay cache over independent locks.
const replayShards = 16

// MemoryOptions configures the single-node memory stores.
type MemoryOptions struct {
	// Nonce configures the nonce store.
	Nonce NonceOptions
	// MaxEntries caps each store: unexpired replay entries, single-use
	// nonces, or nonce scopes. 0 means DefaultMaxEntries. A full store
	// refuses new entries with ErrCapacity instead of growing or evicting
	// live entries (evicting a replay entry would re-open a replay).
	MaxEntries int
	// MaxEntriesPerScope caps what one scope (a client's tenant and id)
	// may hold of each store: replay entries, or outstanding single-use
	// nonces. 0 means a quarter of MaxEntries. With the defaults one client
	// can sustain about 2,900 proofs/s per node over a 90 s replay window.
	MaxEntriesPerScope int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (o MemoryOptions) maxPerScope() int {
	if o.MaxEntriesPerScope <= 0 {
		return max(1, o.maxEntries()/4)
	}
	return o.MaxEntriesPerScope
}

func (o MemoryOptions) clock() func() time.Time {
	if o.Now == nil {
		return time.Now
	}
	return o.Now
}

func (o MemoryOptions) maxEntries() int {
	if o.MaxEntries <= 0 {
		return DefaultMaxEntries
	}
	return o.MaxEntries
}

// ceilSec is the first whole second at or after the instant ns.
func ceilSec(ns int64) int64 {
	s := ns / 1e9
	if s*1e9 < ns {
		s++
	}
	return s
}

// setEntry is one expiringSet member: its deadline and the scope it
// counts against. Pointer-free.
type setEntry struct {
	deadline int64
	scope    [16]byte
}

// expiringSet is a set of 32-byte keys with deadlines (unix ns), expired by
// a wheel, with a cap on all entries and a cap per scope. Not safe for
// concurrent use: callers hold a lock.
type expiringSet struct {
	m        map[[32]byte]setEntry
	counts   map[[16]byte]int32 // unexpired entries per scope
	w        *wheel
	max      int
	perScope int
}

func newExpiringSet(now time.Time, max, perScope int) *expiringSet {
	return &expiringSet{m: make(map[[32]byte]setEntry), counts: make(map[[16]byte]int32), w: newWheel(now.Unix()), max: max, perScope: perScope}
}

func (s *expiringSet) remove(k [32]byte, e setEntry) {
	delete(s.m, k)
	if n := s.counts[e.scope] - 1; n > 0 {
		s.counts[e.scope] = n
	} else {
		delete(s.counts, e.scope)
	}
}

func (s *expiringSet) sweep(nowNs int64) {
	s.w.advance(nowNs/1e9,
		func(k [32]byte) (int64, bool) {
			e, ok := s.m[k]
			return ceilSec(e.deadline), ok
		},
		func(k [32]byte) { s.remove(k, s.m[k]) })
}

// insertIfAbsent adds key (counted against scope) until deadline unless an
// unexpired entry exists. A full set, or a scope at its quota, refuses
// with ErrCapacity; the scope quota keeps one caller from filling the set
// for everyone.
func (s *expiringSet) insertIfAbsent(key [32]byte, scope [16]byte, nowNs, deadline int64) (bool, error) {
	s.sweep(nowNs)
	if e, ok := s.m[key]; ok {
		if e.deadline > nowNs {
			return false, nil
		}
		s.remove(key, e) // expired, not yet swept: replaced below
	}
	if len(s.m) >= s.max {
		return false, fmt.Errorf("%w (%d entries)", ErrCapacity, s.max)
	}
	if int(s.counts[scope]) >= s.perScope {
		return false, fmt.Errorf("%w: this client's quota of %d entries is used up", ErrCapacity, s.perScope)
	}
	s.m[key] = setEntry{deadline: deadline, scope: scope}
	s.counts[scope]++
	s.w.add(key, ceilSec(deadline))
	return true, nil
}

// take removes key and reports whether it was present and unexpired.
func (s *expiringSet) take(key [32]byte, nowNs int64) bool {
	s.sweep(nowNs)
	e, ok := s.m[key]
	if !ok {
		return false
	}
	s.remove(key, e)
	return e.deadline > nowNs
}

// MemoryReplayCache is a single-node ReplayCache. Expired entries are
// dropped a whole second-slot at a time (never by scanning the cache), the
// maps and the wheel hold no pointers, and the number of unexpired entries
// is capped in all and per scope (ErrCapacity beyond either). The shard of
// a key is chosen with a per-process secret seed, so a client cannot aim
// its proofs at one shard and fill it for others.
type MemoryReplayCache struct {
	now    func() time.Time
	seed   maphash.Seed
	shards [replayShards]struct {
		mu  sync.Mutex
		set *expiringSet
	}
}

// NewMemoryReplayCache returns an empty cache using opts.MaxEntries,
// opts.MaxEntriesPerScope and opts.Now (opts.Nonce is ignored).
func NewMemoryReplayCache(opts MemoryOptions) *MemoryReplayCache {
	c := &MemoryReplayCache{now: opts.clock(), seed: maphash.MakeSeed()}
	per := (opts.maxEntries() + replayShards - 1) / replayShards
	perScope := (opts.maxPerScope() + replayShards - 1) / replayShards
	now := c.now()
	for i := range c.shards {
		c.shards[i].set = newExpiringSet(now, per, perScope)
	}
	return c
}

// Remember implements ReplayCache; every key counts against one shared
// scope. State.Check uses RememberScoped.
func (c *MemoryReplayCache) Remember(ctx context.Context, key ReplayKey, ttl time.Duration) (bool, error) {
	return c.RememberScoped(ctx, "", key, ttl)
}

// RememberScoped is Remember with the entry counted against scope (the
// tenant and client of the proof): a scope over its quota is refused with
// ErrCapacity while other scopes are still served. Keys spread over the
// shards evenly, so a scope's quota is split among them like the cap.
func (c *MemoryReplayCache) RememberScoped(_ context.Context, scope string, key ReplayKey, ttl time.Duration) (bool, error) {
	nowNs := c.now().UnixNano()
	sh := &c.shards[c.shardOf(key)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.set.insertIfAbsent(key, scopeID(scope), nowNs, nowNs+int64(ttl))
}

// rotatingScope is one scope's nonces in default mode. Pointer-free.
type rotatingScope struct {
	cur, prev [16]byte
	curAt     int64 // unix ns when cur was minted
	prevExp   int64 // unix ns when prev stops being valid (0: no prev)
}

// MemoryNonceStore is a single-node NonceStore (see NonceStore for the two
// modes). Expiry works as in MemoryReplayCache; the cap applies to scopes
// (default mode) or to outstanding nonces (SingleUse).
type MemoryNonceStore struct {
	now       func() time.Time
	ttl       int64
	singleUse bool

	mu     sync.Mutex
	spent  *expiringSet               // SingleUse: scopeID||nonce
	scopes map[[16]byte]rotatingScope // default mode
	w      *wheel                     // default mode: scope expiry
	max    int
}

// NewMemoryNonceStore returns an empty store using opts.
func NewMemoryNonceStore(opts MemoryOptions) *MemoryNonceStore {
	now := opts.clock()
	s := &MemoryNonceStore{
		now:       now,
		ttl:       int64(opts.Nonce.ttl()),
		singleUse: opts.Nonce.SingleUse,
		max:       opts.maxEntries(),
	}
	if s.singleUse {
		s.spent = newExpiringSet(now(), s.max, opts.maxPerScope())
	} else {
		s.scopes = make(map[[16]byte]rotatingScope)
		s.w = newWheel(now().Unix())
	}
	return s
}

func nonceKey(scope [16]byte, nonce [16]byte) [32]byte {
	var k [32]byte
	copy(k[:16], scope[:])
	copy(k[16:], nonce[:])
	return k
}

func (s *MemoryNonceStore) sweepScopes(nowNs int64) {
	s.w.advance(nowNs/1e9,
		func(k [32]byte) (int64, bool) {
			e, ok := s.scopes[[16]byte(k[:16])]
			return ceilSec(e.curAt + s.ttl), ok
		},
		func(k [32]byte) { delete(s.scopes, [16]byte(k[:16])) })
}

// Issue implements NonceStore.
func (s *MemoryNonceStore) Issue(_ context.Context, scope string) (string, error) {
	id := scopeID(scope)
	nowNs := s.now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.singleUse {
		str, raw := newNonce()
		if _, err := s.spent.insertIfAbsent(nonceKey(id, raw), id, nowNs, nowNs+s.ttl); err != nil {
			return "", err
		}
		return str, nil
	}
	s.sweepScopes(nowNs)
	e, ok := s.scopes[id]
	if ok && nowNs < e.curAt+s.ttl/2 {
		return base64.RawURLEncoding.EncodeToString(e.cur[:]), nil
	}
	if !ok && len(s.scopes) >= s.max {
		return "", fmt.Errorf("%w (%d nonce scopes)", ErrCapacity, s.max)
	}
	next := rotatingScope{curAt: nowNs}
	if ok {
		next.prev, next.prevExp = e.cur, e.curAt+s.ttl
	}
	str, raw := newNonce()
	next.cur = raw
	s.scopes[id] = next
	var wk [32]byte
	copy(wk[:], id[:])
	s.w.add(wk, ceilSec(nowNs+s.ttl))
	return str, nil
}

// Validate implements NonceStore.
func (s *MemoryNonceStore) Validate(_ context.Context, scope, nonce string) (bool, error) {
	raw, ok := parseNonce(nonce)
	if !ok {
		return false, nil
	}
	id := scopeID(scope)
	nowNs := s.now().UnixNano()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.singleUse {
		return s.spent.take(nonceKey(id, raw), nowNs), nil
	}
	s.sweepScopes(nowNs)
	e, ok := s.scopes[id]
	if !ok {
		return false, nil
	}
	if raw == e.cur && nowNs < e.curAt+s.ttl {
		return true, nil
	}
	return e.prevExp != 0 && raw == e.prev && nowNs < e.prevExp, nil
}

// MemoryState is the single-node State: a MemoryReplayCache and a
// MemoryNonceStore. Nonces and replay entries live in this process only, so
// it is correct for one node; use RedisState for several.
type MemoryState struct {
	replay *MemoryReplayCache
	nonces *MemoryNonceStore
}

// NewMemoryState returns an empty single-node State.
func NewMemoryState(opts MemoryOptions) *MemoryState {
	return &MemoryState{replay: NewMemoryReplayCache(opts), nonces: NewMemoryNonceStore(opts)}
}

// Check implements State.
func (m *MemoryState) Check(ctx context.Context, c StateCheck) (StateResult, error) {
	return checkWith(ctx, m.replay, m.nonces, c)
}

// Nonce implements State.
func (m *MemoryState) Nonce(ctx context.Context, scope string) (string, error) {
	return m.nonces.Issue(ctx, scope)
}

// checkWith composes a ReplayCache and a NonceStore into State.Check's
// semantics, for stores without a combined operation.
func checkWith(ctx context.Context, rc ReplayCache, ns NonceStore, c StateCheck) (StateResult, error) {
	var res StateResult
	var fresh bool
	var err error
	if sc, ok := rc.(interface {
		RememberScoped(context.Context, string, ReplayKey, time.Duration) (bool, error)
	}); ok {
		fresh, err = sc.RememberScoped(ctx, c.ReplayScope, c.ReplayKey, c.ReplayTTL)
	} else {
		fresh, err = rc.Remember(ctx, c.ReplayKey, c.ReplayTTL)
	}
	if err != nil {
		return res, err
	}
	res.Replayed = !fresh
	if !c.NonceRequired {
		if c.IssueNonce {
			res.NextNonce, err = ns.Issue(ctx, c.NonceScope)
		}
		return res, err
	}
	if fresh && c.Nonce != "" {
		if res.NonceValid, err = ns.Validate(ctx, c.NonceScope, c.Nonce); err != nil {
			return res, err
		}
	}
	res.NextNonce, err = ns.Issue(ctx, c.NonceScope)
	return res, err
}

// shardOf is the shard index of key (the seed keeps it unpredictable).
func (c *MemoryReplayCache) shardOf(key ReplayKey) uint64 {
	return maphash.Bytes(c.seed, key[:]) % replayShards
}
