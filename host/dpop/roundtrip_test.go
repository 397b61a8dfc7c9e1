package dpop

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"
)

// countingHook counts the commands a client sends to Redis.
type countingHook struct{ n atomic.Int64 }

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// The replay check, the nonce check and the next nonce cost one Redis
// round trip per verified proof, whether the nonce is required or only
// issued.
func TestRedisStateOneRoundTripPerProof(t *testing.T) {
	c := redisClient(t)
	hook := &countingHook{}
	c.AddHook(hook)
	cfg := testConfig("ES256")
	v, err := NewVerifier(cfg, NewRedisState(c, uniquePrefix(t, c), NonceOptions{}))
	if err != nil {
		t.Fatal(err)
	}
	s := newSigner(t, "ES256")
	ctx := context.Background()
	nonce, err := v.Nonce(ctx, testScope)
	if err != nil {
		t.Fatal(err)
	}
	// Warm the script cache so EVALSHA does not fall back to EVAL.
	if _, err := v.Verify(ctx, tokenRequest(s.proof(t, func(h, c map[string]any) { c["nonce"] = nonce }))); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name            string
		required, issue bool
	}{{"nonce required", true, false}, {"nonce issued only", false, true}, {"no nonce", false, false}} {
		req := tokenRequest(s.proof(t, func(h, c map[string]any) { c["nonce"] = nonce }))
		req.NonceRequired, req.IssueNonce = tc.required, tc.issue
		before := hook.n.Load()
		res, err := v.Verify(ctx, req)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := hook.n.Load() - before; got != 1 {
			t.Fatalf("%s: %d Redis round trips, want 1", tc.name, got)
		}
		if (tc.required || tc.issue) && res.NextNonce == "" {
			t.Fatalf("%s: no next nonce", tc.name)
		}
	}
}
