package dpop

import (
	"fmt"
	"testing"
	"time"
)

// TestReplayCacheQuotaIsPerScope is the regression test for "one replay
// cache for everyone": a client that fills its quota is refused alone, and
// other clients' proofs are still recorded.
func TestReplayCacheQuotaIsPerScope(t *testing.T) {
	clock := &fakeClock{t: testNow}
	c := NewMemoryReplayCache(MemoryOptions{MaxEntries: 16 * 1024, MaxEntriesPerScope: 16 * 64, Now: clock.Now})
	var refused error
	var accepted int
	for i := 0; i < 16*1024 && refused == nil; i++ {
		var ok bool
		ok, refused = c.RememberScoped(bg, "tenant-a\x1fflooder", rk(fmt.Sprint("flood-", i)), time.Minute)
		if ok {
			accepted++
		}
	}
	if !errorsIs(refused, ErrCapacity) {
		t.Fatalf("flooding scope never refused: %v", refused)
	}
	if accepted > 16*64 {
		t.Fatalf("flooding scope held %d entries, quota %d", accepted, 16*64)
	}
	// Every other client still gets its proofs recorded, many times over.
	for i := 0; i < 200; i++ {
		ok, err := c.RememberScoped(bg, fmt.Sprintf("tenant-b\x1fclient-%d", i%10), rk(fmt.Sprint("ok-", i)), time.Minute)
		if !ok || err != nil {
			t.Fatalf("other scope refused after flood (entry %d): %v %v", i, ok, err)
		}
	}
	// A replay is still a replay for the flooder (not a capacity error).
	if ok, err := c.RememberScoped(bg, "tenant-a\x1fflooder", rk("flood-0"), time.Minute); ok || err != nil {
		t.Fatalf("replay of a recorded key: %v %v", ok, err)
	}
	// Once its entries expire the flooder is served again.
	clock.Advance(61 * time.Second)
	if ok, err := c.RememberScoped(bg, "tenant-a\x1fflooder", rk("after"), time.Minute); !ok || err != nil {
		t.Fatalf("after expiry: %v %v", ok, err)
	}
}

// TestReplayShardIsKeyed: keys sharing their first byte (which a client
// can grind for) spread over the shards, so one shard cannot be aimed at.
func TestReplayShardIsKeyed(t *testing.T) {
	c := NewMemoryReplayCache(MemoryOptions{MaxEntries: 16 * 1024})
	used := map[uint64]bool{}
	n := 0
	for i := 0; n < 256; i++ {
		k := rk(fmt.Sprint("grind-", i))
		if k[0] != 0x42 {
			continue
		}
		n++
		used[c.shardOf(k)] = true
	}
	if len(used) < replayShards/2 {
		t.Fatalf("256 keys with one first byte landed in %d of %d shards", len(used), replayShards)
	}
}

// TestSingleUseNonceQuotaIsPerScope: one scope cannot take every
// outstanding single-use nonce slot.
func TestSingleUseNonceQuotaIsPerScope(t *testing.T) {
	clock := &fakeClock{t: testNow}
	n := NewMemoryNonceStore(MemoryOptions{MaxEntries: 400, MaxEntriesPerScope: 50, Now: clock.Now,
		Nonce: NonceOptions{TTL: time.Minute, SingleUse: true}})
	var err error
	issued := 0
	for ; issued < 400; issued++ {
		if _, err = n.Issue(bg, "tenant-a\x1fflooder\x1f"); err != nil {
			break
		}
	}
	if !errorsIs(err, ErrCapacity) || issued != 50 {
		t.Fatalf("flooding scope issued %d nonces (quota 50), then %v", issued, err)
	}
	for i := 0; i < 100; i++ {
		if _, err := n.Issue(bg, fmt.Sprintf("tenant-b\x1fclient-%d\x1f", i%5)); err != nil {
			t.Fatalf("other scope refused after flood: %v", err)
		}
	}
}

// TestRFC9449_11_1_ReplayEntryOutlivesProofOnLaggingNode: with the default
// replayWindow of exactly proofLifetime + allowedClockSkew, a proof dated
// at the future edge and first used on one node is refused as a replay on a
// node whose clock lags by almost the skew, for as long as that node would
// accept the proof's iat.
func TestRFC9449_11_1_ReplayEntryOutlivesProofOnLaggingNode(t *testing.T) {
	clock := &fakeClock{t: testNow} // the true clock, also the store's
	state := NewMemoryState(MemoryOptions{Now: clock.Now})
	lead := testConfig()
	lead.Now = clock.Now
	lag := testConfig()
	lag.Now = func() time.Time { return clock.Now().Add(-29 * time.Second) }
	a, err := NewVerifier(lead, state)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewVerifier(lag, state)
	if err != nil {
		t.Fatal(err)
	}
	s := newSigner(t, "ES256")
	iat := testNow.Add(30 * time.Second)
	p := s.proof(t, func(h, c map[string]any) { c["iat"] = iat.Unix() })
	if _, err := a.Verify(bg, tokenRequest(p)); err != nil {
		t.Fatal(err)
	}
	// The lagging node accepts this iat until its clock passes iat +
	// lifetime, i.e. true time iat + 60 s + 29 s = testNow + 119 s.
	// Before true time +29 s it finds the proof dated too far ahead.
	clock.Advance(29 * time.Second)
	for at := 29 * time.Second; at <= 118*time.Second; at += 3 * time.Second {
		_, err := b.Verify(bg, tokenRequest(p))
		if e, ok := err.(*Error); !ok || e.Check != CheckReplay {
			t.Fatalf("at +%v the lagging node answered %v, want a replay", at, err)
		}
		clock.Advance(3 * time.Second)
	}
	clock.Advance(121*time.Second - clock.Now().Sub(testNow))
	wantCheck(t, mustErr(b.Verify(bg, tokenRequest(p))), CheckIATTooOld)
}

func mustErr(_ Result, err error) error { return err }
