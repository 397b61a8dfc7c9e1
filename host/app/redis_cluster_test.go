package app_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"stellaops.org/authority/host/app"
	"stellaops.org/authority/host/config"
	"stellaops.org/authority/internal/testenv"
)

// Two Authority nodes on a three-primary Redis Cluster behave as one: a
// nonce minted at A is accepted at B, a used proof is a replay,
// many clients' state spreads over every primary, and /readyz runs the
// state script on each slot range.
func TestRedisClusterTwoNodes(t *testing.T) {
	cl := testenv.StartRedisCluster(t, 3)
	prefix := testenv.Prefix("cluster")
	keyDir := t.TempDir()
	a := newEnv(t, envOptions{redis: cl.Addrs(), redisPfx: prefix, keyDir: keyDir})
	b := newEnv(t, envOptions{redis: cl.Addrs(), redisPfx: prefix, keyDir: keyDir})
	for i := range 30 {
		k := newDPoPKey(t)
		e, other := []*env{a, b}[i%2], []*env{b, a}[i%2]
		r := e.dpopToken("demo-dpop", k.proof(t, proofOpts{htu: e.cfg.Issuer + "/token", iat: e.clock.Now()}))
		nonce := r.header.Get("DPoP-Nonce")
		if r.status != 400 || nonce == "" {
			t.Fatalf("client %d challenge: %d %s", i, r.status, r.raw)
		}
		proof := k.proof(t, proofOpts{htu: other.cfg.Issuer + "/token", iat: other.clock.Now(), nonce: nonce})
		if r := other.dpopToken("demo-dpop", proof); r.status != 200 {
			t.Fatalf("client %d: the other node must accept the nonce: %d %s", i, r.status, r.raw)
		}
		// The nodes have their own issuer URLs in this test, and the proof
		// names the other's: replayed there, through the shared state.
		if r := other.dpopToken("demo-dpop", proof); r.status != 401 || r.str("error") != "invalid_dpop_proof" {
			t.Fatalf("client %d: replay: %d %s", i, r.status, r.raw)
		}
	}
	if holding := cl.PrimariesHolding(t); holding != 3 {
		t.Fatalf("30 clients' DPoP state held by %d of 3 primaries", holding)
	}
	if r := a.do("/readyz", reqOpts{method: http.MethodGet}); r.status != 200 || strings.Contains(r.raw, "redis") && strings.Contains(r.raw, "failed") {
		t.Fatalf("readyz: %d %s", r.status, r.raw)
	}
}

// A single address of a cluster node is found to be a cluster and served
// as one; several addresses that are not a cluster, and a key prefix whose
// braces would split one script's keys over slots, are refused at start
// naming their key.
func TestRedisClusterConfigurationAtStart(t *testing.T) {
	cl := testenv.StartRedisCluster(t, 3)
	e := newEnv(t, envOptions{redis: cl.Nodes[0].Addr, redisPfx: testenv.Prefix("seed"), redisCold: true})
	if !strings.Contains(e.logs.String(), `"msg":"authority.redis.cluster"`) {
		t.Fatal("one node's address was not served as a cluster")
	}
	e.boundToken(newDPoPKey(t))

	build := func(addr, prefix string) error {
		doc := strings.NewReplacer("KEYDIR", t.TempDir(), "CADIR", t.TempDir()).Replace(testConfig)
		for _, s := range []string{"SECRET1", "SECRET2", "SECRET3", "SECRET4", "SECRET5"} {
			doc = strings.ReplaceAll(doc, s, config.DigestSecret("a-secret-of-16-chars-or-more"))
		}
		cfg, err := config.Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		cfg.Tenants = cfg.Tenants[:1] // no mTLS trust roots needed
		cfg.Security.SenderConstraints.DPoP.Nonce.Store = "redis"
		cfg.Storage.Redis.Addr, cfg.Storage.Redis.KeyPrefix = addr, prefix
		cfg.TLS.DevPKI = t.TempDir()
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		a, err := app.Build(context.Background(), cfg, app.NewLogger(&testenv.SyncBuffer{}, "info"), app.Options{})
		if err == nil {
			a.Close()
		}
		return err
	}
	one, two := testenv.StartPrivateRedis(t), testenv.StartPrivateRedis(t)
	if err := build(one.Addr+","+two.Addr, "authority:"); err == nil || !strings.Contains(err.Error(), "storage.redis.addr") {
		t.Fatalf("two single servers as a cluster: %v", err)
	}
	if err := build(cl.Addrs(), "{}authority:"); err == nil || !strings.Contains(err.Error(), "storage.redis.keyPrefix") {
		t.Fatalf("a prefix that splits the slots: %v", err)
	}
	if err := build(cl.Addrs(), "authority:"); err != nil {
		t.Fatalf("a good cluster configuration: %v", err)
	}
}

// A primary killed mid-load: two nodes keep answering, 200 for the slots
// still served and 503 for the dead primary's, never anything else; a
// proof that got a token before or after the kill is refused when replayed
// (401) or unservable (503), never a second token; /readyz says degraded,
// not unready, while two of three primaries serve.
func TestRedisClusterPrimaryKilledMidLoad(t *testing.T) {
	cl := testenv.StartRedisCluster(t, 3)
	prefix := testenv.Prefix("cluster-kill")
	keyDir := t.TempDir()
	nodes := []*env{newEnv(t, envOptions{redis: cl.Addrs(), redisPfx: prefix, keyDir: keyDir}),
		newEnv(t, envOptions{redis: cl.Addrs(), redisPfx: prefix, keyDir: keyDir})}
	const workers, rounds = 6, 12
	var mu sync.Mutex
	statuses := map[int]int{}
	var used []struct {
		e     *env
		proof string
	}
	// Every worker runs a third of its rounds, the primary is killed, and
	// every worker runs the rest: load before and after the kill whatever
	// the scheduling (two thirds of the rounds, about 48 requests, are
	// after it, a third of them on the dead primary's shards).
	var wg, before sync.WaitGroup
	before.Add(workers)
	killed := make(chan struct{})
	go func() {
		before.Wait()
		cl.Nodes[2].Kill()
		close(killed)
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				if i == rounds/3 {
					before.Done()
					<-killed
				}
				e := nodes[(w+i)%2]
				k := newDPoPKey(t)
				htu := e.cfg.Issuer + "/token"
				r := e.dpopToken("demo-dpop", k.proof(t, proofOpts{htu: htu, iat: e.clock.Now()}))
				if r.status == 400 && r.header.Get("DPoP-Nonce") != "" {
					proof := k.proof(t, proofOpts{htu: htu, iat: e.clock.Now(), nonce: r.header.Get("DPoP-Nonce")})
					r = e.dpopToken("demo-dpop", proof)
					if r.status == 200 {
						mu.Lock()
						used = append(used, struct {
							e     *env
							proof string
						}{e, proof})
						mu.Unlock()
					}
				}
				mu.Lock()
				statuses[r.status]++
				mu.Unlock()
				if r.status != 200 && r.status != 503 {
					t.Errorf("status %d: %s", r.status, r.raw)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("answers %v, %d tokens", statuses, len(used))
	if statuses[200] == 0 || statuses[503] == 0 {
		t.Fatalf("answers %v: want tokens from the live primaries and 503s from the dead one's slots", statuses)
	}
	for _, u := range used {
		if r := u.e.dpopToken("demo-dpop", u.proof); r.status != 401 && r.status != 503 {
			t.Fatalf("a used proof replayed after the kill: %d %s", r.status, r.raw)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := nodes[0].do("/readyz", reqOpts{method: http.MethodGet})
		if r.status == 200 && strings.Contains(r.raw, "1 of 3 Redis Cluster slot ranges failed") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz with one primary down: %d %s", r.status, r.raw)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func newNodeClient(addr string) *redis.Client { return redis.NewClient(&redis.Options{Addr: addr}) }

// BenchmarkDPoPTokenRedis is DPoP-bound token throughput (nonce required,
// 64 client keys, 16 requests in flight, proofs made before the timer)
// with the DPoP state on one Redis and on a three-primary Redis Cluster of
// the benchmark's own, on the same two cores. Per token: redis-calls, the
// commands clients sent (EVALSHA, EVAL, anything else), and redis-cmds,
// every command the servers ran, those inside the state script included
// (INFO commandstats over the run):
//
//	go test ./host/app -run '^$' -bench DPoPTokenRedis -benchtime 3s -count 3
func BenchmarkDPoPTokenRedis(b *testing.B) {
	cluster := testenv.StartRedisCluster(b, 3)
	for _, kind := range []string{"single", "cluster3"} {
		b.Run(kind, func(b *testing.B) {
			addrs := []string{testenv.RedisAddr(b)}
			if kind == "cluster3" {
				addrs = strings.Split(cluster.Addrs(), ",")
			}
			e := newEnv(b, envOptions{quiet: true, redis: strings.Join(addrs, ","), redisPfx: testenv.Prefix("bench-" + kind)})
			h := e.a.Server.Handler()
			htu := e.cfg.Issuer + "/token"
			const clients = 64
			keys := make([]*dpopKey, clients)
			nonces := make([]string, clients)
			for i := range keys {
				keys[i] = newDPoPKey(b)
				w := httptest.NewRecorder()
				h.ServeHTTP(w, tokenRequest("demo-dpop", keys[i].proof(b, proofOpts{htu: htu, iat: e.clock.Now()})))
				if nonces[i] = w.Header().Get("DPoP-Nonce"); nonces[i] == "" {
					b.Fatalf("no nonce: %d %s", w.Code, w.Body.String())
				}
			}
			proofs := make(chan string, b.N)
			for i := 0; i < b.N; i++ {
				proofs <- keys[i%clients].proof(b, proofOpts{htu: htu, iat: e.clock.Now(), nonce: nonces[i%clients]})
			}
			close(proofs)
			// commandstats lines: cmdstat_evalsha:calls=12,usec=...
			ops := func() (calls, cmds int64) {
				for _, a := range addrs {
					c := newNodeClient(a)
					info, _ := c.Info(context.Background(), "commandstats").Result()
					c.Close()
					for _, l := range strings.Split(info, "\n") {
						name, rest, ok := strings.Cut(strings.TrimSpace(l), ":calls=")
						if !ok {
							continue
						}
						v, _, _ := strings.Cut(rest, ",")
						n, _ := strconv.ParseInt(v, 10, 64)
						cmds += n
						if name == "cmdstat_evalsha" || name == "cmdstat_eval" {
							calls += n
						}
					}
				}
				return calls, cmds
			}
			calls0, cmds0 := ops()
			b.SetParallelism(8)
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					w := httptest.NewRecorder()
					h.ServeHTTP(w, tokenRequest("demo-dpop", <-proofs))
					if w.Code != 200 {
						b.Errorf("status %d: %s", w.Code, w.Body.String())
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "tokens/s")
			b.StopTimer()
			calls1, cmds1 := ops()
			// Script calls are counted twice in cmds (as EVALSHA and as
			// the commands they run): once as a call, once per inner command.
			b.ReportMetric(float64(calls1-calls0)/float64(b.N), "redis-calls/token")
			b.ReportMetric(float64((cmds1-cmds0)-(calls1-calls0))/float64(b.N), "redis-cmds/token")
		})
	}
}
