package dpop

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"stellaops.org/authority/internal/redisslot"
	"stellaops.org/authority/internal/testenv"
)

// On a Redis Cluster the state's keys spread over the primaries by proof
// key, every call stays in one slot (no CROSSSLOT), a replay is caught
// whichever client and node present it, and the nonce dance works across
// nodes.
func TestRedisClusterShardsByProofKey(t *testing.T) {
	cl := testenv.StartRedisCluster(t, 3)
	ctx := context.Background()
	opts := NonceOptions{TTL: time.Minute}
	a, b := NewRedisState(cl.Client(t), "authority:dpop:", opts), NewRedisState(cl.Client(t), "authority:dpop:", opts)
	if a.Shards() != ClusterShards {
		t.Fatalf("%d shards on a cluster client", a.Shards())
	}
	if spread, err := a.Layout(); err != nil || spread < ClusterShards/2 {
		t.Fatalf("layout: %d slots, %v", spread, err)
	}
	slots := map[int]bool{}
	for i := range 300 {
		jkt := fmt.Sprintf("jkt-%d", i)
		st := []*RedisState{a, b}[i%2]
		res, err := st.Check(ctx, StateCheck{ReplayKey: NewReplayKey(jkt, "https://as/token", "j1"), ReplayTTL: time.Minute,
			Route: jkt, NonceRequired: true, NonceScope: "t\x1fc" + fmt.Sprint(i%7)})
		if err != nil || res.Replayed || res.NextNonce == "" {
			t.Fatalf("check %d: %+v %v", i, res, err)
		}
		slots[redisslot.Slot(a.prefixes[a.shard(jkt)])] = true
	}
	// Every primary holds some of the state.
	if holding := cl.PrimariesHolding(t); holding != 3 || len(slots) < 100 {
		t.Fatalf("300 proof keys: %d slots, %d of 3 primaries holding state", len(slots), holding)
	}

	// The nonce dance: the nonce minted with a proof's answer is valid for
	// the next proof of that key, at the other node.
	jkt := "client-key"
	first, err := a.Check(ctx, StateCheck{ReplayKey: NewReplayKey(jkt, "https://as/token", "p1"), ReplayTTL: time.Minute,
		Route: jkt, NonceRequired: true, NonceScope: "t\x1fc"})
	if err != nil || first.NextNonce == "" {
		t.Fatalf("%+v %v", first, err)
	}
	proof := StateCheck{ReplayKey: NewReplayKey(jkt, "https://as/token", "p2"), ReplayTTL: time.Minute,
		Route: jkt, NonceRequired: true, NonceScope: "t\x1fc", Nonce: first.NextNonce}
	if res, err := b.Check(ctx, proof); err != nil || !res.NonceValid || res.Replayed {
		t.Fatalf("nonce at the other node: %+v %v", res, err)
	}
	// The same proof again, under another client and scope, at either
	// node: a replay (the proof key routes it to the shard that has it).
	proof.NonceScope, proof.ReplayScope = "t\x1fmallory", "t\x1fmallory"
	for _, st := range []*RedisState{a, b} {
		if res, err := st.Check(ctx, proof); err != nil || !res.Replayed {
			t.Fatalf("replay under another client: %+v %v", res, err)
		}
	}
}

// Probe runs the state script once per slot range: three on a
// three-primary cluster, and a killed primary fails its own probe only.
func TestRedisClusterProbe(t *testing.T) {
	cl := testenv.StartRedisCluster(t, 3)
	ctx := context.Background()
	st := NewRedisState(cl.Client(t), "authority:dpop:", NonceOptions{})
	if n, errs := st.Probe(ctx); n != 3 || len(errs) != 0 {
		t.Fatalf("probe: %d probes, %v", n, errs)
	}
	cl.Nodes[1].Kill()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if n, errs := st.Probe(pctx); n != 3 || len(errs) != 1 {
		t.Fatalf("probe with a primary down: %d probes, %v", n, errs)
	}
	single := NewRedisState(redisClient(t), uniquePrefix(t, redisClient(t)), NonceOptions{})
	if n, errs := single.Probe(ctx); n != 1 || len(errs) != 0 {
		t.Fatalf("single server: %d probes, %v", n, errs)
	}
}

// A prefix whose braces break the shard tags is found before serving; a
// prefix with a hash tag of its own is served, on one slot.
func TestRedisClusterLayout(t *testing.T) {
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{"127.0.0.1:1"}})
	defer cc.Close()
	if _, err := NewRedisState(cc, "{}authority:", NonceOptions{}).Layout(); err == nil {
		t.Fatal(`"{}authority:" accepted: its keys would span slots`)
	}
	if spread, err := NewRedisState(cc, "{authority}:", NonceOptions{}).Layout(); err != nil || spread != 1 {
		t.Fatalf(`"{authority}:": %d slots, %v`, spread, err)
	}
	if spread, err := NewRedisState(redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}), "authority:", NonceOptions{}).Layout(); err != nil || spread != 1 {
		t.Fatalf("single server: %d, %v", spread, err)
	}
}
