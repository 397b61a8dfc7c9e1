package meter

import (
	"bytes"
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
)

// dataSection encodes active segments at i32.const offsets (in the given
// order) and, with passive, one passive segment after them.
func dataSection(segs []struct {
	off  int
	data string
}, passive bool) []byte {
	n := len(segs)
	if passive {
		n++
	}
	p := appendU32(nil, uint32(n))
	for _, s := range segs {
		p = append(p, 0, 0x41)
		p = appendS64(p, int64(s.off))
		p = append(p, 0x0b)
		p = appendName(p, s.data)
	}
	if passive {
		p = append(p, 1)
		p = appendName(p, "passive")
	}
	return append(appendU32([]byte{secData}, uint32(len(p))), p...)
}

func segmentCount(t *testing.T, wasm []byte) int {
	t.Helper()
	r := &reader{b: wasm, off: 8}
	for !r.done() {
		id, _ := r.byte()
		n, _ := r.u32()
		payload, _ := r.bytes(n)
		if id == secData {
			pr := &reader{b: payload}
			c, _ := pr.u32()
			return int(c)
		}
	}
	return 0
}

// memoryOf instantiates wasm as is (no rewrite) and returns its memory.
func memoryOf(t *testing.T, wasm []byte) []byte {
	t.Helper()
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	mod, err := rt.Instantiate(ctx, wasm)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := mod.ExportedMemory("memory").Read(0, mod.ExportedMemory("memory").Size())
	return bytes.Clone(b)
}

// Coalescing leaves every instance's memory byte for byte as the original
// segments make it, with fewer segments: unsorted segments, small gaps
// (merged), a gap wider than coalesceGap (kept apart), zeros inside data.
func TestCoalescedDataSegmentsMakeTheSameMemory(t *testing.T) {
	segs := []struct {
		off  int
		data string
	}{{100, "cc"}, {0, "aa\x00a"}, {8, "bb"}, {4000, "dd"}, {40, "\x00\x00e"}, {4002, "ff"}}
	fn := []testFunc{{typ: 1, body: []byte{0x41, 0}}}
	orig := testModule(typesI32, fn, 0, dataSection(segs, false))
	res, err := Rewrite(orig, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if n := segmentCount(t, res.Wasm); n != 2 {
		t.Fatalf("%d segments after coalescing, want 2 (0-101 and 4000-4003)", n)
	}
	if !bytes.Equal(memoryOf(t, orig), memoryOf(t, res.Wasm)) {
		t.Fatal("the coalesced segments make another memory")
	}
}

// Not coalesced: overlapping segments (their order decides the bytes), a
// passive segment, and code that names segments (memory.init, data.drop).
func TestDataSegmentsKeptWhenOrderOrIndicesMatter(t *testing.T) {
	fn := []testFunc{{typ: 1, body: []byte{0x41, 0}}}
	overlap := testModule(typesI32, fn, 0, dataSection([]struct {
		off  int
		data string
	}{{0, "aaaa"}, {2, "bb"}}, false))
	res, err := Rewrite(overlap, testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if n := segmentCount(t, res.Wasm); n != 2 {
		t.Fatalf("overlapping: %d segments", n)
	}
	if !bytes.Equal(memoryOf(t, overlap)[:4], []byte("aabb")) || !bytes.Equal(memoryOf(t, res.Wasm)[:4], []byte("aabb")) {
		t.Fatal("overlapping segments applied out of order")
	}
	passive := testModule(typesI32, fn, 0, dataSection([]struct {
		off  int
		data string
	}{{0, "aa"}, {8, "bb"}}, true))
	if res, err := Rewrite(passive, testOptions()); err != nil || segmentCount(t, res.Wasm) != 3 {
		t.Fatalf("with a passive segment: %v", err)
	}
	// data.drop 0 in the code (0xfc 9 0), then i32.const 0.
	dropper := []testFunc{{typ: 1, body: []byte{0xfc, 9, 0, 0x41, 0}}}
	indexed := testModule(typesI32, dropper, 0, dataSection([]struct {
		off  int
		data string
	}{{0, "aa"}, {8, "bb"}}, false))
	if res, err := Rewrite(indexed, testOptions()); err != nil || segmentCount(t, res.Wasm) != 2 {
		t.Fatalf("with data.drop: %v", err)
	}
}
