//go:build !unix

package pluginspec

import "io/fs"

// permBits: off Unix the mode bits do not describe who may write (Windows
// reports 0777 for every directory); only the keyed digests protect the
// cache there.
const permBits = false

// fileOwner is unknown off Unix.
func fileOwner(fs.FileInfo) (int, bool) { return 0, false }
