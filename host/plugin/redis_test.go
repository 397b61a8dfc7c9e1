package plugin_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"stellaops.org/authority/host/plugin"
	"stellaops.org/authority/internal/redisslot"
	"stellaops.org/authority/internal/testenv"
)

// newTestRedis returns a new client (a new "node": its own connection
// pool) for the test Redis. It fails the test when Redis is unreachable,
// unless AUTHORITY_TEST_REDIS=off, which skips.
func newTestRedis(tb testing.TB) redis.UniversalClient {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(tb)})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// testRedisPrefix returns a unique prefix whose keys are deleted when the
// test ends.
func testRedisPrefix(tb testing.TB, name string) string {
	tb.Helper()
	prefix := testenv.Prefix(name)
	addr := testenv.RedisAddr(tb)
	tb.Cleanup(func() {
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		if err := iter.Err(); err != nil {
			tb.Errorf("cleaning up %s*: %v", prefix, err)
		}
	})
	return prefix
}

func TestStateContractRedis(t *testing.T) {
	testenv.RedisAddr(t) // fail (or skip) once, not in every case
	var prefixes perTest[string]
	prefix := func(t *testing.T) string {
		return prefixes.get(t, func() string { return testRedisPrefix(t, "plugin-state") })
	}
	runStateContract(t,
		func(t *testing.T) plugin.Counters { return plugin.NewRedisCounters(newTestRedis(t), prefix(t)) },
		func(t *testing.T) plugin.KV { return plugin.NewRedisKV(newTestRedis(t), prefix(t)) },
		time.Sleep)
}

// The same contract on a three-primary Redis Cluster of the test's own:
// every scope's keys share a slot (no CROSSSLOT in the scripts or the
// batch's pipeline), and scopes spread over the primaries.
func TestStateContractRedisCluster(t *testing.T) {
	cl := testenv.StartRedisCluster(t, 3)
	var prefixes perTest[string]
	prefix := func(t *testing.T) string {
		return prefixes.get(t, func() string { return testenv.Prefix("plugin-state") })
	}
	runStateContract(t,
		func(t *testing.T) plugin.Counters { return plugin.NewRedisCounters(cl.Client(t), prefix(t)) },
		func(t *testing.T) plugin.KV { return plugin.NewRedisKV(cl.Client(t), prefix(t)) },
		time.Sleep)

	ctx := context.Background()
	c := plugin.NewRedisCounters(cl.Client(t), "spread:")
	kv := plugin.NewRedisKV(cl.Client(t), "spread:")
	for i := range 60 {
		scope := plugin.Scope{Tenant: fmt.Sprintf("tenant-%d", i), Plugin: "sec3"}
		ops := []plugin.CounterOp{{Key: "a", Delta: 1, Window: time.Minute}, {Key: "b", Delta: 2, Window: time.Minute}, {Key: "a"}}
		out := make([]plugin.CounterResult, len(ops))
		c.(plugin.CounterBatcher).IncrMany(ctx, scope, ops, out)
		if out[0].Err != nil || out[1].Err != nil || out[2].Err != nil || out[2].Value != 1 || out[1].Value != 2 {
			t.Fatalf("batch of %s: %+v", scope.Tenant, out)
		}
		if err := kv.Set(ctx, scope, "k", []byte("v"), time.Minute); err != nil {
			t.Fatalf("kv of %s: %v", scope.Tenant, err)
		}
		keys := plugin.RedisScopeKeys("spread:", true, scope)
		for _, k := range keys[1:] {
			if redisslot.Slot(k) != redisslot.Slot(keys[0]) {
				t.Fatalf("scope %s: %q and %q in different slots", scope.Tenant, keys[0], k)
			}
		}
	}
	if holding := cl.PrimariesHolding(t); holding != 3 {
		t.Fatalf("60 scopes held by %d of 3 primaries", holding)
	}
}

// rtScope is the scope of the Redis-specific tests; its keys are
// "plugin:4:acme:rl:<key>".
var rtScope = plugin.Scope{Tenant: "acme", Plugin: "rl"}

func TestRedisKVSizeBound(t *testing.T) {
	ctx := context.Background()
	c := newTestRedis(t)
	kv := plugin.NewRedisKV(c, testRedisPrefix(t, "plugin-kv-size"))
	max := make([]byte, 64<<10)
	max[len(max)-1] = 'z'
	if err := kv.Set(ctx, rtScope, "k", max, time.Minute); err != nil {
		t.Fatalf("64 KiB value refused: %v", err)
	}
	if v, ok, err := kv.Get(ctx, rtScope, "k"); err != nil || !ok || len(v) != len(max) || v[len(v)-1] != 'z' {
		t.Fatalf("64 KiB value read back as %d bytes, %v, %v", len(v), ok, err)
	}
	err := kv.Set(ctx, rtScope, "k", make([]byte, 64<<10+1), time.Minute)
	if !errors.Is(err, plugin.ErrValueTooLarge) {
		t.Fatalf("64 KiB + 1: error %v, want ErrValueTooLarge", err)
	}
	// The refused value did not replace the stored one.
	if v, _, _ := kv.Get(ctx, rtScope, "k"); len(v) != len(max) {
		t.Fatalf("refused Set changed the value: %d bytes", len(v))
	}
}

// TestRedisLayout pins the key layout (operators scan and expire by it;
// the data keys are those of the releases before quotas, so an upgrade
// keeps the state) and that every key, the quota's included, carries its
// TTL.
func TestRedisLayout(t *testing.T) {
	ctx := context.Background()
	c := newTestRedis(t)
	prefix := testRedisPrefix(t, "plugin-layout")
	counters, kv := plugin.NewRedisCounters(c, prefix), plugin.NewRedisKV(c, prefix)
	if _, _, err := counters.Incr(ctx, rtScope, "k", 1, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := kv.Set(ctx, rtScope, "k", []byte("v"), 2500*time.Microsecond); err != nil {
		t.Fatal(err)
	}
	if err := kv.Set(ctx, rtScope, "k2", []byte("value"), time.Minute); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("L", 600)
	if _, _, err := counters.Incr(ctx, rtScope, long, 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if ttl := c.PTTL(ctx, prefix+"c:plugin:4:acme:rl:k").Val(); ttl <= 89*time.Second || ttl > 90*time.Second {
		t.Fatalf("counter key ttl %v", ttl)
	}
	if got := c.Get(ctx, prefix+"c:plugin:4:acme:rl:k").Val(); got != "1" {
		t.Fatalf("counter key holds %q", got)
	}
	// 2.5 ms is rounded up to 3 ms (TestCeilMillis): the key carries a TTL of
	// at most 3 ms, or has already expired (-2) on a loaded machine; it never
	// lives without one (-1) or longer.
	if ttl := c.PTTL(ctx, prefix+"kv:plugin:4:acme:rl:k").Val(); ttl == -time.Nanosecond || ttl > 3*time.Millisecond {
		t.Fatalf("kv key ttl %v", ttl)
	}
	keys, err := c.Keys(ctx, prefix+"c#*").Result()
	if err != nil || len(keys) != 1 || len(keys[0]) != len(prefix)+2+64 {
		t.Fatalf("long key stored as %v (%v), want one c#<sha256>", keys, err)
	}
	// The quota: counter keys (the long one as #<sha256>) and kv entries
	// with their counted bytes, scored by expiry; the kv byte total.
	members, err := c.ZRange(ctx, prefix+"cq:4:acme:rl", 0, -1).Result()
	if err != nil || len(members) != 2 || !slices.Contains(members, "k") {
		t.Fatalf("counter index %v (%v)", members, err)
	}
	members, err = c.ZRange(ctx, prefix+"kvq:4:acme:rl", 0, -1).Result()
	if err != nil || !slices.Contains(members, "k2 7") {
		t.Fatalf("kv index %v (%v), want a member \"k2 7\"", members, err)
	}
	if n, err := c.Get(ctx, prefix+"kvb:4:acme:rl").Int(); err != nil || n != 7 && n != 9 {
		t.Fatalf("kv byte total %d (%v), want 7 (9 before k expired)", n, err)
	}
	for _, k := range []string{"cq:4:acme:rl", "kvq:4:acme:rl", "kvb:4:acme:rl"} {
		if ttl := c.PTTL(ctx, prefix+k).Val(); ttl <= 50*time.Second || ttl > 90*time.Second {
			t.Fatalf("%s ttl %v, want the longest member's", k, ttl)
		}
	}
}

// TestRedisCounterEdges covers values beyond Lua's exact integers, a key
// left without a TTL by someone else, and errors surfacing.
func TestRedisCounterEdges(t *testing.T) {
	ctx := context.Background()
	c := newTestRedis(t)
	prefix := testRedisPrefix(t, "plugin-edges")
	counters := plugin.NewRedisCounters(c, prefix)

	big := int64(1<<53 + 1)
	if v, _, err := counters.Incr(ctx, rtScope, "big", big, time.Minute); err != nil || v != big {
		t.Fatalf("Incr(2^53+1) = %d, %v", v, err)
	}
	if v, _, err := counters.Incr(ctx, rtScope, "big", math.MaxInt64-big, time.Minute); err != nil || v != math.MaxInt64 {
		t.Fatalf("Incr to MaxInt64 = %d, %v", v, err)
	}
	if _, _, err := counters.Incr(ctx, rtScope, "big", 1, time.Minute); err == nil {
		t.Fatal("overflow: no error")
	}

	// A persistent key (not written by us) gets the window as its TTL.
	c.Set(ctx, prefix+"c:plugin:4:acme:rl:persist", "5", 0)
	v, ttl, err := counters.Incr(ctx, rtScope, "persist", 1, time.Minute)
	if err != nil || v != 6 || ttl != time.Minute {
		t.Fatalf("persistent key: (%d, %v, %v)", v, ttl, err)
	}
	if pttl := c.PTTL(ctx, prefix+"c:plugin:4:acme:rl:persist").Val(); pttl <= 0 {
		t.Fatalf("persistent key still has pttl %v", pttl)
	}

	c.Set(ctx, prefix+"c:plugin:4:acme:rl:text", "abc", time.Minute)
	if _, _, err := counters.Incr(ctx, rtScope, "text", 1, time.Minute); err == nil || !strings.Contains(err.Error(), "plugin: redis counter") {
		t.Fatalf("non-integer value: error %v", err)
	}

	// A sub-millisecond window is rounded up, not dropped: the key gets a
	// 1 ms TTL, which may run out before Redis reports it back on a loaded
	// machine (0), but never more (the rounding is TestCeilMillis's).
	if v, ttl, err := counters.Incr(ctx, rtScope, "tiny", 1, 300*time.Microsecond); err != nil || v != 1 || ttl < 0 || ttl > time.Millisecond {
		t.Fatalf("sub-ms window: (%d, %v, %v)", v, ttl, err)
	}

	// A closed client is an error, not a zero value, and not a quota
	// refusal.
	dead := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	dead.Close()
	if _, _, err := plugin.NewRedisCounters(dead, prefix).Incr(ctx, rtScope, "k", 1, time.Minute); err == nil || errors.Is(err, plugin.ErrQuotaExceeded) {
		t.Fatalf("closed client: error %v", err)
	}
	if _, _, err := plugin.NewRedisKV(dead, prefix).Get(ctx, rtScope, "k"); err == nil {
		t.Fatal("closed client: kv get: no error")
	}
	if err := plugin.NewRedisKV(dead, prefix).Set(ctx, rtScope, "k", nil, time.Minute); err == nil || errors.Is(err, plugin.ErrQuotaExceeded) {
		t.Fatalf("closed client: kv set: error %v", err)
	}
}

// TestRedisCounterOneRoundTrip checks that an Incr, a kv Set and a kv Get
// are a single command each on the wire once the scripts are cached
// (EVALSHA), quota refusals included.
func TestRedisCounterOneRoundTrip(t *testing.T) {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { _ = c.Close() })
	var cmds atomic.Int64
	c.AddHook(countHook{n: &cmds})
	prefix := testRedisPrefix(t, "plugin-rt")
	counters, kv := plugin.NewRedisCounters(c, prefix), plugin.NewRedisKV(c, prefix)
	q := plugin.Scope{Tenant: "acme", Plugin: "rl", Quota: plugin.Quota{CounterKeys: 2, KVEntries: 2}}
	if _, _, err := counters.Incr(ctx, q, "warm", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := kv.Set(ctx, q, "warm", nil, time.Minute); err != nil {
		t.Fatal(err)
	}
	cmds.Store(0)
	for i := range 10 {
		// k0 fits, k1 and k2 are refused by the quota of 2.
		if _, _, err := counters.Incr(ctx, q, "k"+strconv.Itoa(i%3), 1, time.Minute); err != nil && !errors.Is(err, plugin.ErrQuotaExceeded) {
			t.Fatal(err)
		}
		if err := kv.Set(ctx, q, "k"+strconv.Itoa(i%3), []byte("v"), time.Minute); err != nil && !errors.Is(err, plugin.ErrQuotaExceeded) {
			t.Fatal(err)
		}
		if _, _, err := kv.Get(ctx, q, "k"+strconv.Itoa(i%3)); err != nil {
			t.Fatal(err)
		}
	}
	if n := cmds.Load(); n != 30 {
		t.Fatalf("10 increments, sets and gets sent %d commands", n)
	}
}

// TestRedisCountersIncrManyOneRoundTrip: a batch is one pipeline (one
// round trip) whose results are what the same Incr calls one by one give,
// a quota refusal staying that operation's; after SCRIPT FLUSH the batch
// still runs (the script is loaded again).
func TestRedisCountersIncrManyOneRoundTrip(t *testing.T) {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { _ = c.Close() })
	var trips atomic.Int64
	c.AddHook(countHook{n: &trips, trips: true})
	prefix := testRedisPrefix(t, "plugin-many")
	counters := plugin.NewRedisCounters(c, prefix).(plugin.CounterBatcher)
	q := plugin.Scope{Tenant: "acme", Plugin: "rl", Quota: plugin.Quota{CounterKeys: 2}}
	ops := []plugin.CounterOp{{Key: "a", Delta: 2, Window: time.Minute}, {Key: "a"}, {Key: "absent"},
		{Key: "b", Delta: 1, Window: time.Minute}, {Key: "c", Delta: 1, Window: time.Minute}, {Key: "a", Delta: -1, Window: time.Minute}}
	out := make([]plugin.CounterResult, len(ops))
	counters.IncrMany(ctx, q, ops, out) // loads the script
	trips.Store(0)
	counters.IncrMany(ctx, q, ops, out)
	if n := trips.Load(); n != 1 {
		t.Fatalf("a batch of %d took %d round trips", len(ops), n)
	}
	want := []int64{3, 3, 0, 2, 0, 2}
	for i, r := range out {
		switch {
		case i == 4:
			if !errors.Is(r.Err, plugin.ErrQuotaExceeded) {
				t.Errorf("op %d (a third key over a quota of 2): %+v", i, r)
			}
		case r.Err != nil || r.Value != want[i]:
			t.Errorf("op %d: %+v, want value %d", i, r, want[i])
		case i != 2 && (r.TTL <= 0 || r.TTL > time.Minute):
			t.Errorf("op %d: ttl %v", i, r.TTL)
		}
	}
	if err := c.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	counters.IncrMany(ctx, q, ops[:1], out[:1])
	if out[0].Err != nil || out[0].Value != 4 {
		t.Fatalf("after SCRIPT FLUSH: %+v", out[0])
	}
}

// TestRedisQuotaAccountingHeals shows that losing a key to eviction (or
// to a restart that kept some keys) never leaves the quota wrong for longer
// than the lost entries would have lived.
func TestRedisQuotaAccountingHeals(t *testing.T) {
	ctx := context.Background()
	c := newTestRedis(t)
	prefix := testRedisPrefix(t, "plugin-heal")
	counters, kv := plugin.NewRedisCounters(c, prefix), plugin.NewRedisKV(c, prefix)
	q := plugin.Scope{Tenant: "acme", Plugin: "rl", Quota: plugin.Quota{CounterKeys: 2, KVEntries: 3, KVBytes: 20}}
	quota := func(err error) bool { return errors.Is(err, plugin.ErrQuotaExceeded) }
	set := func(key, val string, ttl time.Duration) error { return kv.Set(ctx, q, key, []byte(val), ttl) }

	t.Run("KVByteTotalLost", func(t *testing.T) {
		if err := errors.Join(set("a", "123456789", time.Minute), set("b", "123456789", time.Minute)); err != nil {
			t.Fatal(err)
		}
		c.Del(ctx, prefix+"kvb:4:acme:rl")
		// Rebuilt from the index: still 20 bytes, full.
		if err := set("c", "", time.Minute); !quota(err) {
			t.Fatalf("after losing the total: %v, want a quota refusal", err)
		}
		if n, _ := c.Get(ctx, prefix+"kvb:4:acme:rl").Int(); n != 20 {
			t.Fatalf("rebuilt total %d, want 20", n)
		}
	})

	t.Run("KVIndexLost", func(t *testing.T) {
		c.Del(ctx, prefix+"kvq:4:acme:rl")
		// The total goes with the index; a and b (alive) are not counted
		// any more, which lasts only as long as they do.
		if err := set("c", "123456789", time.Minute); err != nil {
			t.Fatalf("after losing the index: %v", err)
		}
		if n, _ := c.Get(ctx, prefix+"kvb:4:acme:rl").Int(); n != 10 {
			t.Fatalf("total %d, want 10 (c only)", n)
		}
		// Rewriting a lost key counts it again.
		if err := set("a", "123456789", time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := set("d", "1", time.Minute); !quota(err) {
			t.Fatalf("a and c count again: %v, want a quota refusal", err)
		}
	})

	t.Run("KVValueLost", func(t *testing.T) {
		c.Del(ctx, prefix+"kvq:4:acme:rl", prefix+"kvb:4:acme:rl")
		total := func() int { n, _ := c.Get(ctx, prefix+"kvb:4:acme:rl").Int(); return n }
		if err := set("e", "1234", 2*scUnit); err != nil { // 5 bytes
			t.Fatal(err)
		}
		// e's value is evicted; its index member stays until e's expiry,
		// so a rewrite of another size counts both until then.
		c.Del(ctx, prefix+"kv:plugin:4:acme:rl:e")
		if err := set("e", "12345", time.Minute); err != nil {
			t.Fatal(err)
		}
		if n := total(); n != 11 {
			t.Fatalf("total %d, want 11 (e's old 5 and new 6)", n)
		}
		// A rewrite of the same size finds its member: counted once.
		if err := set("h", "12", time.Minute); err != nil {
			t.Fatal(err)
		}
		c.Del(ctx, prefix+"kv:plugin:4:acme:rl:h")
		if err := set("h", "12", time.Minute); err != nil {
			t.Fatalf("same-size rewrite of an evicted value at the entries quota: %v", err)
		}
		if n := total(); n != 14 {
			t.Fatalf("total %d, want 14 (h once)", n)
		}
		time.Sleep(2*scUnit + scUnit/3)
		if err := set("f", "", time.Minute); err != nil { // trims e's old member
			t.Fatal(err)
		}
		if n := total(); n != 10 {
			t.Fatalf("total %d, want 10 (e, h, f)", n)
		}
	})

	t.Run("CounterIndexLost", func(t *testing.T) {
		for _, k := range []string{"a", "b"} {
			if _, _, err := counters.Incr(ctx, q, k, 1, 2*scUnit); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, err := counters.Incr(ctx, q, "c", 1, time.Minute); !quota(err) {
			t.Fatalf("third key: %v, want a quota refusal", err)
		}
		c.Del(ctx, prefix+"cq:4:acme:rl")
		// a and b are uncounted while they live...
		for _, k := range []string{"c", "d"} {
			if _, _, err := counters.Incr(ctx, q, k, 1, time.Minute); err != nil {
				t.Fatal(err)
			}
		}
		// ...and the quota holds again for new keys.
		if _, _, err := counters.Incr(ctx, q, "e", 1, time.Minute); !quota(err) {
			t.Fatalf("fifth key: %v, want a quota refusal", err)
		}
		// A counter whose value was evicted is not counted twice when
		// it starts again.
		c.Del(ctx, prefix+"c:plugin:4:acme:rl:d")
		if _, _, err := counters.Incr(ctx, q, "d", 1, time.Minute); err != nil {
			t.Fatalf("restarting an evicted counter: %v", err)
		}
	})
}

// countHook counts commands, or with trips round trips (a pipeline is
// one).
type countHook struct {
	n     *atomic.Int64
	trips bool
}

func (h countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.trips {
			h.n.Add(1)
		} else {
			h.n.Add(int64(len(cmds)))
		}
		return next(ctx, cmds)
	}
}

func BenchmarkRedisCountersIncr(b *testing.B) {
	ctx := context.Background()
	c := newTestRedis(b)
	counters := plugin.NewRedisCounters(c, testRedisPrefix(b, "plugin-bench"))
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = "client-" + strconv.Itoa(i)
	}
	b.Run("serial", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, _, err := counters.Incr(ctx, rtScope, keys[i%len(keys)], 1, time.Minute); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
	b.Run("parallel", func(b *testing.B) {
		var next atomic.Int64
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(1))
			for pb.Next() {
				if _, _, err := counters.Incr(ctx, rtScope, keys[i%len(keys)], 1, time.Minute); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
}
