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
		return s, memoryTamper{s}
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
		return s, fileTamper{path}
	})
}

// memoryTamper edits a MemoryStore's records in place.
type memoryTamper struct{ s *audit.MemoryStore }

func (m memoryTamper) edit(t testing.TB, f func(lines [][]byte) [][]byte) {
	t.Helper()
	audit.TamperMemory(m.s, f)
}

func (m memoryTamper) Replace(t testing.TB, node string, seq uint64, line []byte) {
	m.edit(t, func(ls [][]byte) [][]byte { ls[index(t, ls, node, seq)] = line; return ls })
}
func (m memoryTamper) Delete(t testing.TB, node string, seq uint64) {
	m.edit(t, func(ls [][]byte) [][]byte { i := index(t, ls, node, seq); return append(ls[:i], ls[i+1:]...) })
}
func (m memoryTamper) Swap(t testing.TB, node string, a, b uint64) {
	m.edit(t, func(ls [][]byte) [][]byte {
		i, j := index(t, ls, node, a), index(t, ls, node, b)
		ls[i], ls[j] = ls[j], ls[i]
		return ls
	})
}
func (m memoryTamper) TruncateAfter(t testing.TB, node string, seq uint64) {
	m.edit(t, func(ls [][]byte) [][]byte { return ls[:index(t, ls, node, seq)+1] })
}

// fileTamper edits the audit file's lines.
type fileTamper struct{ path string }

func (f fileTamper) edit(t testing.TB, fn func(lines [][]byte) [][]byte) {
	t.Helper()
	raw, err := os.ReadFile(f.path)
	if err != nil {
		t.Fatal(err)
	}
	ls := bytes.Split(bytes.TrimSuffix(raw, []byte("\n")), []byte("\n"))
	ls = fn(ls)
	if err := os.WriteFile(f.path, append(bytes.Join(ls, []byte("\n")), '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
}

func (f fileTamper) Replace(t testing.TB, node string, seq uint64, line []byte) {
	f.edit(t, func(ls [][]byte) [][]byte { ls[index(t, ls, node, seq)] = line; return ls })
}
func (f fileTamper) Delete(t testing.TB, node string, seq uint64) {
	f.edit(t, func(ls [][]byte) [][]byte { i := index(t, ls, node, seq); return append(ls[:i], ls[i+1:]...) })
}
func (f fileTamper) Swap(t testing.TB, node string, a, b uint64) {
	f.edit(t, func(ls [][]byte) [][]byte {
		i, j := index(t, ls, node, a), index(t, ls, node, b)
		ls[i], ls[j] = ls[j], ls[i]
		return ls
	})
}
func (f fileTamper) TruncateAfter(t testing.TB, node string, seq uint64) {
	f.edit(t, func(ls [][]byte) [][]byte { return ls[:index(t, ls, node, seq)+1] })
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
