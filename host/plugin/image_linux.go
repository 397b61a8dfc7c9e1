package plugin

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// extractData: on Linux the rewriter takes a module's data segments out
// and instances map them copy-on-write from a sealed memfd.
const extractData = true

// memImage is a module's initial memory (its data segments, laid out) in
// a sealed memfd, mapped privately (copy-on-write) over the start of each
// instance's memory: the image's pages are shared by every instance of
// the module until an instance writes one, and nothing is copied at
// instantiation. The memfd is sealed against writes, so no instance and
// no host code can change what the next instance starts from; private
// mappings never write back. data keeps the bytes for the heap fallback.
type memImage struct {
	fd   int
	size int // page-rounded length mapped
	data []byte
}

func newMemImage(data []byte) (*memImage, error) {
	fd, err := unix.MemfdCreate("authority-plugin-image", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	page := unix.Getpagesize()
	size := (len(data) + page - 1) / page * page
	fail := func(op string, err error) (*memImage, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("memory image %s: %w", op, err)
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		return fail("ftruncate", err)
	}
	for off := 0; off < len(data); {
		n, err := unix.Pwrite(fd, data[off:], int64(off))
		if err != nil {
			return fail("write", err)
		}
		off += n
	}
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL); err != nil {
		return fail("seal", err)
	}
	return &memImage{fd: fd, size: size, data: data}, nil
}

// mapOver maps the image privately over the start of b (a mapping of at
// least size bytes); false when the system refuses.
func (im *memImage) mapOver(b []byte) bool {
	if len(b) < im.size {
		return false
	}
	if im.size == 0 {
		return true
	}
	_, err := unix.MmapPtr(im.fd, 0, unsafe.Pointer(&b[0]), uintptr(im.size),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_FIXED)
	return err == nil
}

func (im *memImage) close() {
	if im != nil && im.fd >= 0 {
		unix.Close(im.fd)
		im.fd = -1
	}
}
