package dpop

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"stellaops.org/authority/internal/testenv"
)

// Interface conformance.
var (
	_ State       = (*MemoryState)(nil)
	_ State       = (*RedisState)(nil)
	_ ReplayCache = (*MemoryReplayCache)(nil)
	_ ReplayCache = (*RedisState)(nil)
	_ NonceStore  = (*MemoryNonceStore)(nil)
	_ NonceStore  = (*RedisState)(nil)
)

// backend builds stores for the shared contract. Two calls to a backend's
// constructors with the same t return stores that share storage, like two
// nodes of one deployment.
type backend struct {
	name string
	// unit is the time scale: nonce TTLs and replay TTLs in the contract
	// are multiples of it (long for the fake clock, short for real Redis).
	unit     time.Duration
	newPair  func(t *testing.T, opts NonceOptions) (State, State)
	replay   func(t *testing.T) ReplayCache
	nonces   func(t *testing.T, opts NonceOptions) (NonceStore, NonceStore)
	advance  func(d time.Duration)
	memClock *fakeClock
}

func memoryBackend() backend {
	clock := &fakeClock{t: testNow}
	return backend{
		name: "memory",
		unit: 10 * time.Second,
		newPair: func(t *testing.T, opts NonceOptions) (State, State) {
			s := NewMemoryState(MemoryOptions{Nonce: opts, Now: clock.Now})
			return s, s
		},
		replay: func(t *testing.T) ReplayCache { return NewMemoryReplayCache(MemoryOptions{Now: clock.Now}) },
		nonces: func(t *testing.T, opts NonceOptions) (NonceStore, NonceStore) {
			s := NewMemoryNonceStore(MemoryOptions{Nonce: opts, Now: clock.Now})
			return s, s
		},
		advance:  clock.Advance,
		memClock: clock,
	}
}

// redisClient returns a client for the test Redis, skipping only when
// AUTHORITY_TEST_REDIS=off and failing loudly when Redis is unreachable.
func redisClient(t testing.TB) redis.UniversalClient {
	t.Helper()
	if os.Getenv("AUTHORITY_TEST_REDIS") == "off" {
		t.Skip("AUTHORITY_TEST_REDIS=off")
	}
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at 127.0.0.1:6379 unreachable (set AUTHORITY_TEST_REDIS=off to skip): %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// uniquePrefix is a random key prefix per test, removed afterwards.
func uniquePrefix(t testing.TB, c redis.UniversalClient) string {
	t.Helper()
	var b [8]byte
	_, _ = rand.Read(b[:])
	prefix := "dpoptest:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() { _ = deletePrefix(c, prefix) })
	return prefix
}

// deletePrefix deletes every key under prefix.
func deletePrefix(c redis.UniversalClient, prefix string) error {
	ctx := context.Background()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		if err := c.Del(ctx, iter.Val()).Err(); err != nil {
			return err
		}
	}
	return iter.Err()
}

func redisBackend() backend {
	return backend{
		name: "redis",
		unit: 400 * time.Millisecond,
		newPair: func(t *testing.T, opts NonceOptions) (State, State) {
			c := redisClient(t)
			p := uniquePrefix(t, c)
			return NewRedisState(c, p, opts), NewRedisState(redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"}), p, opts)
		},
		replay: func(t *testing.T) ReplayCache {
			c := redisClient(t)
			return NewRedisReplayCache(c, uniquePrefix(t, c))
		},
		nonces: func(t *testing.T, opts NonceOptions) (NonceStore, NonceStore) {
			c := redisClient(t)
			p := uniquePrefix(t, c)
			return NewRedisNonceStore(c, p, opts), NewRedisNonceStore(c, p, opts)
		},
		advance: time.Sleep,
	}
}

// clusterBackend is the contract on a three-primary Redis Cluster of the
// test's own: RedisState shards its keys there (ClusterShards), and each
// node of the pair has its own cluster client.
func clusterBackend(t *testing.T) backend {
	cl := testenv.StartRedisCluster(t, 3)
	var n atomic.Int64
	prefix := func() string { return fmt.Sprintf("dpoptest:%d:", n.Add(1)) }
	return backend{
		name: "redis-cluster",
		unit: 400 * time.Millisecond,
		newPair: func(t *testing.T, opts NonceOptions) (State, State) {
			p := prefix()
			return NewRedisState(cl.Client(t), p, opts), NewRedisState(cl.Client(t), p, opts)
		},
		replay: func(t *testing.T) ReplayCache { return NewRedisReplayCache(cl.Client(t), prefix()) },
		nonces: func(t *testing.T, opts NonceOptions) (NonceStore, NonceStore) {
			p := prefix()
			return NewRedisNonceStore(cl.Client(t), p, opts), NewRedisNonceStore(cl.Client(t), p, opts)
		},
		advance: time.Sleep,
	}
}

func TestStateContract(t *testing.T) {
	for _, b := range []backend{memoryBackend(), redisBackend(), clusterBackend(t)} {
		t.Run(b.name, func(t *testing.T) {
			if b.name != "memory" {
				t.Parallel()
			}
			runContract(t, b)
		})
	}
}

func rk(s string) ReplayKey { return NewReplayKey("jkt", "https://as/token", s) }

func runContract(t *testing.T, b backend) {
	u := b.unit
	ctx := context.Background()

	t.Run("ReplayCache/SetIfAbsentWithTTL", func(t *testing.T) {
		c := b.replay(t)
		expect(t, true)(c.Remember(ctx, rk("a"), 2*u))
		expect(t, false)(c.Remember(ctx, rk("a"), 2*u))
		expect(t, true)(c.Remember(ctx, rk("b"), 2*u))
		b.advance(u)
		expect(t, false)(c.Remember(ctx, rk("a"), 2*u))
		b.advance(u + u/2)
		expect(t, true)(c.Remember(ctx, rk("a"), 2*u)) // expired, recorded again
		expect(t, false)(c.Remember(ctx, rk("a"), 2*u))
	})

	t.Run("NonceStore/RotatesAfterHalfTTL", func(t *testing.T) {
		a, other := b.nonces(t, NonceOptions{TTL: 2 * u})
		n1 := str(t)(a.Issue(ctx, "s"))
		if len(n1) != nonceLen {
			t.Fatalf("nonce %q", n1)
		}
		if n := str(t)(other.Issue(ctx, "s")); n != n1 {
			t.Fatalf("within TTL/2 the scope's nonce is stable: %s != %s", n, n1)
		}
		expect(t, true)(other.Validate(ctx, "s", n1))
		expect(t, true)(a.Validate(ctx, "s", n1)) // default mode: reusable
		expect(t, false)(a.Validate(ctx, "other-scope", n1))
		b.advance(u + u/4) // past TTL/2
		n2 := str(t)(a.Issue(ctx, "s"))
		if n2 == n1 {
			t.Fatal("not rotated after TTL/2")
		}
		expect(t, true)(a.Validate(ctx, "s", n1)) // previous valid until its TTL
		expect(t, true)(other.Validate(ctx, "s", n2))
		b.advance(u) // n1 is 2.25u old: expired; n2 is 1u old
		expect(t, false)(a.Validate(ctx, "s", n1))
		expect(t, true)(other.Validate(ctx, "s", n2))
		b.advance(u + u/2) // n2 expired too
		expect(t, false)(a.Validate(ctx, "s", n2))
	})

	t.Run("NonceStore/RefusesForeignValues", func(t *testing.T) {
		a, _ := b.nonces(t, NonceOptions{TTL: 2 * u})
		_ = str(t)(a.Issue(ctx, "s"))
		for _, bad := range []string{"", "x", "AAAAAAAAAAAAAAAAAAAAAA", "n:*", "AAAAAAAAAAAAAAAAAAAAA:"} {
			expect(t, false)(a.Validate(ctx, "s", bad))
		}
	})

	t.Run("NonceStore/SingleUseSpentOnce", func(t *testing.T) {
		a, other := b.nonces(t, NonceOptions{TTL: 2 * u, SingleUse: true})
		n1 := str(t)(a.Issue(ctx, "s"))
		n2 := str(t)(a.Issue(ctx, "s"))
		if n1 == n2 {
			t.Fatal("single-use nonces must differ per issue")
		}
		expect(t, false)(other.Validate(ctx, "other-scope", n1))
		expect(t, true)(other.Validate(ctx, "s", n1))
		expect(t, false)(a.Validate(ctx, "s", n1))
		b.advance(2*u + u/4)
		expect(t, false)(a.Validate(ctx, "s", n2)) // expired
	})

	t.Run("State/ReplayBeforeNonce", func(t *testing.T) {
		for _, single := range []bool{false, true} {
			a, other := b.newPair(t, NonceOptions{TTL: 4 * u, SingleUse: single})
			n := str(t)(a.Nonce(ctx, "s"))
			c := StateCheck{ReplayKey: rk(freshJTI()), ReplayTTL: 2 * u, NonceRequired: true, NonceScope: "s", Nonce: n}
			res, err := other.Check(ctx, c)
			if err != nil || res.Replayed || !res.NonceValid || res.NextNonce == "" {
				t.Fatalf("single=%v first check: %+v %v", single, res, err)
			}
			res, err = a.Check(ctx, c)
			if err != nil || !res.Replayed || res.NonceValid || res.NextNonce == "" {
				t.Fatalf("single=%v replay: %+v %v", single, res, err)
			}
			// The nonce the client was given works on the other node.
			c2 := StateCheck{ReplayKey: rk(freshJTI()), ReplayTTL: 2 * u, NonceRequired: true, NonceScope: "s", Nonce: res.NextNonce}
			res, err = other.Check(ctx, c2)
			if err != nil || res.Replayed || !res.NonceValid {
				t.Fatalf("single=%v next nonce on other node: %+v %v", single, res, err)
			}
			if single {
				// A replay does not spend a single-use nonce.
				m := str(t)(a.Nonce(ctx, "s"))
				r := StateCheck{ReplayKey: c.ReplayKey, ReplayTTL: 2 * u, NonceRequired: true, NonceScope: "s", Nonce: m}
				if res, _ := a.Check(ctx, r); !res.Replayed {
					t.Fatal("expected replay")
				}
				r.ReplayKey = rk(freshJTI())
				if res, _ := other.Check(ctx, r); !res.NonceValid {
					t.Fatal("replayed proof spent the nonce")
				}
			}
		}
	})

	t.Run("State/NoNonceWork", func(t *testing.T) {
		a, _ := b.newPair(t, NonceOptions{TTL: 2 * u, SingleUse: true})
		res, err := a.Check(ctx, StateCheck{ReplayKey: rk(freshJTI()), ReplayTTL: u})
		if err != nil || res.Replayed || res.NextNonce != "" {
			t.Fatalf("%+v %v", res, err)
		}
	})

	t.Run("State/TwoNodesShareNonces", func(t *testing.T) {
		a, other := b.newPair(t, NonceOptions{TTL: 2 * u})
		n := str(t)(a.Nonce(ctx, "tenant/client"))
		res, err := other.Check(ctx, StateCheck{ReplayKey: rk(freshJTI()), ReplayTTL: u, NonceRequired: true, NonceScope: "tenant/client", Nonce: n})
		if err != nil || !res.NonceValid || res.NextNonce != n {
			t.Fatalf("%+v %v", res, err)
		}
	})
}

func expect(t *testing.T, want bool) func(bool, error) {
	t.Helper()
	return func(got bool, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func str(t *testing.T) func(string, error) string {
	return func(s string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

func TestMemoryStoresRefuseBeyondCapacity(t *testing.T) {
	clock := &fakeClock{t: testNow}
	c := NewMemoryReplayCache(MemoryOptions{MaxEntries: 32, Now: clock.Now})
	var full error
	for i := 0; i < 64 && full == nil; i++ {
		_, full = c.Remember(bg, rk(string(rune('a'+i))), time.Minute)
	}
	if full == nil {
		t.Fatal("cap not enforced")
	}
	if !errorsIs(full, ErrCapacity) {
		t.Fatalf("want ErrCapacity, got %v", full)
	}
	clock.Advance(61 * time.Second) // everything expired: room again
	if ok, err := c.Remember(bg, rk("late"), time.Minute); !ok || err != nil {
		t.Fatalf("after expiry: %v %v", ok, err)
	}

	n := NewMemoryNonceStore(MemoryOptions{MaxEntries: 2, Now: clock.Now, Nonce: NonceOptions{TTL: time.Minute}})
	_, _ = n.Issue(bg, "a")
	_, _ = n.Issue(bg, "b")
	if _, err := n.Issue(bg, "c"); !errorsIs(err, ErrCapacity) {
		t.Fatalf("scope cap: %v", err)
	}
	if _, err := n.Issue(bg, "a"); err != nil {
		t.Fatalf("existing scope refused: %v", err)
	}
}

// TestMemoryStateBoundedUnderSustainedLoad is the regression test for "a
// DPoP server that stores a new nonce per response lost half its
// throughput within 15 s of load": with single-use nonces and a replay entry
// per request, the stores hold about rate x TTL entries, not everything ever
// inserted.
func TestMemoryStateBoundedUnderSustainedLoad(t *testing.T) {
	clock := &fakeClock{t: testNow}
	s := NewMemoryState(MemoryOptions{Now: clock.Now, Nonce: NonceOptions{TTL: 2 * time.Second, SingleUse: true}})
	const perSecond = 10_000
	for i := 0; i < 30*perSecond; i++ {
		clock.Advance(time.Second / perSecond)
		if _, err := s.Check(bg, StateCheck{ReplayKey: seqKey(i), ReplayTTL: 3 * time.Second, NonceRequired: true, NonceScope: "s"}); err != nil {
			t.Fatal(err)
		}
	}
	replay := 0
	for i := range s.replay.shards {
		replay += len(s.replay.shards[i].set.m)
	}
	nonces := len(s.nonces.spent.m)
	if replay > 5*perSecond || nonces > 4*perSecond {
		t.Fatalf("stores grew: %d replay entries, %d nonces", replay, nonces)
	}
}

func seqKey(i int) ReplayKey {
	var k ReplayKey
	k[0], k[1], k[2], k[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
	return k
}
