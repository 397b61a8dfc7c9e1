package audit

import (
	"crypto/ed25519"
	"time"
)

// TamperMemory rewrites a MemoryStore's lines in place (tests of Verify);
// each record keeps the index of the line now at its place.
func TamperMemory(m *MemoryStore, f func([][]byte) [][]byte) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ls := make([][]byte, len(m.recs))
	for i, r := range m.recs {
		ls[i] = r.Line
	}
	ls = f(ls)
	out := make([]Sealed, 0, len(ls))
	for _, l := range ls {
		// Find the record this line came from, to move it whole.
		var found bool
		for _, r := range m.recs {
			if string(r.Line) == string(l) {
				out = append(out, r)
				found = true
				break
			}
		}
		if !found { // an edited line: keep no index (as a file would)
			out = append(out, Sealed{Line: l})
		}
	}
	m.recs = out
}

// SealChain seals events into node's chain as a writer would (a start
// checkpoint, the events, a final checkpoint) without running one: the
// fuzz targets' seeds, made without goroutines.
func SealChain(node string, key ed25519.PrivateKey, events []Event, at time.Time) [][]byte {
	w := &Writer{o: WriterOptions{Node: node, Signer: NewSigner(key)}}
	recs := []pending{{rec: Record{Source: SourceHost, EventType: EventCheckpoint, OccurredAt: at}, checkpoint: true}}
	for _, e := range events {
		r, err := NewRecord(e, nil)
		if err != nil {
			panic(err)
		}
		recs = append(recs, pending{rec: r})
	}
	recs = append(recs, pending{rec: Record{Source: SourceHost, EventType: EventCheckpoint, OccurredAt: at}, checkpoint: true})
	sealed, err := w.seal(recs, true)
	if err != nil {
		panic(err)
	}
	out := make([][]byte, len(sealed))
	for i, s := range sealed {
		out[i] = s.Line
	}
	return out
}
