package plugin

import "math/bits"

// expiryWheel orders the entries of one scope of the memory stores by
// expiry, so that expired entries are found without scanning: a
// hierarchical timing wheel of 64-slot levels over millisecond ticks.
//
// An entry due at tick t is kept at the lowest level k where t and the
// wheel's position cur agree on every base-64 digit above digit k, in slot
// digit k of t. So level 0 holds the entries due within cur's current
// 64 ms, level 1 those within its current 4 s, and so on; every entry of a
// lower level is due before every entry of a higher one, and within a
// level the slots are in time order. A bitmap per level finds the first
// occupied slot in one instruction. 11 levels cover every uint64 tick, so
// no TTL is too long and no clock value out of range; the slot arrays of a
// level are allocated when first used (a scope whose TTLs are minutes uses
// three or four).
//
// due moves cur forward to the first occupied slot and, when that slot is
// above level 0, re-files its entries one or more levels down (they now
// agree with cur on one more digit). An entry is thus re-filed at most
// once per level it starts above 0: inserting, removing and expiring an
// entry cost O(1) amortized, with no scan of the scope, let alone of the
// store. Why this rather than a heap or a FIFO per TTL is in
// abi/RATIONALE-plugins.md ("Plugin state quotas").
//
// An expiryWheel is not safe for concurrent use (its scope's mutex guards it).
type expiryWheel struct {
	// cur is the wheel's position; every linked entry has tick >= cur. It
	// only moves forward, and only as far as the first entry (or to the
	// present when the wheel is empty).
	cur   uint64
	occ   [wheelLevels]uint64
	slots [wheelLevels]*[wheelSlots]*memEntry
}

const (
	wheelBits   = 6
	wheelSlots  = 1 << wheelBits
	wheelLevels = (64 + wheelBits - 1) / wheelBits
)

// msTick is the wheel tick of a Unix time in nanoseconds. An entry expiring
// at ns is filed at msTick(ns) and reaped once due(target) is asked for a
// target > msTick(ns), that is at or after the next millisecond: never
// before it expires, at most 1 ms after.
func msTick(ns int64) uint64 {
	if ns < 0 {
		return 0
	}
	return uint64(ns / 1e6)
}

// add links e at e.tick, or at cur if e.tick is behind it (the clock went
// back): an entry may be reaped later than its expiry, never earlier.
func (w *expiryWheel) add(e *memEntry) {
	if e.tick < w.cur {
		e.tick = w.cur
	}
	lvl := 0
	if x := e.tick ^ w.cur; x != 0 {
		lvl = (bits.Len64(x) - 1) / wheelBits
	}
	s := int(e.tick>>(lvl*wheelBits)) & (wheelSlots - 1)
	if w.slots[lvl] == nil {
		w.slots[lvl] = new([wheelSlots]*memEntry)
	}
	head := &w.slots[lvl][s]
	e.prev, e.next = nil, *head
	if *head != nil {
		(*head).prev = e
	}
	*head = e
	e.slot = int16(lvl*wheelSlots + s)
	w.occ[lvl] |= 1 << s
}

// remove unlinks e (which must be linked).
func (w *expiryWheel) remove(e *memEntry) {
	lvl, s := int(e.slot)/wheelSlots, int(e.slot)%wheelSlots
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		w.slots[lvl][s] = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	}
	if w.slots[lvl][s] == nil {
		w.occ[lvl] &^= 1 << s
	}
	e.prev, e.next, e.slot = nil, nil, -1
}

// due returns a linked entry whose tick is before target (the caller
// removes it), or nil when there is none. Entries come out in tick order.
func (w *expiryWheel) due(target uint64) *memEntry {
	for {
		lvl := -1
		for l := range wheelLevels {
			if w.occ[l] != 0 {
				lvl = l
				break
			}
		}
		if lvl < 0 {
			// Empty: jump to the present, so that later entries are
			// filed close to level 0 instead of cascading from far away.
			w.cur = max(w.cur, target)
			return nil
		}
		s := uint64(bits.TrailingZeros64(w.occ[lvl]))
		shift := uint(lvl * wheelBits)
		// The first tick of the slot: cur's digits above lvl, then s, then
		// zeros (for level 0, the tick of its entries).
		start := w.cur>>(shift+wheelBits)<<(shift+wheelBits) | s<<shift
		if start >= target {
			return nil
		}
		w.cur = start
		if lvl == 0 {
			return w.slots[0][s]
		}
		// Re-file the slot's entries: they agree with cur on digit lvl now,
		// so each lands on a lower level. No other entry moves: those of
		// higher levels and of later slots of this one still differ from
		// cur where they did.
		e := w.slots[lvl][s]
		w.slots[lvl][s] = nil
		w.occ[lvl] &^= 1 << s
		for e != nil {
			next := e.next
			w.add(e)
			e = next
		}
	}
}
