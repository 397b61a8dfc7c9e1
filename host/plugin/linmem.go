package plugin

import "github.com/tetratelabs/wazero/experimental"

// heapMemory is a linear memory on the Go heap, the fallback when no
// mapping can be had: growing copies, as wazero's own allocator does.
type heapMemory struct {
	buf []byte
	max uint64
}

func (h *heapMemory) Reallocate(size uint64) []byte {
	if size > h.max {
		return nil
	}
	if size <= uint64(cap(h.buf)) {
		h.buf = h.buf[:size]
		return h.buf
	}
	nb := make([]byte, size, min(h.max, max(size, 2*uint64(cap(h.buf)))))
	copy(nb, h.buf)
	h.buf = nb
	return nb
}

func (h *heapMemory) Free() { h.buf = nil }

// memoryFor returns the allocator of a module's instances: each memory
// starts as image (the data segments the rewriter took out of the module,
// nil when it did not) followed by zeros. The allocator never fails:
// wazero has no way to refuse an allocation, so when no mapping can be had
// the memory is built on the heap, with the image copied in.
func memoryFor(img *memImage) experimental.MemoryAllocator {
	return experimental.MemoryAllocatorFunc(func(cap, max uint64) experimental.LinearMemory {
		if m := mapMemory(max, img); m != nil {
			return m
		}
		h := &heapMemory{max: max}
		if img != nil {
			h.buf = make([]byte, len(img.data), len(img.data))
			copy(h.buf, img.data)
		}
		return h
	})
}
