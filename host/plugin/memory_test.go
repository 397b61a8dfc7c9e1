package plugin_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"stellaops.org/authority/host/plugin"
)

// Memory-store properties the contract cannot see: memory comes back as
// entries expire, without lookups of the expired keys and without a scan.

func newMemClock() *scClock {
	c := &scClock{}
	c.ns.Store(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}

// TestMemoryStateReapsExpiredEntries fills a scope, lets its entries
// expire and shows them reaped by operations on other keys of the scope,
// and, for a scope nobody touches any more, by operations on other scopes.
func TestMemoryStateReapsExpiredEntries(t *testing.T) {
	ctx := context.Background()
	clock := newMemClock()
	c, kv := plugin.NewMemoryCounters(clock), plugin.NewMemoryKV(clock)
	busy := plugin.Scope{Tenant: "a", Plugin: "p"}
	idle := plugin.Scope{Tenant: "b", Plugin: "p"}
	const n = 3000
	for i := range n {
		k := "k" + strconv.Itoa(i)
		for _, sc := range []plugin.Scope{busy, idle} {
			if _, _, err := c.Incr(ctx, sc, k, 1, time.Minute); err != nil {
				t.Fatal(err)
			}
			if err := kv.Set(ctx, sc, k, []byte("value"), time.Minute); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := int64(0)
	for i := range n {
		want += int64(len("k"+strconv.Itoa(i)) + len("value"))
	}
	if e, b := kv.Usage(busy); e != n || b != want {
		t.Fatalf("kv usage: %d entries, %d bytes, want %d, %d", e, b, n, want)
	}
	clock.Advance(time.Minute + time.Millisecond)
	// Only the busy scope is used, on a key of its own: each operation
	// reaps a few of its expired entries and a few of the idle scope's.
	for i := 0; i < n; i++ {
		if _, _, err := c.Incr(ctx, busy, "live", 1, time.Hour); err != nil {
			t.Fatal(err)
		}
		if _, _, err := kv.Get(ctx, busy, "live"); err != nil {
			t.Fatal(err)
		}
	}
	for _, sc := range []plugin.Scope{busy, idle} {
		if e, _ := c.Usage(sc); e > 1 {
			t.Errorf("counters of %v: %d entries left, want at most the live one", sc, e)
		}
		if e, b := kv.Usage(sc); e != 0 || b != 0 {
			t.Errorf("kv of %v: %d entries, %d bytes left, want none", sc, e, b)
		}
	}
}

// TestMemoryQuotaDefaults shows that a Scope without a Quota gets the
// defaults, not unlimited room.
func TestMemoryQuotaDefaults(t *testing.T) {
	ctx := context.Background()
	clock := newMemClock()
	d := plugin.DefaultLimits()
	sc := plugin.Scope{Tenant: "a", Plugin: "p"}

	c := plugin.NewMemoryCounters(clock)
	for i := range d.CounterKeys {
		if _, _, err := c.Incr(ctx, sc, strconv.Itoa(i), 1, time.Hour); err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
	}
	if _, _, err := c.Incr(ctx, sc, "one more", 1, time.Hour); !errors.Is(err, plugin.ErrQuotaExceeded) {
		t.Fatalf("key %d: %v, want ErrQuotaExceeded", d.CounterKeys, err)
	}

	kv := plugin.NewMemoryKV(clock)
	for i := range d.KVEntries {
		if err := kv.Set(ctx, sc, strconv.Itoa(i), nil, time.Hour); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
	}
	if err := kv.Set(ctx, sc, "one more", nil, time.Hour); !errors.Is(err, plugin.ErrQuotaExceeded) {
		t.Fatalf("entry %d: %v, want ErrQuotaExceeded", d.KVEntries, err)
	}

	kv = plugin.NewMemoryKV(clock)
	val := make([]byte, 64<<10)
	stored := int64(0)
	for i := 0; ; i++ {
		k := "v" + strconv.Itoa(i)
		err := kv.Set(ctx, sc, k, val, time.Hour)
		if errors.Is(err, plugin.ErrQuotaExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		stored += int64(len(k) + len(val))
	}
	if _, b := kv.Usage(sc); b != stored || b > d.KVBytes || b < d.KVBytes-(64<<10+8) {
		t.Fatalf("stored %d bytes (usage %d), want just under %d", stored, b, d.KVBytes)
	}
}

// TestMemoryClockBackwards: a wall clock that steps back neither expires
// entries early nor loses them.
func TestMemoryClockBackwards(t *testing.T) {
	ctx := context.Background()
	clock := newMemClock()
	kv := plugin.NewMemoryKV(clock)
	sc := plugin.Scope{Tenant: "a", Plugin: "p", Quota: plugin.Quota{KVEntries: 2}}
	if err := kv.Set(ctx, sc, "a", []byte("1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	clock.Advance(-time.Hour)
	if err := kv.Set(ctx, sc, "b", []byte("2"), time.Minute); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour + 30*time.Second)
	if _, ok, _ := kv.Get(ctx, sc, "a"); !ok {
		t.Fatal("a lost after the clock stepped back")
	}
	// b was written "an hour ago" for a minute: expired now, its room back.
	if err := kv.Set(ctx, sc, "c", []byte("3"), time.Minute); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkMemoryCountersChurn measures an increment of a new key in a
// scope at its steady state: every operation creates a key and about one
// expires (windows of 1 s to 1 min, on a fake clock moving 1 ms per op).
// The cost does not grow with the number of keys held (compare -benchtime
// 100000x and 2000000x).
func BenchmarkMemoryCountersChurn(b *testing.B) {
	ctx := context.Background()
	clock := newMemClock()
	c := plugin.NewMemoryCounters(clock)
	sc := plugin.Scope{Tenant: "a", Plugin: "p"}
	windows := []time.Duration{time.Second, 10 * time.Second, time.Minute}
	i := 0
	for b.Loop() {
		clock.Advance(time.Millisecond)
		if _, _, err := c.Incr(ctx, sc, strconv.Itoa(i), 1, windows[i%len(windows)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	e, _ := c.Usage(sc)
	b.ReportMetric(float64(e), "keys")
}

// A Pseudonymizer reusing its HMAC state gives exactly the pseudonyms of
// PseudonymString (the host function's), call after call.
func TestPseudonymizerMatchesPseudonymString(t *testing.T) {
	key := []byte("0123456789abcdef0123456789abcdef")
	p := plugin.NewPseudonymizer(key)
	for _, v := range []string{"", "alice", "203.0.113.7", "alice", string(make([]byte, 4096))} {
		if got, want := p.String(v), plugin.PseudonymString(key, []byte(v)); got != want || len(got) != 43 {
			t.Fatalf("%q: %s, want %s", v, got, want)
		}
	}
}
