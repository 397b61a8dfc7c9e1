package plugin_test

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"stellaops.org/authority/host/plugin"
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

func TestRedisKVSizeBound(t *testing.T) {
	ctx := context.Background()
	c := newTestRedis(t)
	kv := plugin.NewRedisKV(c, testRedisPrefix(t, "plugin-kv-size"))
	max := make([]byte, 64<<10)
	max[len(max)-1] = 'z'
	if err := kv.Set(ctx, "k", max, time.Minute); err != nil {
		t.Fatalf("64 KiB value refused: %v", err)
	}
	if v, ok, err := kv.Get(ctx, "k"); err != nil || !ok || len(v) != len(max) || v[len(v)-1] != 'z' {
		t.Fatalf("64 KiB value read back as %d bytes, %v, %v", len(v), ok, err)
	}
	err := kv.Set(ctx, "k", make([]byte, 64<<10+1), time.Minute)
	if !errors.Is(err, plugin.ErrValueTooLarge) {
		t.Fatalf("64 KiB + 1: error %v, want ErrValueTooLarge", err)
	}
	// The refused value did not replace the stored one.
	if v, _, _ := kv.Get(ctx, "k"); len(v) != len(max) {
		t.Fatalf("refused Set changed the value: %d bytes", len(v))
	}
}

// TestRedisLayout pins the key layout (operators scan and expire by it)
// and that every key carries its TTL.
func TestRedisLayout(t *testing.T) {
	ctx := context.Background()
	c := newTestRedis(t)
	prefix := testRedisPrefix(t, "plugin-layout")
	counters, kv := plugin.NewRedisCounters(c, prefix), plugin.NewRedisKV(c, prefix)
	const key = "plugin:4:acme:rl:k"
	if _, _, err := counters.Incr(ctx, key, 1, 90*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := kv.Set(ctx, key, []byte("v"), 2500*time.Microsecond); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("L", 600)
	if _, _, err := counters.Incr(ctx, long, 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	if ttl := c.PTTL(ctx, prefix+"c:"+key).Val(); ttl <= 89*time.Second || ttl > 90*time.Second {
		t.Fatalf("counter key ttl %v", ttl)
	}
	if got := c.Get(ctx, prefix+"c:"+key).Val(); got != "1" {
		t.Fatalf("counter key holds %q", got)
	}
	// 2.5 ms is rounded up to 3 ms.
	if ttl := c.PTTL(ctx, prefix+"kv:"+key).Val(); ttl <= 0 || ttl > 3*time.Millisecond {
		t.Fatalf("kv key ttl %v", ttl)
	}
	keys, err := c.Keys(ctx, prefix+"c#*").Result()
	if err != nil || len(keys) != 1 || len(keys[0]) != len(prefix)+2+64 {
		t.Fatalf("long key stored as %v (%v), want one c#<sha256>", keys, err)
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
	if v, _, err := counters.Incr(ctx, "big", big, time.Minute); err != nil || v != big {
		t.Fatalf("Incr(2^53+1) = %d, %v", v, err)
	}
	if v, _, err := counters.Incr(ctx, "big", math.MaxInt64-big, time.Minute); err != nil || v != math.MaxInt64 {
		t.Fatalf("Incr to MaxInt64 = %d, %v", v, err)
	}
	if _, _, err := counters.Incr(ctx, "big", 1, time.Minute); err == nil {
		t.Fatal("overflow: no error")
	}

	// A persistent key (not written by us) gets the window as its TTL.
	c.Set(ctx, prefix+"c:persist", "5", 0)
	v, ttl, err := counters.Incr(ctx, "persist", 1, time.Minute)
	if err != nil || v != 6 || ttl != time.Minute {
		t.Fatalf("persistent key: (%d, %v, %v)", v, ttl, err)
	}
	if pttl := c.PTTL(ctx, prefix+"c:persist").Val(); pttl <= 0 {
		t.Fatalf("persistent key still has pttl %v", pttl)
	}

	c.Set(ctx, prefix+"c:text", "abc", time.Minute)
	if _, _, err := counters.Incr(ctx, "text", 1, time.Minute); err == nil || !strings.Contains(err.Error(), "plugin: redis counter") {
		t.Fatalf("non-integer value: error %v", err)
	}

	// A sub-millisecond window is rounded up, not dropped.
	if v, ttl, err := counters.Incr(ctx, "tiny", 1, 300*time.Microsecond); err != nil || v != 1 || ttl != time.Millisecond {
		t.Fatalf("sub-ms window: (%d, %v, %v)", v, ttl, err)
	}

	// A closed client is an error, not a zero value.
	dead := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	dead.Close()
	if _, _, err := plugin.NewRedisCounters(dead, prefix).Incr(ctx, "k", 1, time.Minute); err == nil {
		t.Fatal("closed client: no error")
	}
	if _, _, err := plugin.NewRedisKV(dead, prefix).Get(ctx, "k"); err == nil {
		t.Fatal("closed client: kv get: no error")
	}
}

// TestRedisCounterOneRoundTrip checks that an Incr is a single command on
// the wire once the script is cached (EVALSHA).
func TestRedisCounterOneRoundTrip(t *testing.T) {
	ctx := context.Background()
	c := redis.NewClient(&redis.Options{Addr: testenv.RedisAddr(t)})
	t.Cleanup(func() { _ = c.Close() })
	var cmds atomic.Int64
	c.AddHook(countHook{&cmds})
	counters := plugin.NewRedisCounters(c, testRedisPrefix(t, "plugin-rt"))
	if _, _, err := counters.Incr(ctx, "warm", 1, time.Minute); err != nil {
		t.Fatal(err)
	}
	cmds.Store(0)
	for i := range 10 {
		if _, _, err := counters.Incr(ctx, "k"+strconv.Itoa(i%3), 1, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if n := cmds.Load(); n != 10 {
		t.Fatalf("10 increments sent %d commands", n)
	}
}

type countHook struct{ n *atomic.Int64 }

func (h countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

func BenchmarkRedisCountersIncr(b *testing.B) {
	ctx := context.Background()
	c := newTestRedis(b)
	counters := plugin.NewRedisCounters(c, testRedisPrefix(b, "plugin-bench"))
	keys := make([]string, 64)
	for i := range keys {
		keys[i] = "plugin:4:acme:ratelimit:client-" + strconv.Itoa(i)
	}
	b.Run("serial", func(b *testing.B) {
		i := 0
		for b.Loop() {
			if _, _, err := counters.Incr(ctx, keys[i%len(keys)], 1, time.Minute); err != nil {
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
				if _, _, err := counters.Incr(ctx, keys[i%len(keys)], 1, time.Minute); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
	})
}
