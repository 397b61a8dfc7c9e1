//go:build !(linux || darwin || freebsd)

package plugin

import "github.com/tetratelabs/wazero/experimental"

// linearMemory is nil here: wazero's default allocator.
var linearMemory experimental.MemoryAllocator
