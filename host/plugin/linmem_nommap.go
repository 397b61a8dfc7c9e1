//go:build !(linux || darwin || freebsd)

package plugin

// mapMemory is unavailable here: instances use heapMemory.
func mapMemory(max uint64, img *memImage) *heapMemory { return nil }
