package plugin

import (
	"math/rand/v2"
	"testing"
)

// TestExpiryWheelAgainstModel drives the wheel with random insertions (TTLs
// from 1 ms to beyond 7 days), removals and advances of time (sometimes
// backwards, like a wall clock), and checks against a plain map: due never
// returns an entry before its tick, and returns every entry once the
// target is past its tick.
func TestExpiryWheelAgainstModel(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 7))
		var w expiryWheel
		now := uint64(1_900_000_000_000) + r.Uint64N(1<<20)
		w.cur = now
		model := map[*memEntry]uint64{} // entry -> tick it was asked for
		ttls := []uint64{1, 2, 63, 64, 65, 4095, 4096, 60_000, 3_600_000, 7 * 24 * 3_600_000, 1 << 40}
		for op := range 20000 {
			switch x := r.IntN(100); {
			case x < 50:
				ttl := ttls[r.IntN(len(ttls))] + r.Uint64N(3)
				e := &memEntry{tick: now + ttl}
				w.add(e)
				model[e] = now + ttl
			case x < 60 && len(model) > 0:
				for e := range model {
					w.remove(e)
					delete(model, e)
					break
				}
			case x < 65:
				// The clock goes back a little.
				now -= min(now, r.Uint64N(5000))
			default:
				now += []uint64{0, 1, 7, 64, 1000, 70_000, 4_000_000, 600_000_000}[r.IntN(8)]
			}
			// Reap a bounded number, as an operation does.
			for range 3 {
				e := w.due(now)
				if e == nil {
					break
				}
				want, ok := model[e]
				if !ok {
					t.Fatalf("seed %d op %d: due returned an unknown or removed entry", seed, op)
				}
				if want >= now {
					t.Fatalf("seed %d op %d: due returned an entry for tick %d at %d", seed, op, want, now)
				}
				w.remove(e)
				delete(model, e)
			}
		}
		// Far in the future everything comes out, each entry once.
		end := uint64(1) << 62
		for {
			e := w.due(end)
			if e == nil {
				break
			}
			if _, ok := model[e]; !ok {
				t.Fatalf("seed %d: entry returned twice or unknown", seed)
			}
			w.remove(e)
			delete(model, e)
		}
		if len(model) != 0 {
			t.Fatalf("seed %d: %d entries never came out", seed, len(model))
		}
		for l, occ := range w.occ {
			if occ != 0 {
				t.Fatalf("seed %d: level %d still marked occupied", seed, l)
			}
		}
	}
}

// TestExpiryWheelOrder checks that due returns entries in tick order.
func TestExpiryWheelOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var w expiryWheel
	w.cur = 5_000_000
	for range 5000 {
		w.add(&memEntry{tick: w.cur + r.Uint64N(1<<30)})
	}
	last := uint64(0)
	n := 0
	for e := w.due(1 << 62); e != nil; e = w.due(1 << 62) {
		if e.tick < last {
			t.Fatalf("entry %d: tick %d after %d", n, e.tick, last)
		}
		last = e.tick
		w.remove(e)
		n++
	}
	if n != 5000 {
		t.Fatalf("%d entries came out, want 5000", n)
	}
}
