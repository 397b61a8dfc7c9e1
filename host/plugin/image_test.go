package plugin_test

import (
	"bytes"
	"runtime"
	"testing"

	"stellaops.org/authority/host/plugin"
)

// Instances start from the module's data image, mapped copy-on-write: a
// write by one instance (of one tenant) is seen by no other instance and
// by no instance made after it, of that tenant or another.
func TestDataImageIsCopyOnWritePerInstance(t *testing.T) {
	m := newManager(t, map[string][]plugin.Spec{"a": {spec(t, "noop")}, "b": {spec(t, "noop")}}, plugin.Deps{})
	img := m.DataImage("a")
	if runtime.GOOS == "linux" && len(img) == 0 {
		t.Fatal("no data image on Linux: the segments were not extracted")
	}
	if len(img) == 0 {
		t.Skip("copy-on-write data images need Linux memfd; elsewhere instances copy the segments")
	}
	// An offset inside the image holding a non-zero byte.
	off := uint32(bytes.LastIndexFunc(img, func(r rune) bool { return r != 0 }))
	closeA, readA, writeA, err := m.NewTestInstanceMemory("a")
	if err != nil {
		t.Fatal(err)
	}
	defer closeA()
	if got, ok := readA(off, 1); !ok || got[0] != img[off] {
		t.Fatalf("instance memory at %d: %v, image %v", off, got, img[off])
	}
	if !writeA(off, []byte{img[off] ^ 0xff}) {
		t.Fatal("write")
	}
	for _, tenant := range []string{"a", "b"} {
		closeB, readB, _, err := m.NewTestInstanceMemory(tenant)
		if err != nil {
			t.Fatal(err)
		}
		view, _ := readB(off, 1)
		got := view[0] // a view of the instance's memory: read it before closing
		closeB()
		if got != img[off] {
			t.Fatalf("tenant %s: a new instance sees another instance's write at %d", tenant, off)
		}
	}
	if got, _ := readA(off, 1); got[0] != img[off]^0xff {
		t.Fatal("the writing instance lost its own write")
	}
}
