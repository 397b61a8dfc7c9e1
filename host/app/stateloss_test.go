package app_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"stellaops.org/authority/internal/testenv"
)

// untilNot503 repeats do while it answers 503 (the first command on a
// reconnected Redis may fail), for at most 10 s; every 503 must carry
// Retry-After.
func untilNot503(t *testing.T, do func() response) response {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := do()
		if r.status != http.StatusServiceUnavailable {
			return r
		}
		if r.header.Get("Retry-After") == "" {
			t.Fatalf("503 without Retry-After: %v %s", r.header, r.raw)
		}
		if time.Now().After(deadline) {
			t.Fatalf("still 503 after 10 s: %s", r.raw)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRFC9449_11_1_ReplayAfterRedisRestartIsRefused: a DPoP client without
// required nonces uses a proof at /token and at /fresh-auth; Redis restarts
// empty; the replays within the proof lifetime issue nothing. They are not
// replays as far as the server can know (no replay audit record): the
// answers are use_dpop_nonce with a fresh nonce (RFC 9449 §8), logged and
// counted as state-lost, and a proof carrying that nonce succeeds.
func TestRFC9449_11_1_ReplayAfterRedisRestartIsRefused(t *testing.T) {
	rd := testenv.StartPrivateRedis(t)
	e := newEnv(t, envOptions{redis: rd.Addr, redisPfx: testenv.Prefix("lost")})
	k := newDPoPKey(t)
	tp := k.proof(t, proofOpts{htu: e.cfg.Issuer + "/token", iat: e.clock.Now()})
	r := e.dpopToken("dpop-plain", tp)
	if r.status != 200 {
		t.Fatalf("first use: %d %s", r.status, r.raw)
	}
	tok := r.str("access_token")
	fresh := func(proof string) response {
		return e.do("/fresh-auth", reqOpts{headers: map[string][]string{"Authorization": {"DPoP " + tok}, "DPoP": {proof}}})
	}
	fp := k.proof(t, proofOpts{htu: e.cfg.Issuer + "/fresh-auth", iat: e.clock.Now(), ath: ath(tok)})
	if r := fresh(fp); r.status != 200 {
		t.Fatalf("fresh-auth: %d %s", r.status, r.raw)
	}

	rd.Kill()
	rd.Start()

	r = untilNot503(t, func() response { return e.dpopToken("dpop-plain", tp) })
	if r.status != 400 || r.str("error") != "use_dpop_nonce" || r.header.Get("DPoP-Nonce") == "" {
		t.Fatalf("/token replay after the loss: want 400 use_dpop_nonce with a nonce, got %d %v %s", r.status, r.header, r.raw)
	}
	nonce := r.header.Get("DPoP-Nonce")
	r = untilNot503(t, func() response { return fresh(fp) })
	if r.status != 401 || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="use_dpop_nonce"`) || r.header.Get("DPoP-Nonce") == "" {
		t.Fatalf("/fresh-auth replay after the loss: %d %v %s", r.status, r.header, r.raw)
	}
	logs := e.logs.String()
	if strings.Contains(logs, `"event_type":"authority.dpop.proof.replay"`) {
		t.Fatal("a proof the server cannot know to be a replay was audited as one")
	}
	if !strings.Contains(logs, `"reason":"dpop-state-lost"`) || !strings.Contains(logs, `"authority.dpop.state.lost"`) {
		t.Fatal("state-lost is not logged")
	}
	if m := e.metrics(); !strings.Contains(m, `authority_degraded_refusals_total{reason="state-lost"} 2`) {
		t.Fatalf("state-lost not counted:\n%s", grepLines(m, "authority_degraded_refusals"))
	}
	// The nonce proves the next proof fresh.
	r = e.dpopToken("dpop-plain", k.proof(t, proofOpts{htu: e.cfg.Issuer + "/token", iat: e.clock.Now(), nonce: nonce}))
	if r.status != 200 {
		t.Fatalf("proof with the post-loss nonce: %d %s", r.status, r.raw)
	}
}

// TestRedisKilledAndRestartedUnderLoad: with Redis killed and restarted
// while DPoP clients keep asking, every answer is a 200, a 503 with
// Retry-After, or a 400 use_dpop_nonce that carries a nonce; while Redis is
// down a client that must send a nonce and sent no proof gets a 503 (a 400
// without the nonce would leave it stuck); after the restart tokens are
// issued again without intervention.
func TestRedisKilledAndRestartedUnderLoad(t *testing.T) {
	rd := testenv.StartPrivateRedis(t)
	e := newEnv(t, envOptions{redis: rd.Addr, redisPfx: testenv.Prefix("restart")})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fk := newDPoPKey(t)
	ft := e.dpopToken("dpop-plain", fk.proof(t, proofOpts{htu: e.cfg.Issuer + "/token", iat: e.clock.Now()}))
	if ft.status != 200 {
		t.Fatalf("token before the outage: %d %s", ft.status, ft.raw)
	}
	ftok := ft.str("access_token")

	var mu sync.Mutex
	counts := map[string]int{}
	var restarted time.Time
	var okAfterRestart int
	var bad []string
	check := func(who string, r response) (nonce string) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.status == 200:
			counts["200"]++
			if !restarted.IsZero() {
				okAfterRestart++
			}
		case r.status == 503 && r.header.Get("Retry-After") != "" && r.str("error") == "temporarily_unavailable":
			counts["503"]++
		case r.status == 400 && r.str("error") == "use_dpop_nonce" && r.header.Get("DPoP-Nonce") != "":
			counts["use_dpop_nonce"]++
		default:
			if len(bad) < 5 {
				bad = append(bad, who+": "+r.raw+" "+strings.Join(r.header.Values("DPoP-Nonce"), ","))
			}
			counts["bad"]++
		}
		return r.header.Get("DPoP-Nonce")
	}
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			k := newDPoPKey(t)
			client, nonce := "dpop-plain", ""
			if w%2 == 1 {
				client = "demo-dpop" // nonce required
			}
			for ctx.Err() == nil {
				var r response
				if w == 3 && nonce == "" {
					r = e.token(client, nil) // no proof at all
				} else {
					r = e.dpopToken(client, k.proof(t, proofOpts{htu: e.cfg.Issuer + "/token", iat: e.clock.Now(), nonce: nonce}))
				}
				if n := check(client, r); n != "" {
					nonce = n
				} else if r.status != 200 {
					nonce = ""
				}
				time.Sleep(5 * time.Millisecond)
			}
		}(w)
	}
	time.Sleep(700 * time.Millisecond)
	rd.Kill()
	// Down: a client that must send a nonce and sent no proof.
	if r := e.token("demo-dpop", nil); r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Errorf("Redis down, no proof, nonce required: want 503 with Retry-After, got %d %v %s", r.status, r.header, r.raw)
	}
	// Down: a refused proof at /fresh-auth, whose answer would carry a
	// nonce, is a 503 there too (not a 401 without its nonce).
	wrongHTU := fk.proof(t, proofOpts{htu: e.cfg.Issuer + "/elsewhere", iat: e.clock.Now(), ath: ath(ftok)})
	if r := e.do("/fresh-auth", reqOpts{headers: map[string][]string{"Authorization": {"DPoP " + ftok}, "DPoP": {wrongHTU}}}); r.status != 503 || r.header.Get("Retry-After") == "" {
		t.Errorf("Redis down, refused proof at /fresh-auth: want 503 with Retry-After, got %d %v %s", r.status, r.header, r.raw)
	}
	time.Sleep(700 * time.Millisecond)
	rd.Start()
	mu.Lock()
	restarted = time.Now()
	mu.Unlock()
	deadline := time.Now().Add(15 * time.Second)
	for {
		mu.Lock()
		n := okAfterRestart
		mu.Unlock()
		if n >= 20 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	t.Logf("answers: %v; 200s after the restart: %d", counts, okAfterRestart)
	if counts["bad"] > 0 {
		t.Fatalf("%d answers outside 200 / 503+Retry-After / use_dpop_nonce+nonce, e.g. %v", counts["bad"], bad)
	}
	if okAfterRestart < 20 {
		t.Fatalf("no recovery: %d tokens in 15 s after Redis came back", okAfterRestart)
	}
	if counts["503"] == 0 {
		t.Fatal("no 503 while Redis was down: the test did not exercise the outage")
	}
}

// TestUnsafeRedisSettingsAreLoggedAtStart: an evicting maxmemory-policy and
// snapshot persistence can each drop replay entries while the epoch key
// survives; the host names each at start. A Redis without persistence and
// with noeviction gets no warning.
func TestUnsafeRedisSettingsAreLoggedAtStart(t *testing.T) {
	unsafe := testenv.StartPrivateRedis(t, "--maxmemory-policy", "allkeys-lru", "--save", "3600 1")
	e := newEnv(t, envOptions{redis: unsafe.Addr, redisPfx: testenv.Prefix("unsafe")})
	logs := e.logs.String()
	for _, want := range []string{`"setting":"maxmemory-policy","value":"allkeys-lru"`, `"setting":"save","value":"3600 1"`} {
		if !strings.Contains(logs, `"msg":"authority.dpop.state.unsafe"`) || !strings.Contains(logs, want) {
			t.Errorf("not logged at start: %s", want)
		}
	}
	safe := testenv.StartPrivateRedis(t)
	e = newEnv(t, envOptions{redis: safe.Addr, redisPfx: testenv.Prefix("safe")})
	if strings.Contains(e.logs.String(), "authority.dpop.state.unsafe") {
		t.Error("a Redis without persistence and with noeviction was reported unsafe")
	}
}

// TestRFC9449_11_1_ReplayAfterRedisSnapshotRestoreIsRefused: Redis saves a
// snapshot, a proof is used, Redis is killed and restarts from the
// snapshot (the epoch key is back, the proof's replay entry is not). The
// node has seen a newer state, so the replay issues no token: it is asked
// for a fresh nonce, and a proof with that nonce succeeds.
func TestRFC9449_11_1_ReplayAfterRedisSnapshotRestoreIsRefused(t *testing.T) {
	rd := testenv.StartPrivateRedis(t)
	e := newEnv(t, envOptions{redis: rd.Addr, redisPfx: testenv.Prefix("snapshot")})
	k := newDPoPKey(t)
	htu := e.cfg.Issuer + "/token"
	if r := e.dpopToken("dpop-plain", k.proof(t, proofOpts{htu: htu, iat: e.clock.Now()})); r.status != 200 {
		t.Fatalf("before the snapshot: %d %s", r.status, r.raw)
	}
	rc := redis.NewClient(&redis.Options{Addr: rd.Addr})
	defer rc.Close()
	if err := rc.Save(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond) // the state's watermark moves past the snapshot
	p := k.proof(t, proofOpts{htu: htu, iat: e.clock.Now()})
	if r := e.dpopToken("dpop-plain", p); r.status != 200 {
		t.Fatalf("first use: %d %s", r.status, r.raw)
	}
	rd.Kill()
	rd.Start() // loads the snapshot
	r := untilNot503(t, func() response { return e.dpopToken("dpop-plain", p) })
	if r.status != 400 || r.str("error") != "use_dpop_nonce" || r.header.Get("DPoP-Nonce") == "" {
		t.Fatalf("replay after the restore: want 400 use_dpop_nonce with a nonce, got %d %v %s", r.status, r.header, r.raw)
	}
	r = e.dpopToken("dpop-plain", k.proof(t, proofOpts{htu: htu, iat: e.clock.Now(), nonce: r.header.Get("DPoP-Nonce")}))
	if r.status != 200 {
		t.Fatalf("proof with the post-restore nonce: %d %s", r.status, r.raw)
	}
}
