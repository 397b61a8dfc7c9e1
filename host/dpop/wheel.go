package dpop

// wheel is a hashed timing wheel of 32-byte keys with one-second slots. It
// finds expired entries without scanning the whole store: each advance of
// the clock visits only the slots whose second has passed, and drops or
// re-files the keys in them. Slots are reused slices of pointer-free arrays,
// so the garbage collector has nothing to scan and steady-state inserts do
// not allocate.
//
// The wheel does not own the entries: the caller's map does. On sweep the
// wheel asks the caller for each key's current deadline (which may have
// moved since the key was filed, or the entry may be gone) and deletes or
// re-files it. A key may therefore be filed more than once; the caller's map
// is the truth.
type wheel struct {
	slots [][][32]byte
	tick  int64 // last second swept; slots up to tick are empty
}

// wheelSlots covers 17 minutes. Longer deadlines are re-filed on each lap.
const wheelSlots = 1024

func newWheel(nowSec int64) *wheel {
	return &wheel{slots: make([][][32]byte, wheelSlots), tick: nowSec}
}

// add files key under the second at which it expires.
func (w *wheel) add(key [32]byte, deadlineSec int64) {
	if deadlineSec <= w.tick {
		deadlineSec = w.tick + 1
	}
	i := deadlineSec % wheelSlots
	w.slots[i] = append(w.slots[i], key)
}

// advance sweeps every second in (tick, nowSec]. For each filed key it calls
// deadline(key): ok=false means the entry is gone; a deadline <= nowSec
// means expired, and drop(key) is called; a later deadline re-files the key.
// The work is proportional to the keys that reached their slot, bounded by
// one lap of the wheel whatever the clock jump.
func (w *wheel) advance(nowSec int64, deadline func([32]byte) (int64, bool), drop func([32]byte)) {
	if nowSec <= w.tick {
		return
	}
	from := w.tick + 1
	if nowSec-from >= wheelSlots {
		from = nowSec - wheelSlots + 1
	}
	w.tick = nowSec
	for s := from; s <= nowSec; s++ {
		i := s % wheelSlots
		keys := w.slots[i]
		w.slots[i] = keys[:0]
		for _, k := range keys {
			d, ok := deadline(k)
			if !ok {
				continue
			}
			if d <= nowSec {
				drop(k)
				continue
			}
			// Still alive (longer than a lap, or deadline moved): re-file.
			// This may append to the slot being emptied, which is safe: its
			// contents were taken above and it reads from keys.
			w.add(k, d)
		}
		if cap(keys) > 4096 && len(w.slots[i]) == 0 {
			w.slots[i] = nil // let one burst's memory go
		}
	}
}
