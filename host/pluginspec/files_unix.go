//go:build unix

package pluginspec

import (
	"io/fs"
	"syscall"
)

// permBits: the mode's group and other bits are enforced by the system.
const permBits = true

// fileOwner returns the uid owning fi.
func fileOwner(fi fs.FileInfo) (int, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return int(st.Uid), true
}
