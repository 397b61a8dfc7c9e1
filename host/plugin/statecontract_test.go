package plugin_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"stellaops.org/authority/host/plugin"
)

// The state contract: what counter_incr, kv_get and kv_set may rely on,
// whatever backs Deps.Counters and Deps.KV: per-scope keys, windows and
// TTLs, atomic increments, and the per-scope quotas (Quota*). It runs against the in-memory
// stores on a fake clock (TestStateContractMemory) and against real Redis
// with real time (TestStateContractRedis, redis_test.go).
//
// newCounters and newKV called twice with the same t return stores that
// share storage, like two nodes of one deployment (the memory variant
// returns the same store; the Redis one a new client on the same prefix).
// advance lets time pass: the fake clock moves, Redis is slept on. Windows
// and TTLs are multiples of scUnit, short enough to sleep on and long
// enough that a few round trips to a local Redis fit well inside one.

// Interface conformance.
var (
	_ plugin.Counters = (*plugin.MemoryCounters)(nil)
	_ plugin.KV       = (*plugin.MemoryKV)(nil)
	_ plugin.Counters = (*plugin.RedisCounters)(nil)
	_ plugin.KV       = (*plugin.RedisKV)(nil)
)

const scUnit = 150 * time.Millisecond

// scClock is the fake clock of the memory variant.
type scClock struct{ ns atomic.Int64 }

func (c *scClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *scClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// perTest memoizes one value per test, so that two constructor calls in a
// test (two "nodes") share it.
type perTest[T any] struct {
	mu sync.Mutex
	m  map[*testing.T]T
}

func (p *perTest[T]) get(t *testing.T, mk func() T) T {
	p.mu.Lock()
	defer p.mu.Unlock()
	if v, ok := p.m[t]; ok {
		return v
	}
	if p.m == nil {
		p.m = map[*testing.T]T{}
	}
	v := mk()
	p.m[t] = v
	t.Cleanup(func() { p.mu.Lock(); delete(p.m, t); p.mu.Unlock() })
	return v
}

func TestStateContractMemory(t *testing.T) {
	clock := &scClock{}
	clock.ns.Store(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	var counters perTest[*plugin.MemoryCounters]
	var kvs perTest[*plugin.MemoryKV]
	runStateContract(t,
		func(t *testing.T) plugin.Counters {
			return counters.get(t, func() *plugin.MemoryCounters { return plugin.NewMemoryCounters(clock) })
		},
		func(t *testing.T) plugin.KV {
			return kvs.get(t, func() *plugin.MemoryKV { return plugin.NewMemoryKV(clock) })
		},
		clock.Advance)
}

func runStateContract(t *testing.T, newCounters func(t *testing.T) plugin.Counters, newKV func(t *testing.T) plugin.KV, advance func(time.Duration)) {
	ctx := context.Background()
	const key = "client-1"
	sc := plugin.Scope{Tenant: "acme", Plugin: "ratelimit"}
	otherPlugin := plugin.Scope{Tenant: "acme", Plugin: "other"}
	otherTenant := plugin.Scope{Tenant: "globex", Plugin: "ratelimit"}
	// A tenant whose name would run into the plugin's if the scope were
	// joined without lengths: "acme:ratelimit" + "x" vs "acme" + "ratelimit:x".
	trickyTenant := plugin.Scope{Tenant: "acme:ratelimit", Plugin: "x"}
	window := 4 * scUnit

	incrIn := func(t *testing.T, c plugin.Counters, sc plugin.Scope, key string, delta int64, window time.Duration) (int64, time.Duration) {
		t.Helper()
		v, ttl, err := c.Incr(ctx, sc, key, delta, window)
		if err != nil {
			t.Fatalf("Incr(%v, %q, %d, %v): %v", sc, key, delta, window, err)
		}
		return v, ttl
	}
	incr := func(t *testing.T, c plugin.Counters, key string, delta int64, window time.Duration) (int64, time.Duration) {
		t.Helper()
		return incrIn(t, c, sc, key, delta, window)
	}
	// inWindow checks 0 < ttl <= max: the time left, never more than
	// what remains of the window (real time may have eaten some more).
	inWindow := func(t *testing.T, ttl, max time.Duration) {
		t.Helper()
		if ttl <= 0 || ttl > max {
			t.Fatalf("ttl = %v, want in (0, %v]", ttl, max)
		}
	}

	t.Run("CounterFirstIncrementStartsWindow", func(t *testing.T) {
		c := newCounters(t)
		v, ttl := incr(t, c, key, 3, window)
		if v != 3 {
			t.Fatalf("value = %d, want 3", v)
		}
		inWindow(t, ttl, window)
		if ttl < window-scUnit {
			t.Fatalf("fresh window has ttl %v, want about %v", ttl, window)
		}
	})

	t.Run("CounterAccumulatesWithinWindow", func(t *testing.T) {
		c := newCounters(t)
		incr(t, c, key, 1, window)
		advance(scUnit)
		v, ttl := incr(t, c, key, 2, window)
		if v != 3 {
			t.Fatalf("value = %d, want 3", v)
		}
		// The window is not extended by later increments.
		inWindow(t, ttl, window-scUnit)
		// A different window length on a live key changes nothing either.
		v, ttl = incr(t, c, key, 1, 100*window)
		if v != 4 {
			t.Fatalf("value = %d, want 4", v)
		}
		inWindow(t, ttl, window-scUnit)
		// Negative deltas count down.
		if v, _ := incr(t, c, key, -5, window); v != -1 {
			t.Fatalf("value = %d, want -1", v)
		}
	})

	t.Run("CounterWindowExpiresAndRestarts", func(t *testing.T) {
		c := newCounters(t)
		incr(t, c, key, 5, window)
		advance(window + scUnit/3)
		if v, ttl := incr(t, c, key, 0, window); v != 0 || ttl != 0 {
			t.Fatalf("after the window: read (%d, %v), want (0, 0)", v, ttl)
		}
		v, ttl := incr(t, c, key, 1, window)
		if v != 1 {
			t.Fatalf("new window: value = %d, want 1", v)
		}
		inWindow(t, ttl, window)
		if ttl < window-scUnit {
			t.Fatalf("new window has ttl %v, want about %v", ttl, window)
		}
	})

	t.Run("CounterDeltaZeroReadsWithoutCreating", func(t *testing.T) {
		c := newCounters(t)
		if v, ttl := incr(t, c, key, 0, window); v != 0 || ttl != 0 {
			t.Fatalf("read of absent key = (%d, %v), want (0, 0)", v, ttl)
		}
		// The read created nothing: a later increment, well after it,
		// still gets a whole window of its own.
		advance(2 * scUnit)
		v, ttl := incr(t, c, key, 1, window)
		if v != 1 || ttl < window-scUnit {
			t.Fatalf("first increment after a read = (%d, %v), want (1, ~%v)", v, ttl, window)
		}
		advance(scUnit)
		v, ttl = incr(t, c, key, 0, window)
		if v != 1 {
			t.Fatalf("read = %d, want 1", v)
		}
		inWindow(t, ttl, window-scUnit)
		// Reading with window 0 (what the host allows with delta 0) too.
		if v, _ := incr(t, c, key, 0, 0); v != 1 {
			t.Fatalf("read with window 0 = %d, want 1", v)
		}
		// No window means no key: a nonzero delta on an absent key with
		// window 0 (refused by the host) creates nothing.
		if v, ttl := incr(t, c, "nowindow", 7, 0); v != 0 || ttl != 0 {
			t.Fatalf("window 0 on an absent key = (%d, %v), want (0, 0)", v, ttl)
		}
		if v, _ := incr(t, c, "nowindow", 0, window); v != 0 {
			t.Fatalf("window 0 created the key: %d", v)
		}
	})

	t.Run("CounterKeysAreDistinct", func(t *testing.T) {
		c := newCounters(t)
		long := strings.Repeat("x", 1000)
		type sk struct {
			sc  plugin.Scope
			key string
		}
		keys := []sk{{sc, key}, {sc, key + "2"}, {otherPlugin, key}, {otherTenant, key}, {trickyTenant, key},
			{sc, long + "a"}, {sc, long + "b"}, {sc, "\x00bin\xff"}, {sc, "{tag}k"}}
		for i, k := range keys {
			incrIn(t, c, k.sc, k.key, int64(i+1), window)
		}
		for i, k := range keys {
			if v, _ := incrIn(t, c, k.sc, k.key, 0, window); v != int64(i+1) {
				t.Errorf("key %d: value %d, want %d", i, v, i+1)
			}
		}
	})

	t.Run("CounterConcurrentIncrementsAllCounted", func(t *testing.T) {
		nodes := []plugin.Counters{newCounters(t), newCounters(t)}
		const workers, each = 50, 20
		long := 100 * window // no expiry during the test
		seen := make([]atomic.Bool, workers*each+1)
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Go(func() {
				c := nodes[w%2]
				for range each {
					v, _, err := c.Incr(ctx, sc, key, 1, long)
					if err != nil {
						errs <- err
						return
					}
					if v < 1 || v > workers*each || seen[v].Swap(true) {
						t.Errorf("increment returned %d: out of range or duplicate", v)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		for _, c := range nodes {
			if v, _ := incr(t, c, key, 0, long); v != workers*each {
				t.Fatalf("total = %d, want %d", v, workers*each)
			}
		}
	})

	t.Run("CounterSharedBetweenNodes", func(t *testing.T) {
		a, b := newCounters(t), newCounters(t)
		incr(t, a, key, 2, window)
		v, ttl := incr(t, b, key, 3, window)
		if v != 5 {
			t.Fatalf("node b sees %d, want 5", v)
		}
		inWindow(t, ttl, window)
		advance(window + scUnit/3)
		if v, _ := incr(t, b, key, 1, window); v != 1 {
			t.Fatalf("node b after the window: %d, want 1", v)
		}
		if v, _ := incr(t, a, key, 0, window); v != 1 {
			t.Fatalf("node a after the window: %d, want 1", v)
		}
	})

	t.Run("CountersAndKVAreSeparate", func(t *testing.T) {
		c, kv := newCounters(t), newKV(t)
		if err := kv.Set(ctx, sc, key, []byte("not a number"), window); err != nil {
			t.Fatal(err)
		}
		if v, _ := incr(t, c, key, 1, window); v != 1 {
			t.Fatalf("counter = %d, want 1", v)
		}
		if got, ok, err := kv.Get(ctx, sc, key); err != nil || !ok || string(got) != "not a number" {
			t.Fatalf("kv = %q, %v, %v", got, ok, err)
		}
	})

	getIn := func(t *testing.T, kv plugin.KV, sc plugin.Scope, key string) ([]byte, bool) {
		t.Helper()
		v, ok, err := kv.Get(ctx, sc, key)
		if err != nil {
			t.Fatalf("Get(%v, %q): %v", sc, key, err)
		}
		return v, ok
	}
	setIn := func(t *testing.T, kv plugin.KV, sc plugin.Scope, key string, val []byte, ttl time.Duration) {
		t.Helper()
		if err := kv.Set(ctx, sc, key, val, ttl); err != nil {
			t.Fatalf("Set(%v, %q): %v", sc, key, err)
		}
	}
	get := func(t *testing.T, kv plugin.KV, key string) ([]byte, bool) {
		t.Helper()
		return getIn(t, kv, sc, key)
	}
	set := func(t *testing.T, kv plugin.KV, key string, val []byte, ttl time.Duration) {
		t.Helper()
		setIn(t, kv, sc, key, val, ttl)
	}

	t.Run("KVSetGet", func(t *testing.T) {
		kv := newKV(t)
		if v, ok := get(t, kv, key); ok || v != nil {
			t.Fatalf("absent key: %q, %v", v, ok)
		}
		val := []byte{0, 1, 2, 0xfe, 0xff, '\n'}
		set(t, kv, key, val, window)
		if v, ok := get(t, kv, key); !ok || !bytes.Equal(v, val) {
			t.Fatalf("Get = %q, %v, want %q", v, ok, val)
		}
		set(t, kv, key+"empty", nil, window)
		if v, ok := get(t, kv, key+"empty"); !ok || len(v) != 0 {
			t.Fatalf("empty value: %q, %v", v, ok)
		}
		long := strings.Repeat("y", 1000)
		set(t, kv, long+"a", []byte("A"), window)
		set(t, kv, long+"b", []byte("B"), window)
		if v, _ := get(t, kv, long+"a"); string(v) != "A" {
			t.Fatalf("long key a = %q", v)
		}
		if v, _ := get(t, kv, long+"b"); string(v) != "B" {
			t.Fatalf("long key b = %q", v)
		}
	})

	t.Run("KVExpiry", func(t *testing.T) {
		kv := newKV(t)
		set(t, kv, key, []byte("v"), 2*scUnit)
		set(t, kv, key+"long", []byte("w"), 100*window)
		advance(scUnit)
		if _, ok := get(t, kv, key); !ok {
			t.Fatal("expired before its ttl")
		}
		advance(scUnit + scUnit/3)
		if v, ok := get(t, kv, key); ok || v != nil {
			t.Fatalf("after its ttl: %q, %v", v, ok)
		}
		if _, ok := get(t, kv, key+"long"); !ok {
			t.Fatal("a longer-lived key expired with it")
		}
	})

	t.Run("KVOverwrite", func(t *testing.T) {
		kv := newKV(t)
		set(t, kv, key, []byte("first"), 2*scUnit)
		advance(scUnit)
		// An overwrite replaces the value and restarts the ttl.
		set(t, kv, key, []byte("second"), 2*scUnit)
		advance(scUnit + scUnit/3)
		if v, ok := get(t, kv, key); !ok || string(v) != "second" {
			t.Fatalf("after overwrite: %q, %v", v, ok)
		}
		// ... and a shorter one shortens it.
		set(t, kv, key, []byte("third"), scUnit)
		advance(scUnit + scUnit/3)
		if _, ok := get(t, kv, key); ok {
			t.Fatal("overwrite with a shorter ttl did not shorten it")
		}
	})

	t.Run("KVCopyIsolation", func(t *testing.T) {
		kv := newKV(t)
		val := []byte("original")
		set(t, kv, key, val, window)
		copy(val, "MUTATED!")
		v, _ := get(t, kv, key)
		if string(v) != "original" {
			t.Fatalf("Set kept the caller's slice: %q", v)
		}
		copy(v, "MUTATED!")
		if v2, _ := get(t, kv, key); string(v2) != "original" {
			t.Fatalf("Get returned the stored slice: %q", v2)
		}
	})

	t.Run("KVSharedBetweenNodes", func(t *testing.T) {
		a, b := newKV(t), newKV(t)
		set(t, a, key, []byte("from a"), window)
		if v, ok := get(t, b, key); !ok || string(v) != "from a" {
			t.Fatalf("node b: %q, %v", v, ok)
		}
		set(t, b, key, []byte("from b"), window)
		if v, _ := get(t, a, key); string(v) != "from b" {
			t.Fatalf("node a: %q", v)
		}
	})

	t.Run("KVRefusesNonPositiveTTL", func(t *testing.T) {
		kv := newKV(t)
		for _, ttl := range []time.Duration{0, -time.Second} {
			if err := kv.Set(ctx, sc, key, []byte("v"), ttl); err == nil {
				t.Errorf("Set with ttl %v: no error", ttl)
			}
		}
		if _, ok := get(t, kv, key); ok {
			t.Fatal("a refused Set stored the value")
		}
	})

	// Quotas (limits.counterKeys, kvEntries, kvBytes): per scope, enforced
	// on creation and growth only, freed by expiry, and a refusal changes
	// nothing.
	refused := func(t *testing.T, err error, what string) {
		t.Helper()
		if !errors.Is(err, plugin.ErrQuotaExceeded) {
			t.Fatalf("%s: error %v, want ErrQuotaExceeded", what, err)
		}
	}
	small := func(tenant string, q plugin.Quota) plugin.Scope {
		return plugin.Scope{Tenant: tenant, Plugin: "quota", Quota: q}
	}

	t.Run("QuotaCounterKeys", func(t *testing.T) {
		c := newCounters(t)
		q := small("acme", plugin.Quota{CounterKeys: 3})
		for i := range 3 {
			incrIn(t, c, q, fmt.Sprint("k", i), 1, window)
		}
		_, _, err := c.Incr(ctx, q, "k3", 1, window)
		refused(t, err, "fourth key")
		// Nothing was created, reads are never refused, and live keys
		// keep counting.
		if v, ttl := incrIn(t, c, q, "k3", 0, window); v != 0 || ttl != 0 {
			t.Fatalf("refused key reads (%d, %v), want (0, 0)", v, ttl)
		}
		if v, _ := incrIn(t, c, q, "k0", 5, window); v != 6 {
			t.Fatalf("live key at the quota: %d, want 6", v)
		}
		// Another node sees the same quota.
		_, _, err = newCounters(t).Incr(ctx, q, "k4", 1, window)
		refused(t, err, "fourth key from another node")
	})

	t.Run("QuotaCounterExpiryFreesKeys", func(t *testing.T) {
		c := newCounters(t)
		q := small("acme", plugin.Quota{CounterKeys: 2})
		incrIn(t, c, q, "a", 1, window)
		incrIn(t, c, q, "b", 1, 100*window)
		_, _, err := c.Incr(ctx, q, "c", 1, window)
		refused(t, err, "third key")
		advance(window + scUnit/3)
		// "a" expired: its room is back; "b" still holds the other.
		incrIn(t, c, q, "c", 1, window)
		_, _, err = c.Incr(ctx, q, "d", 1, window)
		refused(t, err, "fourth key after one expiry")
		if v, _ := incrIn(t, c, q, "b", 0, window); v != 1 {
			t.Fatalf("long-lived key = %d, want 1", v)
		}
	})

	t.Run("QuotaKVEntries", func(t *testing.T) {
		kv := newKV(t)
		q := small("acme", plugin.Quota{KVEntries: 2})
		setIn(t, kv, q, "a", []byte("1"), window)
		setIn(t, kv, q, "b", []byte("2"), window)
		refused(t, kv.Set(ctx, q, "c", []byte("3"), window), "third entry")
		if _, ok := getIn(t, kv, q, "c"); ok {
			t.Fatal("refused entry stored")
		}
		// Overwrites create no entry: larger values too (bytes permitting).
		setIn(t, kv, q, "a", []byte("one, but longer"), window)
		if v, _ := getIn(t, kv, q, "a"); string(v) != "one, but longer" {
			t.Fatalf("a = %q", v)
		}
		if v, _ := getIn(t, kv, q, "b"); string(v) != "2" {
			t.Fatalf("b = %q", v)
		}
	})

	t.Run("QuotaKVBytes", func(t *testing.T) {
		kv := newKV(t)
		q := small("acme", plugin.Quota{KVBytes: 20})     // len(key)+len(value)
		setIn(t, kv, q, "a", []byte("123456789"), window) // 10
		setIn(t, kv, q, "b", []byte("123456789"), window) // 20
		refused(t, kv.Set(ctx, q, "c", nil, window), "one byte over")
		// Same size and smaller overwrites fit at the quota.
		setIn(t, kv, q, "a", []byte("abcdefghi"), window)
		setIn(t, kv, q, "a", []byte("abcd"), window) // 15
		// Growing beyond it is refused and keeps the previous value.
		refused(t, kv.Set(ctx, q, "a", []byte("abcdefghij"), window), "growing overwrite")
		if v, ok := getIn(t, kv, q, "a"); !ok || string(v) != "abcd" {
			t.Fatalf("after a refused overwrite: %q, %v", v, ok)
		}
		// The room the shrink made is usable.
		setIn(t, kv, q, "c", []byte("xyzw"), window) // 20
		refused(t, newKV(t).Set(ctx, q, "d", nil, window), "over the quota from another node")
	})

	t.Run("QuotaKVExpiryFreesRoom", func(t *testing.T) {
		kv := newKV(t)
		q := small("acme", plugin.Quota{KVEntries: 2, KVBytes: 12})
		setIn(t, kv, q, "a", []byte("12345"), 2*scUnit)   // 6 bytes
		setIn(t, kv, q, "b", []byte("12345"), 100*window) // 12 bytes
		refused(t, kv.Set(ctx, q, "c", []byte("1"), window), "third entry")
		advance(2*scUnit + scUnit/3)
		// "a" expired: one entry and its 6 bytes are back.
		setIn(t, kv, q, "c", []byte("12345"), window)
		refused(t, kv.Set(ctx, q, "d", nil, window), "third entry after one expiry")
		refused(t, kv.Set(ctx, q, "c", []byte("123456"), window), "a byte more after one expiry")
		if v, _ := getIn(t, kv, q, "b"); string(v) != "12345" {
			t.Fatalf("long-lived entry = %q", v)
		}
	})

	t.Run("QuotaScopesAreIsolated", func(t *testing.T) {
		c, kv := newCounters(t), newKV(t)
		full := plugin.Quota{CounterKeys: 1, KVEntries: 1, KVBytes: 8}
		a := small("tenant-a", full)
		incrIn(t, c, a, "k", 1, window)
		setIn(t, kv, a, "k", []byte("1234567"), window)
		_, _, err := c.Incr(ctx, a, "other", 1, window)
		refused(t, err, "counter of the full scope")
		refused(t, kv.Set(ctx, a, "other", nil, window), "kv of the full scope")
		// Every other scope, same plugin of another tenant or another plugin
		// of the same tenant, with the same quota and the same keys, has
		// all of its own room.
		for _, b := range []plugin.Scope{small("tenant-b", full), {Tenant: "tenant-a", Plugin: "ratelimit", Quota: full}} {
			if v, _ := incrIn(t, c, b, "k", 1, window); v != 1 {
				t.Fatalf("%v: counter k = %d, want 1 (not the full scope's)", b, v)
			}
			if _, ok := getIn(t, kv, b, "k"); ok {
				t.Fatalf("%v sees the full scope's kv entry", b)
			}
			setIn(t, kv, b, "k", []byte("1234567"), window)
		}
		if v, _ := getIn(t, kv, a, "k"); string(v) != "1234567" {
			t.Fatalf("full scope's entry = %q", v)
		}
	})

	t.Run("QuotaRefusalLosesNothing", func(t *testing.T) {
		c, kv := newCounters(t), newKV(t)
		q := small("acme", plugin.Quota{CounterKeys: 1, KVEntries: 2, KVBytes: 10})
		incrIn(t, c, q, "n", 4, window)
		setIn(t, kv, q, "a", []byte("12"), window)       // 3
		setIn(t, kv, q, "b", []byte("123456"), 2*window) // 10
		for range 3 {
			_, _, err := c.Incr(ctx, q, "m", 1, window)
			refused(t, err, "counter")
			refused(t, kv.Set(ctx, q, "c", nil, window), "entry")
			refused(t, kv.Set(ctx, q, "a", []byte("123"), 100*window), "growth")
		}
		if v, _ := incrIn(t, c, q, "n", 0, window); v != 4 {
			t.Fatalf("counter n = %d, want 4", v)
		}
		if v, _ := getIn(t, kv, q, "a"); string(v) != "12" {
			t.Fatalf("a = %q, want 12", v)
		}
		if v, _ := getIn(t, kv, q, "b"); string(v) != "123456" {
			t.Fatalf("b = %q", v)
		}
		// The refused write did not extend a's TTL either: it expires
		// with its own.
		advance(window + scUnit/3)
		if _, ok := getIn(t, kv, q, "a"); ok {
			t.Fatal("a outlived its ttl after a refused overwrite")
		}
	})
}
