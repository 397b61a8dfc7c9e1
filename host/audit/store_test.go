package audit_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"stellaops.org/authority/host/audit"
	"stellaops.org/authority/host/audit/audittest"
)

func TestMemoryStoreContract(t *testing.T) {
	audittest.Run(t, func(t testing.TB) (audit.Store, audittest.Tamperer) {
		s := audit.NewMemoryStore()
		return s, memoryTamper(s)
	})
}

func TestFileStoreContract(t *testing.T) {
	audittest.Run(t, func(t testing.TB) (audit.Store, audittest.Tamperer) {
		path := filepath.Join(t.TempDir(), "audit", "audit.jsonl")
		s, err := audit.OpenFile(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s, fileTamper(path)
	})
}

// lineTamper implements audittest.Tamperer on a store's lines, in order:
// edit hands them to fn and stores what fn returns.
type lineTamper struct {
	edit func(t testing.TB, fn func(lines [][]byte) [][]byte)
}

func (m lineTamper) Replace(t testing.TB, node string, seq uint64, line []byte) {
	m.edit(t, func(ls [][]byte) [][]byte { ls[index(t, ls, node, seq)] = line; return ls })
}
func (m lineTamper) Delete(t testing.TB, node string, seq uint64) {
	m.edit(t, func(ls [][]byte) [][]byte { i := index(t, ls, node, seq); return append(ls[:i], ls[i+1:]...) })
}
func (m lineTamper) Swap(t testing.TB, node string, a, b uint64) {
	m.edit(t, func(ls [][]byte) [][]byte {
		i, j := index(t, ls, node, a), index(t, ls, node, b)
		ls[i], ls[j] = ls[j], ls[i]
		return ls
	})
}
func (m lineTamper) TruncateAfter(t testing.TB, node string, seq uint64) {
	m.edit(t, func(ls [][]byte) [][]byte { return ls[:index(t, ls, node, seq)+1] })
}

// memoryTamper edits a MemoryStore's records in place.
func memoryTamper(s *audit.MemoryStore) lineTamper {
	return lineTamper{edit: func(_ testing.TB, fn func([][]byte) [][]byte) { audit.TamperMemory(s, fn) }}
}

// fileTamper rewrites the audit file's lines.
func fileTamper(path string) lineTamper {
	return lineTamper{edit: func(t testing.TB, fn func([][]byte) [][]byte) {
		t.Helper()
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		ls := fn(bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n")))
		if err := os.WriteFile(path, append(bytes.Join(ls, []byte("\n")), '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
	}}
}

func index(t testing.TB, ls [][]byte, node string, seq uint64) int {
	t.Helper()
	for i, l := range ls {
		var r audit.Record
		if json.Unmarshal(l, &r) == nil && r.Node == node && r.Seq == seq {
			return i
		}
	}
	t.Fatalf("no record %s/%d", node, seq)
	return -1
}
