// Package audittest is the contract suite every audit.Store passes: the
// memory and file stores (host/audit) and PostgreSQL
// (host/store/postgres), so a record written through one behaves the same
// in all, and an edit, deletion, reordering or cut tail of any of them is
// caught by audit.Verify.
package audittest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"stellaops.org/authority/abi"
	"stellaops.org/authority/host/audit"
)

// Tamperer edits a store behind its back, as an attacker with write access
// to it would. Positions are chain positions (node, seq).
type Tamperer interface {
	// Replace overwrites the record at (node, seq) with line, leaving the
	// store's own index (columns) as it was.
	Replace(t testing.TB, node string, seq uint64, line []byte)
	// Delete removes the record at (node, seq).
	Delete(t testing.TB, node string, seq uint64)
	// Swap exchanges where the records at (node, a) and (node, b) are
	// stored (their order in a file; their rows' bodies in a table).
	Swap(t testing.TB, node string, a, b uint64)
	// TruncateAfter removes every record of node after seq.
	TruncateAfter(t testing.TB, node string, seq uint64)
}

// Factory makes a fresh, empty store, and a Tamperer for it.
type Factory func(t testing.TB) (audit.Store, Tamperer)

// Run runs the contract suite.
func Run(t *testing.T, newStore Factory) {
	t.Run("AppendScanHead", func(t *testing.T) { testAppendScanHead(t, newStore) })
	t.Run("ConflictWritesNothing", func(t *testing.T) { testConflict(t, newStore) })
	t.Run("WriterChainVerifies", func(t *testing.T) { testWriterChain(t, newStore) })
	t.Run("ResumeAfterRestart", func(t *testing.T) { testResume(t, newStore) })
	t.Run("PurgeKeepsAnchoredChain", func(t *testing.T) { testPurge(t, newStore) })
	t.Run("TamperDetected", func(t *testing.T) { testTamper(t, newStore) })
}

// Key is a fresh checkpoint key.
func Key(t testing.TB) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Events are n distinct host events of tenant, one second apart from at.
func Events(tenant string, n int, at time.Time) []audit.Event {
	out := make([]audit.Event, n)
	for i := range out {
		out[i] = audit.Event{Type: abi.EventTokenIssued, Time: at.Add(time.Duration(i) * time.Second), Tenant: tenant,
			Outcome: audit.OutcomeSuccess, Client: fmt.Sprintf("client-%d", i), Scopes: []string{"a", "b"},
			TokenID: fmt.Sprintf("jti-%d", i), SenderConstraint: map[string]string{"jkt": "thumb"}}
	}
	return out
}

// WriteChain writes events through a Writer for node and closes it (a
// final checkpoint), returning what was written: every record's line.
func WriteChain(t testing.TB, s audit.Store, node string, key ed25519.PrivateKey, events []audit.Event, now func() time.Time) {
	t.Helper()
	ctx := context.Background()
	w, err := audit.NewWriter(ctx, audit.WriterOptions{Node: node, Store: s, Signer: audit.NewSigner(key),
		Pseudonymizer: fakePseudonyms{}, Now: now, CheckpointInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range events {
		if i%7 == 3 {
			if err := w.RecordDurable(ctx, e); err != nil {
				t.Fatal(err)
			}
			continue
		}
		w.Record(ctx, e)
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if d := w.Dropped(); d != 0 {
		t.Fatalf("%d records dropped", d)
	}
}

type fakePseudonyms struct{}

func (fakePseudonyms) Pseudonym(tenant, v string) (string, error) {
	return "p-" + tenant + "-" + v, nil
}
func (fakePseudonyms) Network(tenant, v string) (string, error) { return "n-" + tenant + "-" + v, nil }

func lines(t testing.TB, s audit.Store) []audit.Sealed {
	t.Helper()
	var out []audit.Sealed
	if err := s.Scan(context.Background(), func(r audit.Sealed) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func sealed(node string, seq uint64, typ string, at time.Time) audit.Sealed {
	line := fmt.Appendf(nil, `{"node":%q,"seq":%d,"prev":"","source":"host","eventType":%q,"occurredAt":%q}`,
		node, seq, typ, at.UTC().Format(time.RFC3339Nano))
	return audit.Sealed{Node: node, Seq: seq, Hash: audit.Hash(line), Source: "host", EventType: typ, OccurredAt: at, Line: line}
}

func testAppendScanHead(t *testing.T, newStore Factory) {
	s, _ := newStore(t)
	ctx := context.Background()
	if seq, h, err := s.Head(ctx, "n1"); err != nil || seq != 0 || h != "" {
		t.Fatalf("empty head: %d %q %v", seq, h, err)
	}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	b1 := []audit.Sealed{sealed("n1", 1, "authority.a.b", at), sealed("n2", 1, "authority.a.b", at), sealed("n1", 2, "authority.a.c", at)}
	if err := s.Append(ctx, b1); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(ctx, []audit.Sealed{sealed("n2", 2, "authority.a.d", at)}); err != nil {
		t.Fatal(err)
	}
	for node, want := range map[string]audit.Sealed{"n1": b1[2], "n2": sealed("n2", 2, "authority.a.d", at)} {
		seq, h, err := s.Head(ctx, node)
		if err != nil || seq != want.Seq || h != want.Hash {
			t.Errorf("head %s: %d %s %v, want %d %s", node, seq, h, err, want.Seq, want.Hash)
		}
	}
	got := lines(t, s)
	if len(got) != 4 {
		t.Fatalf("%d records, want 4", len(got))
	}
	// Each node's records come in chain order, whatever the interleaving.
	perNode := map[string][]string{}
	for _, r := range got {
		var node string
		for _, n := range []string{"n1", "n2"} {
			if strings.Contains(string(r.Line), `"node":"`+n+`"`) {
				node = n
			}
		}
		perNode[node] = append(perNode[node], string(r.Line))
	}
	if perNode["n1"][0] != string(b1[0].Line) || perNode["n1"][1] != string(b1[2].Line) || len(perNode["n2"]) != 2 {
		t.Errorf("scan order: %v", perNode)
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("ping: %v", err)
	}
}

func testConflict(t *testing.T, newStore Factory) {
	s, _ := newStore(t)
	ctx := context.Background()
	at := time.Now().UTC()
	if err := s.Append(ctx, []audit.Sealed{sealed("n1", 1, "authority.a.b", at), sealed("n1", 2, "authority.a.b", at)}); err != nil {
		t.Fatal(err)
	}
	err := s.Append(ctx, []audit.Sealed{sealed("n1", 3, "authority.a.x", at), sealed("n1", 2, "authority.a.y", at)})
	if !errors.Is(err, audit.ErrConflict) {
		t.Fatalf("append at a taken position: %v, want ErrConflict", err)
	}
	if got := lines(t, s); len(got) != 2 {
		t.Fatalf("a refused batch left %d records, want 2", len(got))
	}
	if seq, _, _ := s.Head(ctx, "n1"); seq != 2 {
		t.Fatalf("head after a refused batch: %d", seq)
	}
}

func testWriterChain(t *testing.T, newStore Factory) {
	s, _ := newStore(t)
	key := Key(t)
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	for _, node := range []string{"node-a", "node-b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			WriteChain(t, s, node, key, Events("t-"+node, 40, at), func() time.Time { return at })
		}()
	}
	wg.Wait()
	rep, err := audit.Verify(context.Background(), s, audit.VerifyOptions{Keys: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)},
		Now: at.Add(time.Hour), MaxCheckpointAge: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	// 40 events and two checkpoints (start, final) per node.
	if !rep.OK() || rep.Records != 84 || len(rep.Chains) != 2 {
		t.Fatalf("verify: %+v", rep)
	}
	for _, c := range rep.Chains {
		if c.Records != 42 || !c.Final || c.Unsealed != 0 || c.First != 1 || c.Last != 42 {
			t.Errorf("chain %+v", c)
		}
	}
	// Records carry pseudonyms, never the raw values.
	for _, l := range lines(t, s) {
		if strings.Contains(string(l.Line), `"subject":"client`) {
			t.Fatalf("raw subject: %s", l.Line)
		}
	}
	// Another key does not vouch for these checkpoints.
	rep, _ = audit.Verify(context.Background(), s, audit.VerifyOptions{Keys: []ed25519.PublicKey{Key(t).Public().(ed25519.PublicKey)}})
	if rep.OK() || rep.Problems[0].Kind != audit.ProblemCheckpoint {
		t.Fatalf("verify under a foreign key: %+v", rep.Problems)
	}
}

func testResume(t *testing.T, newStore Factory) {
	s, _ := newStore(t)
	key := Key(t)
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	now := func() time.Time { return at }
	WriteChain(t, s, "n", key, Events("t", 5, at), now)
	WriteChain(t, s, "n", key, Events("t", 5, at.Add(time.Minute)), now)
	rep, err := audit.Verify(context.Background(), s, audit.VerifyOptions{Keys: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.Chains) != 1 || rep.Chains[0].Last != 14 {
		t.Fatalf("a restarted node's chain: %+v", rep)
	}
}

func testPurge(t *testing.T, newStore Factory) {
	s, _ := newStore(t)
	key := Key(t)
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	// Three sessions a day apart: each starts and ends with a checkpoint
	// (seq 1 and 6, 7 and 12, 13 and 18).
	for d := range 3 {
		day := t0.Add(time.Duration(d) * 24 * time.Hour)
		WriteChain(t, s, "n", key, Events("t", 4, day), func() time.Time { return day.Add(time.Hour) })
	}
	n, err := s.Purge(context.Background(), t0.Add(36*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// Records before the latest checkpoint older than the cutoff (day 1's
	// final, seq 12) go: 11 of them.
	if n != 11 {
		t.Fatalf("purged %d, want 11", n)
	}
	rep, err := audit.Verify(context.Background(), s, audit.VerifyOptions{Keys: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || !rep.Chains[0].Anchored || rep.Chains[0].First != 12 || rep.Records != 7 {
		t.Fatalf("after purge: %+v", rep)
	}
	if seq, _, _ := s.Head(context.Background(), "n"); seq != 18 {
		t.Fatalf("head after purge: %d", seq)
	}
	// Nothing is older than the first checkpoint: a second purge is a no-op.
	if n, err := s.Purge(context.Background(), t0.Add(36*time.Hour)); err != nil || n != 0 {
		t.Fatalf("second purge: %d %v", n, err)
	}
}

func testTamper(t *testing.T, newStore Factory) {
	at := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	setup := func(t *testing.T) (audit.Store, Tamperer, ed25519.PrivateKey, []audit.Sealed) {
		s, tam := newStore(t)
		key := Key(t)
		WriteChain(t, s, "n", key, Events("t", 10, at), func() time.Time { return at })
		return s, tam, key, lines(t, s)
	}
	verify := func(t *testing.T, s audit.Store, key ed25519.PrivateKey) audit.Report {
		rep, err := audit.Verify(context.Background(), s, audit.VerifyOptions{Keys: []ed25519.PublicKey{key.Public().(ed25519.PublicKey)},
			Now: at.Add(time.Hour), MaxCheckpointAge: 10 * time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		return rep
	}
	expect := func(t *testing.T, rep audit.Report, kind string, seq uint64) {
		t.Helper()
		if rep.OK() {
			t.Fatalf("tampering not detected: %+v", rep)
		}
		if p := rep.Problems[0]; p.Kind != kind || p.Seq != seq {
			t.Fatalf("first problem %v, want %s at seq %d (all: %v)", p, kind, seq, rep.Problems)
		}
	}
	t.Run("edit", func(t *testing.T) {
		s, tam, key, ls := setup(t)
		edited := strings.Replace(string(ls[4].Line), `"outcome":"success"`, `"outcome":"failure"`, 1)
		if edited == string(ls[4].Line) {
			t.Fatalf("the edit changed nothing: %s", edited)
		}
		tam.Replace(t, "n", 5, []byte(edited))
		expect(t, verify(t, s, key), audit.ProblemEdited, 5)
	})
	t.Run("edit and recompute the chain", func(t *testing.T) {
		s, tam, key, ls := setup(t)
		// Rewrite record 3 (seq 1 is the start checkpoint) and re-link
		// every later one: only the signed final checkpoint can tell.
		prev := audit.Hash(ls[1].Line)
		for i := 2; i < len(ls); i++ {
			line := string(ls[i].Line)
			if i == 2 {
				line = strings.Replace(line, `"outcome":"success"`, `"outcome":"failure"`, 1)
				if line == string(ls[i].Line) {
					t.Fatalf("the edit changed nothing: %s", line)
				}
			}
			old := audit.Hash(ls[i-1].Line)
			line = strings.Replace(line, `"prev":"`+old+`"`, `"prev":"`+prev+`"`, 1)
			tam.Replace(t, "n", uint64(i+1), []byte(line))
			prev = audit.Hash([]byte(line))
		}
		rep := verify(t, s, key)
		if rep.OK() {
			t.Fatal("a recomputed chain passed")
		}
		var found bool
		for _, p := range rep.Problems {
			found = found || p.Kind == audit.ProblemCheckpoint
		}
		if !found {
			t.Fatalf("no checkpoint problem: %v", rep.Problems)
		}
	})
	t.Run("delete", func(t *testing.T) {
		s, tam, key, _ := setup(t)
		tam.Delete(t, "n", 4)
		expect(t, verify(t, s, key), audit.ProblemMissing, 4)
	})
	t.Run("reorder", func(t *testing.T) {
		s, tam, key, _ := setup(t)
		tam.Swap(t, "n", 6, 7)
		rep := verify(t, s, key)
		if rep.OK() {
			t.Fatal("reordering not detected")
		}
		if k := rep.Problems[0].Kind; k != audit.ProblemReordered && k != audit.ProblemIndexMismatch {
			t.Fatalf("first problem %v, want reordered (or an index mismatch)", rep.Problems[0])
		}
	})
	t.Run("truncate the tail", func(t *testing.T) {
		s, tam, key, _ := setup(t)
		tam.TruncateAfter(t, "n", 8) // the final checkpoint (seq 12) goes too
		expect(t, verify(t, s, key), audit.ProblemTruncated, 8)
	})
	t.Run("untouched", func(t *testing.T) {
		s, _, key, _ := setup(t)
		if rep := verify(t, s, key); !rep.OK() {
			t.Fatalf("%v", rep.Problems)
		}
	})
}
