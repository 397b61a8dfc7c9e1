//go:build linux || darwin || freebsd

package plugin

import (
	"syscall"
)

// mmapMemory backs a guest's linear memory with an anonymous private
// mapping of its maximum size, reserved (MAP_NORESERVE) and not committed:
// pages cost RSS only once the guest touches them. memory.grow then never
// copies (the default allocator copies the whole memory into a larger
// slice on every grow; a Go guest grows several times in _initialize),
// new memory is zero without a clear, and closing an instance returns its
// pages to the system at once instead of at the Go heap's next scavenge.
// With an image (memImage), the start of the mapping is the image, mapped
// copy-on-write: an instance copies only the pages it writes.
type mmapMemory struct{ buf []byte }

// mapMemory maps max bytes (the image over its start); nil when the
// system refuses.
func mapMemory(max uint64, img *memImage) *mmapMemory {
	if max == 0 || max > 1<<32 || img != nil && uint64(img.size) > max {
		return nil
	}
	b, err := syscall.Mmap(-1, 0, int(max), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_PRIVATE|syscall.MAP_ANON|mapNoReserve)
	if err != nil {
		return nil
	}
	if img != nil && !img.mapOver(b) {
		_ = syscall.Munmap(b)
		return nil
	}
	return &mmapMemory{buf: b}
}

// Reallocate implements experimental.LinearMemory: the mapping already
// spans the maximum, so growing only lengthens the slice.
func (m *mmapMemory) Reallocate(size uint64) []byte {
	if size > uint64(cap(m.buf)) {
		return nil
	}
	return m.buf[:size]
}

// Free implements experimental.LinearMemory.
func (m *mmapMemory) Free() {
	if m.buf != nil {
		_ = syscall.Munmap(m.buf[:cap(m.buf)])
		m.buf = nil
	}
}
