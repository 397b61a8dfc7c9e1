package audit_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"stellaops.org/authority/host/audit"
	"stellaops.org/authority/host/audit/audittest"
)

func verifyWith(t *testing.T, s audit.Scanner, key ed25519.PrivateKey, o audit.VerifyOptions) audit.Report {
	t.Helper()
	o.Keys = []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}
	rep, err := audit.Verify(context.Background(), s, o)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func firstKind(rep audit.Report) string {
	if rep.OK() {
		return ""
	}
	return rep.Problems[0].Kind
}

// A plugin cannot have the host seal a record of the trail's own types
// (a checkpoint it could then purge the chain up to): the record is
// dropped and counted, the chain stays the host's.
func TestPluginCannotForgeACheckpoint(t *testing.T) {
	st := audit.NewMemoryStore()
	key := audittest.Key(t)
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	ctx := context.Background()
	w, err := audit.NewWriter(ctx, audit.WriterOptions{Node: "n", Store: st, Signer: audit.NewSigner(key), Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	forged := audit.Event{Source: "plugin:evil", Type: audit.EventCheckpoint, Time: time.Unix(0, 0), Tenant: "t"}
	if err := w.RecordDurable(ctx, forged); err == nil {
		t.Fatal("a plugin's checkpoint was made durable")
	}
	w.Record(ctx, audittest.Events("t", 1, at)[0])
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if w.Dropped() != 1 {
		t.Fatalf("dropped %d", w.Dropped())
	}
	for _, l := range st.Lines() {
		if bytes.Contains(l, []byte("plugin:evil")) {
			t.Fatalf("the forged record was written: %s", l)
		}
	}
	if n, _ := st.Purge(ctx, at.Add(-time.Hour)); n != 0 {
		t.Fatalf("purged %d records before any checkpoint of the host", n)
	}
}

// Deleting a chain's head up to a checkpoint looks like a retention purge;
// with the retention known it is not one when the anchor is too young.
func TestVerifyRetentionFindsADeletedHead(t *testing.T) {
	st := audit.NewMemoryStore()
	key := audittest.Key(t)
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for d := range 3 {
		day := at.Add(time.Duration(d) * 24 * time.Hour)
		audittest.WriteChain(t, st, "n", key, audittest.Events("t", 2, day), func() time.Time { return day })
	}
	// The attacker deletes seq 1..4: the chain starts at day 1's start
	// checkpoint (seq 5).
	audit.TamperMemory(st, func(ls [][]byte) [][]byte { return ls[4:] })
	now := at.Add(3 * 24 * time.Hour)
	if rep := verifyWith(t, st, key, audit.VerifyOptions{Now: now}); !rep.OK() {
		t.Fatalf("without the retention it passes as a purge: %v", rep.Problems)
	}
	for _, retention := range []time.Duration{0, 7 * 24 * time.Hour} {
		rep := verifyWith(t, st, key, audit.VerifyOptions{Now: now, CheckRetention: true, Retention: retention})
		if firstKind(rep) != audit.ProblemMissing {
			t.Fatalf("retention %s: %v", retention, rep.Problems)
		}
	}
	// A real purge under a one-day retention passes.
	if rep := verifyWith(t, st, key, audit.VerifyOptions{Now: now, CheckRetention: true, Retention: 24 * time.Hour}); !rep.OK() {
		t.Fatalf("a purge within retention: %v", rep.Problems)
	}
}

// A tail cut back to an earlier final checkpoint ends "cleanly"; the head
// known from the log finds it.
func TestVerifyExpectedHeadFindsACutTail(t *testing.T) {
	st := audit.NewMemoryStore()
	key := audittest.Key(t)
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return at }
	audittest.WriteChain(t, st, "n", key, audittest.Events("t", 2, at), now) // seq 1..4, final at 4
	audittest.WriteChain(t, st, "n", key, audittest.Events("t", 2, at), now) // seq 5..8, final at 8
	lines := st.Lines()
	logged := audit.Expected{Node: "n", Seq: 8, Hash: audit.Hash(lines[7])}
	if rep := verifyWith(t, st, key, audit.VerifyOptions{Expect: []audit.Expected{logged}}); !rep.OK() {
		t.Fatalf("untouched: %v", rep.Problems)
	}
	audit.TamperMemory(st, func(ls [][]byte) [][]byte { return ls[:4] })
	if rep := verifyWith(t, st, key, audit.VerifyOptions{Now: at, MaxCheckpointAge: time.Minute}); !rep.OK() {
		t.Fatalf("the sink alone cannot tell: %v", rep.Problems)
	}
	rep := verifyWith(t, st, key, audit.VerifyOptions{Expect: []audit.Expected{logged}})
	if firstKind(rep) != audit.ProblemTruncated {
		t.Fatalf("with the logged head: %v", rep.Problems)
	}
}

// A chain no checkpoint vouches for (a forged node) is a problem, whatever
// the options.
func TestVerifyChainWithoutCheckpoint(t *testing.T) {
	st := audit.NewMemoryStore()
	key := audittest.Key(t)
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	audittest.WriteChain(t, st, "n", key, audittest.Events("t", 3, at), func() time.Time { return at })
	audit.TamperMemory(st, func(ls [][]byte) [][]byte { return ls[:1] }) // only the start checkpoint: fine
	if rep := verifyWith(t, st, key, audit.VerifyOptions{}); !rep.OK() {
		t.Fatalf("%v", rep.Problems)
	}
	raw := []byte(`{"node":"ghost","seq":1,"prev":"","source":"host","eventType":"authority.token.issued","occurredAt":"2026-03-01T00:00:00Z"}`)
	if err := st.Append(context.Background(), []audit.Sealed{{Node: "ghost", Seq: 1, Hash: audit.Hash(raw), Source: "host",
		EventType: "authority.token.issued", OccurredAt: at, Line: raw}}); err != nil {
		t.Fatal(err)
	}
	if rep := verifyWith(t, st, key, audit.VerifyOptions{}); firstKind(rep) != audit.ProblemCheckpoint {
		t.Fatalf("a chain without checkpoint: %v", rep.Problems)
	}
}
