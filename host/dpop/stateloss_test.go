package dpop

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// redisVerifier is a Verifier on a RedisState under a fresh prefix, on the
// real clock (Redis's clock is the real one). A non-empty epoch is written
// first ("0": no loss known).
func redisVerifier(t *testing.T, opts NonceOptions, epoch string) (*RedisState, *Verifier) {
	t.Helper()
	c := redisClient(t)
	st := NewRedisState(c, uniquePrefix(t, c), opts)
	if epoch != "" {
		if err := c.Set(context.Background(), st.prefix+"e", epoch, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig("ES256")
	cfg.Now = time.Now
	v, err := NewVerifier(cfg, st)
	if err != nil {
		t.Fatal(err)
	}
	return st, v
}

// flushPrefix deletes every key under the state's prefix: what a Redis
// restart without persistence (or FLUSHALL) does to this state, on the
// shared server.
func flushPrefix(t *testing.T, st *RedisState) {
	t.Helper()
	if err := deletePrefix(st.client, st.prefix); err != nil {
		t.Fatal(err)
	}
}

// TestRFC9449_11_1_ReplayRefusedAfterStateLoss: a proof used, then the
// Redis state flushed, then the proof replayed within its lifetime: the
// replay is not accepted. It is not reported as a replay either (the store
// cannot know): the answer is use_dpop_nonce with a fresh nonce (RFC 9449
// §8), and a proof carrying that nonce is accepted once.
func TestRFC9449_11_1_ReplayRefusedAfterStateLoss(t *testing.T) {
	for _, single := range []bool{false, true} {
		name := map[bool]string{false: "rotating", true: "singleUse"}[single]
		t.Run(name, func(t *testing.T) {
			st, v := redisVerifier(t, NonceOptions{TTL: time.Minute, SingleUse: single}, "0")
			ctx := context.Background()
			s := newSigner(t, "ES256")
			now := func(h, c map[string]any) { c["iat"] = time.Now().Unix() }
			p := s.proof(t, now)
			if _, err := v.Verify(ctx, tokenRequest(p)); err != nil {
				t.Fatalf("first use: %v", err)
			}
			wantCheck(t, mustErr(v.Verify(ctx, tokenRequest(p))), CheckReplay)

			flushPrefix(t, st)

			e := wantCheck(t, mustErr(v.Verify(ctx, tokenRequest(p))), CheckStateLost)
			if e.Code != CodeUseNonce || e.Replay || e.NextNonce == "" {
				t.Fatalf("after the loss: want use_dpop_nonce with a nonce and no replay flag, got %+v", e)
			}
			// Asked again: still refused (nothing was recorded, the proof
			// is still dated before the loss).
			wantCheck(t, mustErr(v.Verify(ctx, tokenRequest(p))), CheckStateLost)

			// A proof with the nonce is fresh: accepted, then a replay.
			withNonce := s.proof(t, func(h, c map[string]any) { now(h, c); c["nonce"] = e.NextNonce })
			if _, err := v.Verify(ctx, tokenRequest(withNonce)); err != nil {
				t.Fatalf("proof with the post-loss nonce: %v", err)
			}
			wantCheck(t, mustErr(v.Verify(ctx, tokenRequest(withNonce))), CheckReplay)

			// A nonce from before the loss proves nothing.
			old := s.proof(t, func(h, c map[string]any) { now(h, c); c["nonce"] = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" })
			wantCheck(t, mustErr(v.Verify(ctx, tokenRequest(old))), CheckStateLost)
		})
	}
}

// TestStateLossMarginCoversFastClientClocks: the epoch refuses proofs dated
// up to 2 x allowedClockSkew + 5 s after it, since a client whose clock runs
// ahead by the skew could have used such a proof just before the loss (and
// the node that judged it may drift from Redis); proofs dated later are
// accepted without a nonce.
func TestStateLossMarginCoversFastClientClocks(t *testing.T) {
	epoch := time.Now().Add(-70 * time.Second)
	_, v := redisVerifier(t, NonceOptions{}, fmt.Sprint(epoch.UnixMilli())) // testConfig: skew 30 s
	ctx := context.Background()
	s := newSigner(t, "ES256")
	at := func(d time.Duration) string {
		return s.proof(t, func(h, c map[string]any) { c["iat"] = epoch.Add(d).Unix() })
	}
	wantCheck(t, mustErr(v.Verify(ctx, tokenRequest(at(64*time.Second)))), CheckStateLost)
	wantCheck(t, mustErr(v.Verify(ctx, tokenRequest(at(66*time.Second)))), "")
}

// TestMissingEpochIsALoss: an empty state (first start, restart without
// persistence, an evicted epoch key) cannot be told from a lost one, so its
// first proofs are asked for a nonce; the epoch key is then written.
func TestMissingEpochIsALoss(t *testing.T) {
	st, v := redisVerifier(t, NonceOptions{}, "")
	c, ctx := st.client, context.Background()
	s := newSigner(t, "ES256")
	p := s.proof(t, func(h, c map[string]any) { c["iat"] = time.Now().Unix() })
	wantCheck(t, mustErr(v.Verify(ctx, tokenRequest(p))), CheckStateLost)
	ep, err := c.Get(ctx, st.prefix+"e").Int64()
	if err != nil || time.Since(time.UnixMilli(ep)).Abs() > 10*time.Second {
		t.Fatalf("epoch key: %d %v", ep, err)
	}
	if ttl := c.TTL(ctx, st.prefix+"e").Val(); ttl != -1 {
		t.Fatalf("the epoch key must not expire, TTL %v", ttl)
	}
}

// snapshot copies every key under the state's prefix (value and TTL), and
// restore puts exactly that copy back: a restart from an RDB snapshot, or a
// failover to a replica that lags behind.
func snapshot(t *testing.T, st *RedisState) map[string][2]string {
	t.Helper()
	ctx := context.Background()
	out := map[string][2]string{}
	iter := st.client.Scan(ctx, 0, st.prefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		d, err := st.client.Dump(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		ttl := st.client.PTTL(ctx, k).Val()
		out[k] = [2]string{d, ttl.String()}
	}
	return out
}

func restore(t *testing.T, st *RedisState, snap map[string][2]string) {
	t.Helper()
	flushPrefix(t, st)
	ctx := context.Background()
	for k, v := range snap {
		ttl, _ := time.ParseDuration(v[1])
		if ttl < 0 {
			ttl = 0
		}
		if err := st.client.Restore(ctx, k, ttl, v[0]).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRFC9449_11_1_ReplayRefusedAfterStateRollback: the state goes back to
// a snapshot taken before a proof was used (the epoch key survives, the
// replay entry does not). The node that used the proof has seen a newer
// watermark, so the replay is answered as a state loss, and a nonce from
// the snapshot does not vouch for a proof; a nonce minted after the
// rollback does.
func TestRFC9449_11_1_ReplayRefusedAfterStateRollback(t *testing.T) {
	for _, single := range []bool{false, true} {
		t.Run(map[bool]string{false: "rotating", true: "singleUse"}[single], func(t *testing.T) {
			st, v := redisVerifier(t, NonceOptions{TTL: time.Minute, SingleUse: single}, "0")
			ctx := context.Background()
			s := newSigner(t, "ES256")
			now := func(h, c map[string]any) { c["iat"] = time.Now().Unix() }
			if _, err := v.Verify(ctx, tokenRequest(s.proof(t, now))); err != nil {
				t.Fatal(err)
			}
			oldNonce, err := v.Nonce(ctx, testScope)
			if err != nil {
				t.Fatal(err)
			}
			snap := snapshot(t, st)
			time.Sleep(5 * time.Millisecond) // the watermark moves on
			p := s.proof(t, now)
			if _, err := v.Verify(ctx, tokenRequest(p)); err != nil {
				t.Fatalf("first use: %v", err)
			}

			restore(t, st, snap)

			e := wantCheck(t, mustErr(v.Verify(ctx, tokenRequest(p))), CheckStateLost)
			if e.Replay || e.NextNonce == "" || e.NextNonce == oldNonce {
				t.Fatalf("after the rollback: %+v (old nonce %s)", e, oldNonce)
			}
			withOld := s.proof(t, func(h, c map[string]any) { now(h, c); c["nonce"] = oldNonce })
			wantCheck(t, mustErr(v.Verify(ctx, tokenRequest(withOld))), CheckStateLost)
			e = wantCheck(t, mustErr(v.Verify(ctx, tokenRequest(p))), CheckStateLost)
			withNew := s.proof(t, func(h, c map[string]any) { now(h, c); c["nonce"] = e.NextNonce })
			if _, err := v.Verify(ctx, tokenRequest(withNew)); err != nil {
				t.Fatalf("proof with a post-rollback nonce: %v", err)
			}
		})
	}
}
